SELECT h.family_pid, h.wave, h.stratum, h.route, CASE WHEN h.withdrawn_at IS NULL THEN 0 ELSE 1 END AS withdrawn, CASE WHEN r.token IS NULL OR h.withdrawn_at IS NOT NULL THEN 0 ELSE 1 END AS responded, r.q1_life_satisfaction, r.q2_worthwhile, r.q3_happy_yesterday, r.q4_anxious_yesterday, r.q5_child_wellbeing, r.q6_parenting_confidence, r.q7_help_with_difficulties, r.q8_worker_relationship, CASE WHEN r.q9_negative_effects IS NULL THEN NULL WHEN r.q9_negative_effects THEN 1 ELSE 0 END AS q9_negative_effects
FROM households h
LEFT JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token
WHERE h.cluster_id = :cluster
ORDER BY h.wave, h.family_pid
