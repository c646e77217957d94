"""What the coding round trip reads from and writes to the database (shared by both routes).

Reading: the approved sessions, their turns (decrypted only where words are needed) and the
turns' positions in the exported text. Writing, each in ONE transaction: an export's
bookkeeping (per session the text's GUID and SHA-256, per turn its code-point range; the file
in ``stored_files``; the audit entry) and an imported coding (its codes, all segments replaced).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from tasks.coding.codebook import CODEBOOK, CODING, CodeRow, insert_codes, stable_guid, store_codebook
from tasks.core.audit import append_audit
from tasks.qualitative.model import (
    WITHDRAWN_TEXT,
    Segment,
    Turn,
    export_text,
    load_turns,
    text_sha256,
    withdrawn_ids,
)

EXPORT_CATEGORY = "qdpx_export"


@dataclass(frozen=True)
class SessionText:
    """One approved session as exported: its turns, the plain text and the turns' word ranges."""

    session_id: str
    guid: str
    turns: tuple[Turn, ...] = field(repr=False)
    text: str = field(repr=False)
    offsets: tuple[tuple[int, int], ...] = field(repr=False)

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)


@dataclass(frozen=True)
class TurnSpan:
    """Where a stored turn's words are: code points in the exported text, and whose turn it is."""

    turn_no: int
    participant_id: str | None
    withdrawn: bool
    export_start: int | None
    export_end: int | None
    length: int | None = None  # code points of the words (CSV route only: needs the turn decrypted)


@dataclass
class Coding:
    """An imported coding, checked and mapped to segments, ready to be stored."""

    sha256: str
    kind: str  # qdpx | csv
    selections: int
    segments: list[Segment] = field(repr=False)
    codes: list[CodeRow] = field(repr=False)  # every code the coding uses or declares
    sessions: int = 0
    dropped_withdrawn: int = 0


def session_guid(cluster: str, session_id: str) -> str:
    """The TextSource GUID of a session (the same on every export)."""
    return stable_guid(cluster, "session", session_id)


def approved_sessions(conn: Connection, cluster: str) -> list[str]:
    """Session ids whose de-identified transcript was approved, in order."""
    result = conn.execute(text("SELECT session_id FROM qual_sessions WHERE cluster_id = :c"
                               " AND approved_at IS NOT NULL ORDER BY session_id"), {"c": cluster})
    return [r.session_id for r in result]


def session_texts(conn: Connection, key: bytes, cluster: str, sessions: Sequence[str]) -> list[SessionText]:
    """The exported text of each session (withdrawn turns read ``[withdrawn]``)."""
    gone = withdrawn_ids(conn, cluster)
    by_session: dict[str, list[Turn]] = {s: [] for s in sessions}
    for turn in load_turns(conn, key, cluster, sessions):
        if turn.withdrawn or turn.participant_id in gone:
            turn = replace(turn, words=WITHDRAWN_TEXT, withdrawn=True)
        by_session[turn.session_id].append(turn)
    texts = []
    for session_id, turns in by_session.items():
        plain, offsets = export_text(turns)
        texts.append(SessionText(session_id, session_guid(cluster, session_id), tuple(turns), plain,
                                 tuple(offsets)))
    return texts


def turn_spans(conn: Connection, cluster: str) -> dict[str, list[TurnSpan]]:
    """Every stored turn's exported range and speaker, by session (no text decrypted)."""
    gone = withdrawn_ids(conn, cluster)
    result = conn.execute(text(
        "SELECT session_id, turn_no, participant_id, withdrawn, export_start, export_end FROM qual_turns"
        " WHERE cluster_id = :c ORDER BY session_id, turn_no"), {"c": cluster})
    spans: dict[str, list[TurnSpan]] = {}
    for r in result:
        spans.setdefault(r.session_id, []).append(TurnSpan(
            r.turn_no, r.participant_id, bool(r.withdrawn) or r.participant_id in gone,
            r.export_start, r.export_end))
    return spans


def exported_sources(conn: Connection, cluster: str) -> dict[str, tuple[str, str]]:
    """Exported sessions by TextSource GUID (lower case): (session_id, SHA-256 of the exported text)."""
    result = conn.execute(text(
        "SELECT session_id, export_guid, export_sha256 FROM qual_sessions WHERE cluster_id = :c"
        " AND export_guid IS NOT NULL AND export_sha256 IS NOT NULL"), {"c": cluster})
    return {r.export_guid.lower(): (r.session_id, r.export_sha256) for r in result}


