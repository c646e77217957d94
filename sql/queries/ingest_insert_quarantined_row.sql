INSERT INTO quarantined_rows (cluster_id, source_sha256, table_name, row_key, column_name, rule, reason) VALUES (:cluster_id, :source_sha256, :table_name, :row_key, :column_name, :rule, :reason)
