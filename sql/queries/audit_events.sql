SELECT seq, details FROM audit_log WHERE cluster_id = :cluster_id AND event = :event ORDER BY seq
