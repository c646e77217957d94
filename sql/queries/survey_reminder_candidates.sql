-- Invited households that have not responded, withdrawn, been marked do-not-contact or bounced.
SELECT h.token, h.family_pid, h.wave, h.route, a.attempted_at AS invited_at
FROM households h
JOIN contact_attempts a ON a.cluster_id = h.cluster_id AND a.token = h.token
    AND a.kind = 'invitation' AND a.outcome IN ('sent', 'pack')
WHERE h.cluster_id = :cluster_id AND h.withdrawn_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM do_not_contact d
                  WHERE d.cluster_id = h.cluster_id AND d.family_pid = h.family_pid)
  AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.cluster_id = h.cluster_id AND r.token = h.token)
  AND NOT EXISTS (SELECT 1 FROM contact_attempts b
                  WHERE b.cluster_id = h.cluster_id AND b.token = h.token AND b.outcome = 'bounced')
ORDER BY h.token
