SELECT s.episode_pid, s.service
FROM episode_services s
JOIN episodes e ON e.cluster_id = s.cluster_id AND e.episode_pid = s.episode_pid
WHERE s.cluster_id = :cluster AND e.in_window
ORDER BY s.episode_pid, s.service
