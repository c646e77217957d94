-- Respondents who opted in to a family group interview and have not withdrawn.
SELECT h.token, h.stratum
FROM responses r
JOIN households h ON h.cluster_id = r.cluster_id AND h.token = r.token
WHERE r.cluster_id = :cluster_id AND r.q10_interview_opt_in AND h.withdrawn_at IS NULL
ORDER BY h.token
