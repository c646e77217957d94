SELECT as_of, started_at, finished_at FROM retention_sweeps WHERE cluster_id = :cluster_id ORDER BY as_of DESC, started_at DESC LIMIT 1
