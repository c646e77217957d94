SELECT e.episode_pid, e.family_pid, CAST(e.referral_date AS TEXT) AS referral_date, e.referral_route, CAST(e.allocation_date AS TEXT) AS allocation_date, e.primary_issue, e.lead_worker_role, CAST(e.closure_date AS TEXT) AS closure_date, e.closure_outcome, e.onward_referral
FROM episodes e
WHERE e.cluster_id = :cluster AND e.in_window
ORDER BY e.episode_pid
