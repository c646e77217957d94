UPDATE stored_files SET deleted_at = :deleted_at WHERE cluster_id = :cluster_id AND path = :path AND deleted_at IS NULL
