SELECT (SELECT COUNT(*) FROM families WHERE cluster_id = :cluster_id AND in_population) AS families, (SELECT COUNT(*) FROM episodes WHERE cluster_id = :cluster_id AND in_window) AS episodes
