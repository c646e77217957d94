SELECT family_pid AS pid FROM families WHERE cluster_id = :cluster_id
