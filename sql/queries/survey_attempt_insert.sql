INSERT INTO contact_attempts (cluster_id, token, wave, kind, route, attempted_at, outcome) VALUES (:cluster_id, :token, :wave, :kind, :route, :attempted_at, :outcome)
