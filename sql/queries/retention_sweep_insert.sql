INSERT INTO retention_sweeps (cluster_id, sweep_id, as_of, flow_run_id, started_at) VALUES (:cluster_id, :sweep_id, :as_of, :flow_run_id, :started_at)
