"""The transcript store: sessions, sealed speaker turns, deliveries and review lists (qualitative-v1.md §3).

Every statement is a named query in ``sql/queries/transcripts_*.sql``. Each turn's words are
sealed with ``transcript_key`` bound to (cluster, session, turn number); the clear columns hold
only numbers, codes and speaker ids. Callers run these inside their one transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from tasks.core.csvsafe import csv_bytes
from tasks.core.db import query, rows
from tasks.core.home import Home, write_private
from tasks.qualitative.model import key_id, seal, turn_aad

TRANSCRIPTS = "transcripts"
RAW_TRANSCRIPTS = "raw_transcripts"  # stored_files category of an encrypted transcript delivery
REVIEW_COLUMNS = ("session_id", "line", "term")


@dataclass(frozen=True)
class StoredTurn:
    """One de-identified turn ready to store; ``words`` is never shown."""

    turn_no: int
    source_line: int
    speaker: str
    participant_id: str | None
    words: str = field(repr=False)
    withdrawn: bool = False


@dataclass(frozen=True)
class SessionTranscript:
    """A session's de-identified transcript with its counts and review list (repr: counts only)."""

    session_id: str
    source_format: str
    source_sha256: str
    turns: tuple[StoredTurn, ...] = field(repr=False)
    replacements: Counter[str] = field(repr=False)
    review: tuple[tuple[int, str], ...] = field(repr=False)  # (turn_no, term)

    @property
    def words(self) -> int:
        """Words stored, withdrawn turns left out."""
        return sum(len(t.words.split()) for t in self.turns if not t.withdrawn)

    @property
    def withdrawn_turns(self) -> int:
        return sum(1 for t in self.turns if t.withdrawn)

    def counts(self) -> dict[str, int]:
        """The session's figures (no text)."""
        return {"turns": len(self.turns), "words": self.words, "withdrawn_turns": self.withdrawn_turns,
                "review_entries": len(self.review)}

    def __repr__(self) -> str:
        return f"SessionTranscript({self.session_id}, {self.counts()})"


@dataclass(frozen=True)
class StoredSession:
    """A session's row as stored (no text)."""

    session_id: str
    delivery_sha256: str
    source_format: str
    source_sha256: str
    review_entries: int
    approved_at: str | None
    stored_path: str | None


def stored_sessions(conn: Connection, cluster: str) -> dict[str, StoredSession]:
    """Every stored session of a cluster with the path of its delivery."""
    return {r["session_id"]: StoredSession(r["session_id"], r["delivery_sha256"], r["source_format"],
                                           r["source_sha256"], int(r["review_entries"]),
                                           None if r["approved_at"] is None else str(r["approved_at"]),
                                           r["stored_path"])
            for r in rows(conn, "transcripts_sessions", {"cluster_id": cluster})}


def turn_speakers(conn: Connection, cluster: str, session_id: str) -> dict[int, str]:
    """turn_no -> participant_id of a stored session's participants' turns (no text)."""
    return {int(r["turn_no"]): r["participant_id"]
            for r in rows(conn, "transcripts_turn_speakers", {"cluster_id": cluster, "session_id": session_id})}


def delivery_kind(conn: Connection, cluster: str, sha256: str) -> str | None:
    """The kind of a delivery already received with these bytes (register, transcripts), or None."""
    row = conn.execute(query("transcripts_delivery_kind"), {"cluster_id": cluster, "sha256": sha256}).first()
    return None if row is None else str(row.kind)


def record_delivery(conn: Connection, cluster: str, sha256: str, stored_path: Path, at: str) -> None:
    """Register an encrypted transcripts delivery (qual_deliveries and the retention's stored_files)."""
    conn.execute(query("transcripts_delivery_insert"), {
        "cluster_id": cluster, "sha256": sha256, "kind": TRANSCRIPTS, "stored_path": str(stored_path),
        "received_at": at})
    conn.execute(query("ingest_register_raw_file"), {
        "cluster_id": cluster, "path": str(stored_path), "category": RAW_TRANSCRIPTS, "registered_at": at})


def replacements_json(counts: Counter[str]) -> str:
    """Replacements by kind as stored in qual_sessions.replacements (sorted, counts only)."""
    return json.dumps({kind: counts[kind] for kind in sorted(counts) if counts[kind]}, sort_keys=True)


def insert_turns(conn: Connection, key: bytes, cluster: str, session: SessionTranscript) -> None:
    """Seal and insert a session's turns (after its old turns were deleted)."""
    kid = key_id(key)
    params = []
    for turn in session.turns:
        nonce, ciphertext = seal(key, turn_aad(cluster, session.session_id, turn.turn_no), turn.words)
        params.append({"cluster_id": cluster, "session_id": session.session_id, "turn_no": turn.turn_no,
                       "source_line": turn.source_line, "speaker": turn.speaker,
                       "participant_id": turn.participant_id, "key_id": kid, "nonce": nonce,
                       "ciphertext": ciphertext, "withdrawn": turn.withdrawn})
    if params:
        conn.execute(query("transcripts_insert_turn"), params)


def replace_session(conn: Connection, key: bytes, cluster: str, session: SessionTranscript,
                    delivery_sha256: str, at: str) -> None:
    """Store a session's transcript, replacing an earlier, not approved one."""
    where = {"cluster_id": cluster, "session_id": session.session_id}
    conn.execute(query("transcripts_delete_turns"), where)
    conn.execute(query("transcripts_delete_session"), where)
    conn.execute(query("transcripts_insert_session"), {
        **where, "delivery_sha256": delivery_sha256, "source_format": session.source_format,
        "source_sha256": session.source_sha256, "imported_at": at, "redacted_at": at,
        "turns": len(session.turns), "words": session.words,
        "replacements": replacements_json(session.replacements), "review_entries": len(session.review)})
    insert_turns(conn, key, cluster, session)


def update_redacted(conn: Connection, key: bytes, cluster: str, session: SessionTranscript, at: str) -> bool:
    """Replace a not approved session's turns by a new de-identification; False if it was approved."""
    where = {"cluster_id": cluster, "session_id": session.session_id}
    updated = conn.execute(query("transcripts_update_redacted"), {
        **where, "redacted_at": at, "turns": len(session.turns), "words": session.words,
        "replacements": replacements_json(session.replacements), "review_entries": len(session.review)})
    if updated.rowcount != 1:
        return False
    conn.execute(query("transcripts_delete_turns"), where)
    insert_turns(conn, key, cluster, session)
    return True


def approve(conn: Connection, cluster: str, session_id: str, at: str) -> bool:
    """Mark a session approved (review entries left recorded); False when it already was."""
    done = conn.execute(query("transcripts_approve_session"),
                        {"cluster_id": cluster, "session_id": session_id, "approved_at": at})
    return done.rowcount == 1


def review_list_path(home: Home, session_id: str) -> Path:
    """Where a session's review list is written (restricted area, 0600)."""
    return home.restricted / "review" / f"{session_id}.csv"


def review_csv(session_id: str, review: Sequence[tuple[int, str]]) -> bytes:
    """The review list as CSV bytes: session_id, line (= turn number), term."""
    return csv_bytes(REVIEW_COLUMNS, [(session_id, line, term) for line, term in review])


def write_review_list(home: Home, session: SessionTranscript) -> Path:
    """(Re)write a session's review list; returns its path."""
    path = review_list_path(home, session.session_id)
    write_private(path, review_csv(session.session_id, session.review))
    return path
