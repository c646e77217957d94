-- Survey fieldwork: waves, sampled households (tokens), contact attempts, responses.

CREATE TABLE IF NOT EXISTS waves (
    cluster_id  TEXT NOT NULL,
    wave        INTEGER NOT NULL,
    seed        BIGINT NOT NULL,
    size        INTEGER NOT NULL,
    stratify_by TEXT NOT NULL,
    drawn_at    TEXT NOT NULL,
    PRIMARY KEY (cluster_id, wave)
);

CREATE TABLE IF NOT EXISTS wave_strata (
    cluster_id TEXT NOT NULL,
    wave       INTEGER NOT NULL,
    stratum    TEXT NOT NULL,
    frame_n    INTEGER NOT NULL,
    allocated  INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, wave, stratum),
    FOREIGN KEY (cluster_id, wave) REFERENCES waves (cluster_id, wave) ON DELETE CASCADE
);

-- A family is sampled at most once per cluster; the token carries no personal data.
CREATE TABLE IF NOT EXISTS households (
    cluster_id   TEXT NOT NULL,
    token        TEXT NOT NULL UNIQUE,
    family_pid   TEXT NOT NULL,
    wave         INTEGER NOT NULL,
    stratum      TEXT NOT NULL,
    route        TEXT NOT NULL,
    withdrawn_at TEXT,
    PRIMARY KEY (cluster_id, family_pid),
    FOREIGN KEY (cluster_id, wave) REFERENCES waves (cluster_id, wave)
);

-- Families that must never be contacted again (withdrawal), kept apart from households so
-- the mark outlives deletion of survey data.
CREATE TABLE IF NOT EXISTS do_not_contact (
    cluster_id TEXT NOT NULL,
    family_pid TEXT NOT NULL,
    reason     TEXT NOT NULL,
    marked_at  TEXT NOT NULL,
    PRIMARY KEY (cluster_id, family_pid)
);

CREATE TABLE IF NOT EXISTS contact_attempts (
    cluster_id   TEXT NOT NULL,
    token        TEXT NOT NULL,
    wave         INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    route        TEXT NOT NULL,
    attempted_at TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (cluster_id, token, kind)
);

CREATE TABLE IF NOT EXISTS response_imports (
    cluster_id  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    rows_read   INTEGER NOT NULL,
    accepted    INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, sha256)
);

CREATE TABLE IF NOT EXISTS responses (
    cluster_id                TEXT NOT NULL,
    token                     TEXT NOT NULL,
    submitted_at              TEXT NOT NULL,
    mode                      TEXT NOT NULL,
    q1_life_satisfaction      INTEGER,
    q2_worthwhile             INTEGER,
    q3_happy_yesterday        INTEGER,
    q4_anxious_yesterday      INTEGER,
    q5_child_wellbeing        INTEGER,
    q6_parenting_confidence   INTEGER,
    q7_help_with_difficulties INTEGER,
    q8_worker_relationship    INTEGER,
    q9_negative_effects       BOOLEAN,
    q10_interview_opt_in      BOOLEAN,
    import_sha256             TEXT NOT NULL,
    PRIMARY KEY (cluster_id, token)
);

CREATE TABLE IF NOT EXISTS interview_draws (
    cluster_id TEXT NOT NULL,
    token      TEXT NOT NULL,
    seed       BIGINT NOT NULL,
    drawn_at   TEXT NOT NULL,
    PRIMARY KEY (cluster_id, token)
);
