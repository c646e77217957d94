SELECT token, submitted_at FROM responses WHERE cluster_id = :cluster_id ORDER BY token
