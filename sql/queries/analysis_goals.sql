SELECT g.episode_pid, g.goal_number, g.goal_area, g.baseline_score, g.latest_score, CAST(g.latest_review_date AS TEXT) AS latest_review_date
FROM goals g
JOIN episodes e ON e.cluster_id = g.cluster_id AND e.episode_pid = g.episode_pid
WHERE g.cluster_id = :cluster AND e.in_window
ORDER BY g.episode_pid, g.goal_number
