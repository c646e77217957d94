SELECT sha256, kind, stored_path FROM qual_deliveries WHERE cluster_id = :cluster_id ORDER BY received_at, sha256
