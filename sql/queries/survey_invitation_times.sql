-- When each issued household was first invited: its invitation attempt (whatever the outcome), else its wave's draw.
SELECT h.token, COALESCE(MIN(a.attempted_at), w.drawn_at) AS invited_at
FROM households h
JOIN waves w ON w.cluster_id = h.cluster_id AND w.wave = h.wave
LEFT JOIN contact_attempts a ON a.cluster_id = h.cluster_id AND a.token = h.token AND a.kind = 'invitation'
WHERE h.cluster_id = :cluster_id
GROUP BY h.token, w.drawn_at
ORDER BY h.token
