UPDATE {table} SET {assignments} WHERE cluster_id = :cluster_id AND ({any_set})
