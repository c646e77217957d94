INSERT INTO interview_draws (cluster_id, token, seed, drawn_at) VALUES (:cluster_id, :token, :seed, :drawn_at)
