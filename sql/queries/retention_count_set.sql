SELECT COUNT(*) AS n FROM {table} WHERE cluster_id = :cluster_id AND ({any_set})
