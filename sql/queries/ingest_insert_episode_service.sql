INSERT INTO episode_services (cluster_id, episode_pid, service) VALUES (:cluster_id, :episode_pid, :service)
