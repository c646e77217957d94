SELECT sha256, file_name, imported_at, rows_read, accepted, quarantined FROM response_imports WHERE cluster_id = :cluster_id AND sha256 = :sha256
