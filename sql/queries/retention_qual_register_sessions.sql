SELECT DISTINCT p.session_id FROM qual_participants p
WHERE p.cluster_id = :cluster_id AND p.withdrawn_date IS NULL
  AND NOT EXISTS (SELECT 1 FROM qual_withdrawals w
                  WHERE w.cluster_id = p.cluster_id AND w.participant_id = p.participant_id)
ORDER BY p.session_id
