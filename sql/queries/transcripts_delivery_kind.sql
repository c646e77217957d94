SELECT kind FROM qual_deliveries WHERE cluster_id = :cluster_id AND sha256 = :sha256
