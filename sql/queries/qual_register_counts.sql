-- The stored register in counts: participants, sessions, by strand, withdrawn (register or record).
SELECT COUNT(*) AS participants,
       COUNT(DISTINCT p.session_id) AS sessions,
       COALESCE(SUM(CASE WHEN p.strand = 'family_interview' THEN 1 ELSE 0 END), 0) AS families,
       COALESCE(SUM(CASE WHEN p.strand = 'practitioner_focus_group' THEN 1 ELSE 0 END), 0) AS practitioners,
       COALESCE(SUM(CASE WHEN p.withdrawn_date IS NOT NULL OR w.participant_id IS NOT NULL THEN 1 ELSE 0 END), 0) AS withdrawn
FROM qual_participants p
LEFT JOIN qual_withdrawals w ON w.cluster_id = p.cluster_id AND w.participant_id = p.participant_id
WHERE p.cluster_id = :cluster_id
