SELECT i.episode_pid, i.issue
FROM episode_issues i
JOIN episodes e ON e.cluster_id = i.cluster_id AND e.episode_pid = i.episode_pid
WHERE i.cluster_id = :cluster AND e.in_window
ORDER BY i.episode_pid, i.issue
