-- Top-up runs of the survey-topup flow (counts only). A run fixes its wave number when it first
-- runs and records it here BEFORE it pauses for approval, with the proposed size and allocation;
-- the decision follows. A retry of the same flow run (Prefect's retries, the UI's Retry) reads its
-- row and only finishes that wave: it never draws another one or contacts anybody twice.
CREATE TABLE IF NOT EXISTS topup_runs (
    cluster_id     TEXT NOT NULL,
    flow_run_id    TEXT NOT NULL,
    wave           INTEGER NOT NULL,
    requested_size INTEGER,               -- the run's size parameter (NULL: the top-up rule's size)
    size           INTEGER NOT NULL,      -- households proposed
    allocation     TEXT NOT NULL,         -- JSON: proposed households per stratum
    proposed_at    TEXT NOT NULL,
    decision       TEXT CHECK (decision IN ('approved', 'rejected', 'timed_out', 'cancelled')),
    decided_at     TEXT,
    PRIMARY KEY (cluster_id, flow_run_id)
);
