DELETE FROM interview_draws WHERE cluster_id = :cluster_id AND token = :token
