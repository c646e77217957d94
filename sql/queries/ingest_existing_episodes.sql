SELECT episode_pid AS pid FROM episodes WHERE cluster_id = :cluster_id
