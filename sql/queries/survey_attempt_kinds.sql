SELECT token, kind FROM contact_attempts WHERE cluster_id = :cluster_id ORDER BY token, kind
