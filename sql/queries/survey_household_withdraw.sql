UPDATE households SET withdrawn_at = :withdrawn_at WHERE cluster_id = :cluster_id AND token = :token
