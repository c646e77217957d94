INSERT INTO extracts (cluster_id, sha256, file_name, encryption, status, received_at, raw_path) VALUES (:cluster_id, :sha256, :file_name, :encryption, :status, :received_at, :raw_path)
