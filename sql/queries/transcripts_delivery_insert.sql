INSERT INTO qual_deliveries (cluster_id, sha256, kind, stored_path, received_at) VALUES (:cluster_id, :sha256, :kind, :stored_path, :received_at)
