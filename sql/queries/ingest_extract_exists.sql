SELECT 1 AS found FROM extracts WHERE cluster_id = :cluster_id AND sha256 = :sha256
