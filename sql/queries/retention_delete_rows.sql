DELETE FROM {table} WHERE cluster_id = :cluster_id
