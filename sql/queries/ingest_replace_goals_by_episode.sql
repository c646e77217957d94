DELETE FROM goals WHERE cluster_id = :cluster_id AND episode_pid IN (SELECT k.pid FROM ingest_keys k WHERE k.kind = 'replaced_episodes')
