-- Invited households that may still be contacted (not responded, withdrawn, do-not-contact or bounced).
SELECT c.token, c.family_pid, c.wave, c.route, a.attempted_at AS invited_at
FROM contactable_households c
JOIN contact_attempts a ON a.cluster_id = c.cluster_id AND a.token = c.token
    AND a.kind = 'invitation' AND a.outcome IN ('sent', 'pack')
WHERE c.cluster_id = :cluster_id
ORDER BY c.token
