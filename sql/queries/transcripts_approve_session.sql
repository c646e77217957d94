UPDATE qual_sessions SET approved_at = :approved_at, approved_review_entries = review_entries WHERE cluster_id = :cluster_id AND session_id = :session_id AND approved_at IS NULL
