-- Core study schema. Every study table carries cluster_id so several clusters or councils
-- can share one database without mixing data. Portable between SQLite and PostgreSQL:
-- keys are application-made text (pseudonyms, SHA-256), dates are DATE, instants TIMESTAMP
-- stored as UTC ISO text by the application.

CREATE TABLE IF NOT EXISTS extracts (
    cluster_id   TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    encryption   TEXT NOT NULL,
    status       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    raw_path     TEXT,
    PRIMARY KEY (cluster_id, sha256)
);

CREATE TABLE IF NOT EXISTS families (
    cluster_id             TEXT NOT NULL,
    family_pid             TEXT NOT NULL,
    extract_sha256         TEXT NOT NULL,
    household_size         INTEGER NOT NULL,
    adults_in_employment   INTEGER,
    lead_carer_employment  TEXT,
    lead_carer_ethnicity   TEXT,
    first_language_english BOOLEAN,
    free_school_meals      BOOLEAN,
    imd_decile             INTEGER,
    in_population          BOOLEAN NOT NULL,
    PRIMARY KEY (cluster_id, family_pid),
    FOREIGN KEY (cluster_id, extract_sha256) REFERENCES extracts (cluster_id, sha256)
);

CREATE TABLE IF NOT EXISTS children (
    cluster_id      TEXT NOT NULL,
    child_pid       TEXT NOT NULL,
    family_pid      TEXT NOT NULL,
    gender          TEXT,
    ethnicity       TEXT,
    school_phase    TEXT,
    sen_support     BOOLEAN,
    age_at_referral INTEGER,
    age_band        TEXT,
    PRIMARY KEY (cluster_id, child_pid),
    FOREIGN KEY (cluster_id, family_pid) REFERENCES families (cluster_id, family_pid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS episodes (
    cluster_id             TEXT NOT NULL,
    episode_pid            TEXT NOT NULL,
    family_pid             TEXT NOT NULL,
    referral_date          DATE NOT NULL,
    referral_route         TEXT NOT NULL,
    allocation_date        DATE,
    primary_issue          TEXT NOT NULL,
    lead_worker_role       TEXT,
    closure_date           DATE,
    closure_outcome        TEXT,
    onward_referral        TEXT,
    in_window              BOOLEAN NOT NULL,
    length_of_support_days INTEGER,
    days_to_allocation     INTEGER,
    goal_count             INTEGER NOT NULL,
    stepped_up_res_team    BOOLEAN NOT NULL,
    stepped_up_early_help_hub BOOLEAN NOT NULL,
    stepped_up_social_care BOOLEAN NOT NULL,
    PRIMARY KEY (cluster_id, episode_pid),
    FOREIGN KEY (cluster_id, family_pid) REFERENCES families (cluster_id, family_pid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS episode_issues (
    cluster_id  TEXT NOT NULL,
    episode_pid TEXT NOT NULL,
    issue       TEXT NOT NULL,
    PRIMARY KEY (cluster_id, episode_pid, issue),
    FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS episode_services (
    cluster_id  TEXT NOT NULL,
    episode_pid TEXT NOT NULL,
    service     TEXT NOT NULL,
    PRIMARY KEY (cluster_id, episode_pid, service),
    FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS goals (
    cluster_id         TEXT NOT NULL,
    episode_pid        TEXT NOT NULL,
    goal_number        INTEGER NOT NULL,
    goal_area          TEXT NOT NULL,
    baseline_score     INTEGER NOT NULL,
    latest_score       INTEGER,
    latest_review_date DATE,
    score_change       INTEGER,
    PRIMARY KEY (cluster_id, episode_pid, goal_number),
    FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS specialist_referrals (
    cluster_id   TEXT NOT NULL,
    referral_pid TEXT NOT NULL,
    episode_pid  TEXT NOT NULL,
    service      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    start_date   DATE NOT NULL,
    end_date     DATE,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (cluster_id, referral_pid),
    FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE
);

-- Rows that failed validation: keys (pseudonymised) and reasons only, never values.
CREATE TABLE IF NOT EXISTS quarantined_rows (
    cluster_id     TEXT NOT NULL,
    source_sha256  TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    row_key        TEXT NOT NULL,
    column_name    TEXT NOT NULL,
    rule           TEXT NOT NULL,
    reason         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantined_rows_source ON quarantined_rows (cluster_id, source_sha256);

-- Contact store: one AES-GCM ciphertext per family under the contact key (not the
-- pseudonymisation key). Destroying that key crypto-shreds every copy.
CREATE TABLE IF NOT EXISTS contacts (
    cluster_id     TEXT NOT NULL,
    family_pid     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    ciphertext     TEXT NOT NULL,
    extract_sha256 TEXT NOT NULL,
    PRIMARY KEY (cluster_id, family_pid)
);

-- Files kept on disk (raw extracts, fieldwork packs, outputs) for the retention schedule.
CREATE TABLE IF NOT EXISTS stored_files (
    cluster_id    TEXT NOT NULL,
    path          TEXT NOT NULL,
    category      TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    deleted_at    TEXT,
    PRIMARY KEY (cluster_id, path)
);

-- Append-only, hash-chained audit log (no personal data). Survives the final deletion.
CREATE TABLE IF NOT EXISTS audit_log (
    seq         INTEGER PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    at          TEXT NOT NULL,
    event       TEXT NOT NULL,
    details     TEXT NOT NULL,
    flow_run_id TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE
);
