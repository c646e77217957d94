SELECT x.sha256, x.status, x.received_at
FROM extracts x
WHERE x.cluster_id = :cluster
ORDER BY x.received_at, x.sha256
