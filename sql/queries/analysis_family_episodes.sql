SELECT e.family_pid, e.episode_pid, CAST(e.referral_date AS TEXT) AS referral_date, CAST(e.closure_date AS TEXT) AS closure_date, CASE WHEN e.in_window THEN 1 ELSE 0 END AS in_window
FROM episodes e
WHERE e.cluster_id = :cluster
  AND EXISTS (SELECT 1 FROM episodes w WHERE w.cluster_id = e.cluster_id AND w.family_pid = e.family_pid AND w.in_window)
ORDER BY e.family_pid, e.referral_date, e.episode_pid
