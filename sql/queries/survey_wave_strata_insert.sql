INSERT INTO wave_strata (cluster_id, wave, stratum, frame_n, allocated) VALUES (:cluster_id, :wave, :stratum, :frame_n, :allocated)
