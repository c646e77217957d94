INSERT INTO audit_log (seq, cluster_id, at, event, details, flow_run_id, prev_hash, hash) VALUES (:seq, :cluster_id, :at, :event, :details, :flow_run_id, :prev_hash, :hash)
