DELETE FROM episodes WHERE cluster_id = :cluster_id AND episode_pid = :episode_pid
