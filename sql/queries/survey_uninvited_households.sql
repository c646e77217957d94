-- Households of a wave that may be contacted and have no invitation attempt yet.
SELECT h.token, h.family_pid, h.wave, h.route
FROM households h
WHERE h.cluster_id = :cluster_id AND h.wave = :wave AND h.withdrawn_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM do_not_contact d
                  WHERE d.cluster_id = h.cluster_id AND d.family_pid = h.family_pid)
  AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.cluster_id = h.cluster_id AND r.token = h.token)
  AND NOT EXISTS (SELECT 1 FROM contact_attempts a
                  WHERE a.cluster_id = h.cluster_id AND a.token = h.token AND a.kind = 'invitation')
ORDER BY h.token
