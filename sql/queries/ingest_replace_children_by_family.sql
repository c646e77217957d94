DELETE FROM children WHERE cluster_id = :cluster_id AND family_pid IN (SELECT k.pid FROM ingest_keys k WHERE k.kind = 'families')
