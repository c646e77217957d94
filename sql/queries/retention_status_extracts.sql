SELECT status, COUNT(*) AS extracts, MAX(received_at) AS last_received_at FROM extracts WHERE cluster_id = :cluster_id GROUP BY status ORDER BY status
