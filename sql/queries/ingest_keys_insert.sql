INSERT INTO ingest_keys (kind, pid) VALUES (:kind, :pid)
