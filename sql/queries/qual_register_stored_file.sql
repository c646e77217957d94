INSERT INTO stored_files (cluster_id, path, category, registered_at, deleted_at) VALUES (:cluster_id, :path, :category, :registered_at, NULL)
ON CONFLICT (cluster_id, path) DO UPDATE SET category = excluded.category, registered_at = excluded.registered_at, deleted_at = NULL
