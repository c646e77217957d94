DELETE FROM children WHERE cluster_id = :cluster_id AND child_pid = :child_pid
