SELECT r.referral_pid, r.episode_pid, r.service, r.reason, r.outcome
FROM specialist_referrals r
JOIN episodes e ON e.cluster_id = r.cluster_id AND e.episode_pid = r.episode_pid
WHERE r.cluster_id = :cluster AND e.in_window
ORDER BY r.referral_pid
