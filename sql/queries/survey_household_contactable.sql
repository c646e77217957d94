-- The household still may be contacted with this kind of message (re-checked at send time).
SELECT c.token
FROM contactable_households c
WHERE c.cluster_id = :cluster_id AND c.token = :token
  AND NOT EXISTS (SELECT 1 FROM contact_attempts a
                  WHERE a.cluster_id = c.cluster_id AND a.token = c.token AND a.kind = :kind)
