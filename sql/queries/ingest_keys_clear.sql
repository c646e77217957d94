DELETE FROM ingest_keys
