-- Households issued and responded per wave and stratum (withdrawn households count as issued).
SELECT h.wave, h.stratum, COUNT(*) AS issued, COUNT(r.token) AS responded
FROM households h
LEFT JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token
WHERE h.cluster_id = :cluster_id
GROUP BY h.wave, h.stratum
ORDER BY h.wave, h.stratum
