DELETE FROM responses WHERE cluster_id = :cluster_id AND token = :token
