SELECT child_pid AS pid FROM children WHERE cluster_id = :cluster_id
