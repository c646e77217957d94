SELECT session_id, delivery_sha256, approved_at FROM qual_sessions WHERE cluster_id = :cluster_id ORDER BY session_id
