SELECT w.wave, w.seed, w.size, w.stratify_by, w.drawn_at
FROM waves w
WHERE w.cluster_id = :cluster
ORDER BY w.wave
