SELECT seq, cluster_id, at, event, details, flow_run_id, prev_hash, hash FROM audit_log ORDER BY seq
