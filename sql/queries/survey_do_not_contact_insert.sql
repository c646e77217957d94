INSERT INTO do_not_contact (cluster_id, family_pid, reason, marked_at) VALUES (:cluster_id, :family_pid, :reason, :marked_at) ON CONFLICT (cluster_id, family_pid) DO NOTHING
