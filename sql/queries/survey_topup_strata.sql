-- Households issued and responded per stratum over all waves (the top-up decision form).
SELECT h.stratum, COUNT(*) AS issued, COUNT(r.token) AS responded
FROM households h
LEFT JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token
WHERE h.cluster_id = :cluster_id
GROUP BY h.stratum
ORDER BY h.stratum
