INSERT INTO waves (cluster_id, wave, seed, size, stratify_by, drawn_at) VALUES (:cluster_id, :wave, :seed, :size, :stratify_by, :drawn_at)
