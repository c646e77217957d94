INSERT INTO topup_runs (cluster_id, flow_run_id, wave, requested_size, size, allocation, proposed_at) VALUES (:cluster_id, :flow_run_id, :wave, :requested_size, :size, :allocation, :proposed_at)