def record_export(conn: Connection, cluster: str, out: Path, texts: Sequence[SessionText],
                  details: Mapping[str, Any], flow_run_id: str | None) -> str:
    """Record an export in one transaction: sessions' text hashes, turns' ranges, the file, the audit."""
    now = datetime.now(UTC).isoformat()
    conn.execute(text(
        "UPDATE qual_sessions SET export_guid = :guid, export_sha256 = :sha, exported_at = :at"
        " WHERE cluster_id = :c AND session_id = :s"),
        [{"guid": t.guid, "sha": t.sha256, "at": now, "c": cluster, "s": t.session_id} for t in texts])
    ranges = [{"start": start, "end": end, "c": cluster, "s": t.session_id, "n": turn.turn_no}
              for t in texts for turn, (start, end) in zip(t.turns, t.offsets, strict=True)]
    if ranges:
        conn.execute(text("UPDATE qual_turns SET export_start = :start, export_end = :end"
                          " WHERE cluster_id = :c AND session_id = :s AND turn_no = :n"), ranges)
    conn.execute(text(
        "INSERT INTO stored_files (cluster_id, path, category, registered_at, deleted_at)"
        " VALUES (:c, :path, :category, :at, NULL) ON CONFLICT (cluster_id, path) DO UPDATE"
        " SET category = excluded.category, registered_at = excluded.registered_at, deleted_at = NULL"),
        {"c": cluster, "path": str(out), "category": EXPORT_CATEGORY, "at": now})
    append_audit(conn, cluster, "coding_exported", dict(details), flow_run_id)
    return now


def current_coding(conn: Connection, cluster: str) -> Mapping[str, Any] | None:
    """The latest imported coding of the cluster (its counts), if any."""
    row = conn.execute(text(
        "SELECT sha256, kind, selections, segments FROM qual_codings WHERE cluster_id = :c"
        " ORDER BY imported_at DESC LIMIT 1"), {"c": cluster}).first()
    return None if row is None else dict(row._mapping)


def new_codes(conn: Connection, cluster: str, used: Sequence[CodeRow]) -> list[CodeRow]:
    """The codes of a coding that the codebook does not hold (theme rows added for new themes)."""
    known = {(r.theme, r.subtheme) for r in conn.execute(text(
        "SELECT theme, subtheme FROM qual_codes WHERE cluster_id = :c AND origin = :o"),
        {"c": cluster, "o": CODEBOOK})}
    added: dict[tuple[str, str], CodeRow] = {}
    for code in used:
        for theme, subtheme in ((code.theme, ""), (code.theme, code.subtheme)):
            if (theme, subtheme) not in known and (theme, subtheme) not in added:
                added[(theme, subtheme)] = CodeRow(theme, subtheme, None, None, CODING)
    return list(added.values())


def store_coding(conn: Connection, cluster: str, coding: Coding, codebook: Sequence[CodeRow] | None,
                 flow_run_id: str | None) -> int:
    """Store an imported coding in the caller's transaction: codes, segments (all replaced), audit.

    Returns the number of codes added while coding (codes the codebook does not hold).
    """
    if codebook is not None:
        store_codebook(conn, cluster, codebook)
    conn.execute(text("DELETE FROM qual_codes WHERE cluster_id = :c AND origin = :o"),
                 {"c": cluster, "o": CODING})
    added = new_codes(conn, cluster, coding.codes)
    insert_codes(conn, cluster, added)
    conn.execute(text("DELETE FROM qual_segments WHERE cluster_id = :c"), {"c": cluster})
    if coding.segments:
        conn.execute(text(
            "INSERT INTO qual_segments (cluster_id, coding_sha256, selection_id, session_id, turn_no,"
            " participant_id, theme, subtheme, start_cp, end_cp) VALUES (:c, :sha, :sel, :s, :n, :p,"
            " :theme, :subtheme, :start, :end)"),
            [{"c": cluster, "sha": coding.sha256, "sel": s.selection_id, "s": s.session_id,
              "n": s.turn_no, "p": s.participant_id, "theme": s.theme, "subtheme": s.subtheme,
              "start": s.start_cp, "end": s.end_cp} for s in coding.segments])
    conn.execute(text("DELETE FROM qual_codings WHERE cluster_id = :c AND sha256 = :sha"),
                 {"c": cluster, "sha": coding.sha256})
    conn.execute(text(
        "INSERT INTO qual_codings (cluster_id, sha256, kind, imported_at, selections, segments)"
        " VALUES (:c, :sha, :kind, :at, :selections, :segments)"),
        {"c": cluster, "sha": coding.sha256, "kind": coding.kind, "at": datetime.now(UTC).isoformat(),
         "selections": coding.selections, "segments": len(coding.segments)})
    append_audit(conn, cluster, "coding_imported", {
        "kind": coding.kind, "sha256": coding.sha256, "selections": coding.selections,
        "segments": len(coding.segments), "codes_added": len(added), "sessions": coding.sessions,
        "segments_dropped_withdrawn": coding.dropped_withdrawn}, flow_run_id)
    return len(added)


def import_result(coding: Coding, codes_added: int) -> dict[str, Any]:
    """The ``coding import --json`` object of a stored coding (counts only)."""
    return {"status": "imported", "sha256": coding.sha256, "kind": coding.kind,
            "selections": coding.selections, "segments": len(coding.segments),
            "codes_added": codes_added, "sessions": coding.sessions,
            "segments_dropped_withdrawn": coding.dropped_withdrawn}


def duplicate_result(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The result when the file is the coding already in place: nothing to do."""
    return {"status": "duplicate", "sha256": previous["sha256"], "kind": previous["kind"],
            "selections": previous["selections"], "segments": previous["segments"],
            "codes_added": 0, "sessions": 0, "segments_dropped_withdrawn": 0}
