DELETE FROM qual_turns WHERE cluster_id = :cluster_id AND session_id = :session_id
