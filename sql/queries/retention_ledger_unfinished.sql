SELECT unit_id, sweep_id, as_of, plan FROM retention_deletions WHERE cluster_id = :cluster_id AND state = 'started' ORDER BY started_at, unit_id
