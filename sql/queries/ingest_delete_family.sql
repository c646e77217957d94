DELETE FROM families WHERE cluster_id = :cluster_id AND family_pid = :family_pid
