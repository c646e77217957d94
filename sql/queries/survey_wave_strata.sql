SELECT stratum, frame_n, allocated FROM wave_strata WHERE cluster_id = :cluster_id AND wave = :wave ORDER BY stratum
