UPDATE retention_deletions SET state = 'done', counts = :counts, done_at = :done_at WHERE cluster_id = :cluster_id AND unit_id = :unit_id AND state = 'started'
