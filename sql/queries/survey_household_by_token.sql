SELECT token, family_pid, wave, stratum, route, withdrawn_at FROM households WHERE cluster_id = :cluster_id AND token = :token
