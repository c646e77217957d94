-- A withdrawn participant's coded segments: attributed to them, or in one of their turns.
DELETE FROM qual_segments
WHERE cluster_id = :cluster_id
  AND (participant_id = :participant_id
       OR EXISTS (SELECT 1 FROM qual_turns t
                  WHERE t.cluster_id = qual_segments.cluster_id AND t.session_id = qual_segments.session_id
                    AND t.turn_no = qual_segments.turn_no AND t.participant_id = :participant_id))
