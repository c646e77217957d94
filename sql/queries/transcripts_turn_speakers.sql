SELECT turn_no, participant_id FROM qual_turns WHERE cluster_id = :cluster_id AND session_id = :session_id AND participant_id IS NOT NULL ORDER BY turn_no
