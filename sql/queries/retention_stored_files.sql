SELECT path, category, registered_at, deleted_at FROM stored_files WHERE cluster_id = :cluster_id ORDER BY registered_at, path
