INSERT INTO households (cluster_id, token, family_pid, wave, stratum, route) VALUES (:cluster_id, :token, :family_pid, :wave, :stratum, :route)
