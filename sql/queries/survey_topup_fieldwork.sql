-- Per drawn wave: households issued and responded, households still to invite (may be contacted,
-- no invitation attempt yet) and when its last invitation went out (the top-up rule, need.py).
SELECT w.wave,
       (SELECT COUNT(*) FROM households h
        WHERE h.cluster_id = w.cluster_id AND h.wave = w.wave) AS issued,
       (SELECT COUNT(*) FROM households h
        JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token
        WHERE h.cluster_id = w.cluster_id AND h.wave = w.wave) AS responded,
       (SELECT COUNT(*) FROM contactable_households c
        WHERE c.cluster_id = w.cluster_id AND c.wave = w.wave
          AND NOT EXISTS (SELECT 1 FROM contact_attempts a
                          WHERE a.cluster_id = c.cluster_id AND a.token = c.token
                            AND a.kind = 'invitation')) AS uninvited,
       (SELECT MAX(a.attempted_at) FROM contact_attempts a
        WHERE a.cluster_id = w.cluster_id AND a.wave = w.wave AND a.kind = 'invitation') AS invited_at
FROM waves w
WHERE w.cluster_id = :cluster_id
ORDER BY w.wave
