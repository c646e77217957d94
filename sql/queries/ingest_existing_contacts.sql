SELECT family_pid AS pid FROM contacts WHERE cluster_id = :cluster_id
