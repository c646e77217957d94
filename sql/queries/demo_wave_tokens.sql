SELECT token FROM households WHERE cluster_id = :cluster_id AND wave = :wave ORDER BY token
