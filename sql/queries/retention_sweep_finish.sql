UPDATE retention_sweeps SET finished_at = :finished_at WHERE cluster_id = :cluster_id AND sweep_id = :sweep_id
