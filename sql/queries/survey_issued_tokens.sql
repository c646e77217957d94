-- Every issued token, and whether its household withdrew or may not be contacted.
SELECT h.token,
       CASE WHEN h.withdrawn_at IS NOT NULL OR d.family_pid IS NOT NULL THEN 1 ELSE 0 END AS withdrawn
FROM households h
LEFT JOIN do_not_contact d ON d.cluster_id = h.cluster_id AND d.family_pid = h.family_pid
WHERE h.cluster_id = :cluster_id
ORDER BY h.token
