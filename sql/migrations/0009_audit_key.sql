-- The audit chain's key record (one row, shared by every home using this database). key_id is an
-- HMAC of a fixed label under the audit key (never the key); keyed_from is the seq of the first
-- entry hashed with HMAC-SHA256 (earlier entries, from an earlier version, are plain SHA-256);
-- seal is an HMAC over keyed_from, so the boundary cannot be moved without the key.
CREATE TABLE IF NOT EXISTS audit_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    key_id     TEXT NOT NULL,
    keyed_from INTEGER NOT NULL,
    seal       TEXT NOT NULL
);
