SELECT wave, seed, size, stratify_by, drawn_at FROM waves WHERE cluster_id = :cluster_id ORDER BY wave
