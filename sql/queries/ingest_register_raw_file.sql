INSERT INTO stored_files (cluster_id, path, category, registered_at) VALUES (:cluster_id, :path, :category, :registered_at)
