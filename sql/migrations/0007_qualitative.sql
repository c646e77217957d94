-- The qualitative strand (shared/spec/qualitative-v1.md). Nothing here is personal data in
-- clear: a participant's names are one AES-256-GCM record under the key participant_key; the
-- stored transcript is the de-identified one, each speaker turn sealed under transcript_key.
-- Every table carries the cluster key.

-- Encrypted deliveries (register, transcripts) as received: kept under HOME/raw/qualitative
-- until retention deletes them. The delivered file name is not stored (it may name someone).
CREATE TABLE IF NOT EXISTS qual_deliveries (
    cluster_id  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- register | transcripts
    stored_path TEXT NOT NULL,            -- the encrypted file under CLUSTER_EVAL_HOME
    received_at TEXT NOT NULL,
    PRIMARY KEY (cluster_id, sha256)
);

-- The participants register (qualitative-v1.md §1); a re-import replaces it.
CREATE TABLE IF NOT EXISTS qual_participants (
    cluster_id           TEXT NOT NULL,
    participant_id       TEXT NOT NULL,
    strand               TEXT NOT NULL,   -- family_interview | practitioner_focus_group
    session_id           TEXT NOT NULL,
    session_date         TEXT NOT NULL,
    role                 TEXT NOT NULL,
    survey_token         TEXT,            -- an issued survey token (family participants only)
    pseudonym            TEXT,            -- chosen_pseudonym as given
    display_name         TEXT NOT NULL,   -- the pseudonym, or "Practitioner N"
    consent_form_version TEXT NOT NULL,
    info_sheet_version   TEXT NOT NULL,
    consent_date         TEXT NOT NULL,
    consent_recording    BOOLEAN NOT NULL,
    consent_quotes       BOOLEAN NOT NULL,
    withdrawn_date       TEXT,
    names_key_id         TEXT,            -- NULL once withdrawn or deleted by retention
    names_nonce          TEXT,
    names_ciphertext     TEXT,            -- {"full_name", "other_names"} sealed, AAD cluster:participant
    register_sha256      TEXT NOT NULL,
    PRIMARY KEY (cluster_id, participant_id)
);

-- Withdrawals outlive a re-imported register: a withdrawn participant is never stored again.
CREATE TABLE IF NOT EXISTS qual_withdrawals (
    cluster_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    withdrawn_at   TEXT NOT NULL,
    PRIMARY KEY (cluster_id, participant_id)
);

-- One row per interview or focus group transcript (session_id = file name without extension).
CREATE TABLE IF NOT EXISTS qual_sessions (
    cluster_id              TEXT NOT NULL,
    session_id              TEXT NOT NULL,
    delivery_sha256         TEXT NOT NULL,   -- the encrypted delivery holding the original
    source_format           TEXT NOT NULL,   -- docx | txt | vtt
    source_sha256           TEXT NOT NULL,   -- of the transcript as delivered (inside the archive)
    imported_at             TEXT NOT NULL,
    redacted_at             TEXT NOT NULL,
    turns                   INTEGER NOT NULL,
    words                   INTEGER NOT NULL,
    replacements            TEXT NOT NULL,   -- JSON: replacements by kind (counts only)
    review_entries          INTEGER NOT NULL,
    approved_at             TEXT,
    approved_review_entries INTEGER,         -- review-list entries left when approved
    export_guid             TEXT,            -- TextSource GUID of the latest coding export
    export_sha256           TEXT,            -- SHA-256 of the exported plain text
    exported_at             TEXT,
    PRIMARY KEY (cluster_id, session_id)
);

-- Speaker turns of the de-identified transcript; turn_no is the line of the exported text.
CREATE TABLE IF NOT EXISTS qual_turns (
    cluster_id     TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    turn_no        INTEGER NOT NULL,
    source_line    INTEGER NOT NULL,         -- line, paragraph or cue of the delivered transcript
    speaker        TEXT NOT NULL,            -- participant_id, or a research-team label
    participant_id TEXT,                     -- NULL for the research team
    key_id         TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    ciphertext     TEXT NOT NULL,            -- the turn's de-identified words, sealed
    withdrawn      BOOLEAN NOT NULL,
    export_start   INTEGER,                  -- code points of the words in the exported text
    export_end     INTEGER,
    PRIMARY KEY (cluster_id, session_id, turn_no),
    FOREIGN KEY (cluster_id, session_id) REFERENCES qual_sessions (cluster_id, session_id) ON DELETE CASCADE
);

-- The codebook (qualitative.codebook) and codes added while coding; subtheme '' is the theme.
CREATE TABLE IF NOT EXISTS qual_codes (
    cluster_id        TEXT NOT NULL,
    theme             TEXT NOT NULL,
    subtheme          TEXT NOT NULL,
    research_question TEXT,
    description       TEXT,
    origin            TEXT NOT NULL,         -- codebook | coding
    guid              TEXT NOT NULL,
    PRIMARY KEY (cluster_id, theme, subtheme)
);

-- Each imported coding (a QDPX project or an Excel CSV); a new import replaces the segments.
CREATE TABLE IF NOT EXISTS qual_codings (
    cluster_id  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    kind        TEXT NOT NULL,               -- qdpx | csv
    imported_at TEXT NOT NULL,
    selections  INTEGER NOT NULL,
    segments    INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, sha256)
);

-- Coded segments: the part of one speaker turn a selection covers, with its code.
CREATE TABLE IF NOT EXISTS qual_segments (
    cluster_id     TEXT NOT NULL,
    coding_sha256  TEXT NOT NULL,
    selection_id   TEXT NOT NULL,            -- PlainTextSelection GUID, or csv:<row>
    session_id     TEXT NOT NULL,
    turn_no        INTEGER NOT NULL,
    participant_id TEXT,                     -- NULL for the research team's turns
    theme          TEXT NOT NULL,
    subtheme       TEXT NOT NULL,
    start_cp       INTEGER NOT NULL,         -- code points within the turn's words
    end_cp         INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, selection_id, session_id, turn_no, theme, subtheme)
);
CREATE INDEX IF NOT EXISTS qual_segments_participant ON qual_segments (cluster_id, participant_id);
