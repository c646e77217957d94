-- Per wave - households issued, responded, and when the last invitation went out.
SELECT h.wave, COUNT(*) AS issued, COUNT(r.token) AS responded, MAX(a.attempted_at) AS invited_at
FROM households h
LEFT JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token
LEFT JOIN contact_attempts a ON a.cluster_id = h.cluster_id AND a.token = h.token
    AND a.kind = 'invitation'
WHERE h.cluster_id = :cluster_id
GROUP BY h.wave
ORDER BY h.wave
