-- Respondents (households with a kept response) per stratum, all waves.
SELECT h.stratum, COUNT(*) AS respondents
FROM responses r
JOIN households h ON h.cluster_id = r.cluster_id AND h.token = r.token
WHERE r.cluster_id = :cluster_id
GROUP BY h.stratum
ORDER BY h.stratum
