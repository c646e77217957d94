SELECT COUNT(*) AS families FROM families WHERE cluster_id = :cluster_id AND in_population
