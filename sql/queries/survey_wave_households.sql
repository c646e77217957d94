SELECT token, stratum, family_pid, route, withdrawn_at FROM households WHERE cluster_id = :cluster_id AND wave = :wave ORDER BY stratum, token
