DELETE FROM qual_sessions WHERE cluster_id = :cluster_id AND session_id = :session_id AND approved_at IS NULL
