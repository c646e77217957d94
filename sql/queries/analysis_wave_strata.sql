SELECT s.wave, s.stratum, s.frame_n, s.allocated
FROM wave_strata s
WHERE s.cluster_id = :cluster
ORDER BY s.wave, s.stratum
