-- Households of a wave that may be contacted and have no invitation attempt yet.
SELECT c.token, c.family_pid, c.wave, c.route
FROM contactable_households c
WHERE c.cluster_id = :cluster_id AND c.wave = :wave
  AND NOT EXISTS (SELECT 1 FROM contact_attempts a
                  WHERE a.cluster_id = c.cluster_id AND a.token = c.token AND a.kind = 'invitation')
ORDER BY c.token
