SELECT token, seed, drawn_at FROM interview_draws WHERE cluster_id = :cluster_id ORDER BY token
