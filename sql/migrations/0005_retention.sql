-- Retention sweeps and the deletion ledger (no personal data: rule names, table names, file
-- paths under CLUSTER_EVAL_HOME, key names, Prefect flow run ids, counts).
-- A deletion that touches files, keys or Prefect is recorded as 'started' with its plan before
-- anything is removed and closed as 'done' in the transaction that writes its audit event, so
-- a sweep killed half-way is finished by the next one and nothing is deleted without a record.

CREATE TABLE IF NOT EXISTS retention_sweeps (
    cluster_id  TEXT NOT NULL,
    sweep_id    TEXT NOT NULL,
    as_of       TEXT NOT NULL,
    flow_run_id TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (cluster_id, sweep_id)
);

CREATE TABLE IF NOT EXISTS retention_deletions (
    cluster_id TEXT NOT NULL,
    unit_id    TEXT NOT NULL,
    sweep_id   TEXT NOT NULL,
    as_of      TEXT NOT NULL,
    rule       TEXT NOT NULL,
    category   TEXT NOT NULL,
    due_date   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    plan       TEXT NOT NULL,
    state      TEXT NOT NULL,
    counts     TEXT,
    started_at TEXT NOT NULL,
    done_at    TEXT,
    PRIMARY KEY (cluster_id, unit_id)
);
CREATE INDEX IF NOT EXISTS retention_deletions_state ON retention_deletions (cluster_id, state)
