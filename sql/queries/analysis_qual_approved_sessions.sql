SELECT session_id FROM qual_sessions WHERE cluster_id = :cluster AND approved_at IS NOT NULL ORDER BY session_id
