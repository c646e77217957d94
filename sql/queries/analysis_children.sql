SELECT c.child_pid, c.family_pid, c.gender, c.ethnicity, c.age_at_referral, CASE WHEN c.sen_support IS NULL THEN NULL WHEN c.sen_support THEN 1 ELSE 0 END AS sen_support
FROM children c
WHERE c.cluster_id = :cluster
  AND EXISTS (SELECT 1 FROM episodes e WHERE e.cluster_id = c.cluster_id AND e.family_pid = c.family_pid AND e.in_window)
ORDER BY c.child_pid
