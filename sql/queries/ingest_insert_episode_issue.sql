INSERT INTO episode_issues (cluster_id, episode_pid, issue) VALUES (:cluster_id, :episode_pid, :issue)
