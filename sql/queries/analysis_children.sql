SELECT c.child_pid, c.family_pid, c.gender, c.ethnicity, c.age_at_referral
FROM children c
WHERE c.cluster_id = :cluster
  AND EXISTS (SELECT 1 FROM episodes e WHERE e.cluster_id = c.cluster_id AND e.family_pid = c.family_pid AND e.in_window)
ORDER BY c.child_pid
