"""``participants withdraw ID``: a participant leaves the study (qualitative-v1.md §6).

In one transaction: the register entry loses its personal data (sealed names, survey token),
``withdrawn_date`` is set, the withdrawal is recorded in ``qual_withdrawals`` (it outlives any
re-imported register), every stored turn of that participant becomes ``[withdrawn]`` (sealed
like any turn, ``withdrawn`` TRUE) and their coded segments are deleted; audited with the
participant_id (a pseudonymous code) and counts. Works with no transcripts, some, or after
analysis; outputs made before are listed as stale by ``status``. The flow then compacts the
database so no deleted bytes stay in free pages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from schemas.qualitative import PARTICIPANT_ID
from tasks.core.audit import append_audit
from tasks.core.db import query
from tasks.core.errors import InputRejected
from tasks.core.runtime import Runtime
from tasks.core.secrets import TRANSCRIPT_KEY, Secrets
from tasks.qualitative.model import WITHDRAWN_TEXT, key_id, seal, turn_aad


def check_participant_id(participant_id: str) -> str:
    """The id trimmed, or a one-line InputRejected when it cannot be a participant_id (no echo)."""
    value = participant_id.strip()
    if not re.fullmatch(PARTICIPANT_ID, value):
        raise InputRejected("that is not a participant_id (1 to 16 of A-Z a-z 0-9 -, e.g. F03); "
                            "give the participant's id from the register, never a name")
    return value


def record_withdrawal(conn: Connection, cluster: str, participant_id: str, at: datetime) -> None:
    """Remember the withdrawal (kept when the register is re-imported)."""
    conn.execute(text("INSERT INTO qual_withdrawals (cluster_id, participant_id, withdrawn_at)"
                      " VALUES (:c, :p, :at)"), {"c": cluster, "p": participant_id, "at": at.isoformat()})


def withdraw_in_store(conn: Connection, secrets: Secrets, cluster: str, participant_id: str) -> tuple[int, int]:
    """Turn the participant's stored turns into ``[withdrawn]`` and delete their segments.

    Returns (turns changed, segments deleted). Turns already withdrawn are left as they are.
    """
    found = conn.execute(text(
        "SELECT session_id, turn_no FROM qual_turns"
        " WHERE cluster_id = :c AND participant_id = :p AND NOT withdrawn ORDER BY session_id, turn_no"),
        {"c": cluster, "p": participant_id}).all()
    if found:
        key = secrets.key(TRANSCRIPT_KEY)
        updates = []
        for session_id, turn_no in found:
            nonce, ciphertext = seal(key, turn_aad(cluster, session_id, turn_no), WITHDRAWN_TEXT)
            updates.append({"c": cluster, "s": session_id, "t": turn_no, "k": key_id(key), "n": nonce,
                            "x": ciphertext, "w": True})
        conn.execute(text("UPDATE qual_turns SET key_id = :k, nonce = :n, ciphertext = :x, withdrawn = :w"
                          " WHERE cluster_id = :c AND session_id = :s AND turn_no = :t"), updates)
    deleted = conn.execute(query("qual_withdraw_segments"),
                           {"cluster_id": cluster, "participant_id": participant_id}).rowcount or 0
    return len(found), deleted


def withdraw_participant(rt: Runtime, participant_id: str, flow_run_id: str | None = None,
                         now: datetime | None = None) -> dict[str, Any]:
    """Withdraw one participant now: {"status", "turns_withdrawn", "segments_deleted"}.

    ``already_withdrawn`` when the withdrawal was recorded before (nothing changes unless turns
    stored since still hold their words). An id in neither the register nor the withdrawals is
    refused with one line (exit 1).
    """
    pid = check_participant_id(participant_id)
    cluster = rt.cluster
    now = now or datetime.now(UTC)
    with rt.engine.begin() as conn:
        listed = conn.execute(text(
            "SELECT names_ciphertext, survey_token, withdrawn_date FROM qual_participants"
            " WHERE cluster_id = :c AND participant_id = :p"), {"c": cluster, "p": pid}).first()
        recorded = conn.execute(text(
            "SELECT withdrawn_at FROM qual_withdrawals WHERE cluster_id = :c AND participant_id = :p"),
            {"c": cluster, "p": pid}).first()
        if listed is None and recorded is None:
            raise InputRejected("no participant with that participant_id in the register; check the id "
                                "against the register (ids are case-sensitive)")
        already = recorded is not None
        if not already:
            record_withdrawal(conn, cluster, pid, now)
        cleared = listed is not None and (listed.names_ciphertext is not None
                                          or listed.survey_token is not None
                                          or listed.withdrawn_date is None)
        if cleared:
            conn.execute(text(
                "UPDATE qual_participants SET names_key_id = NULL, names_nonce = NULL,"
                " names_ciphertext = NULL, survey_token = NULL,"
                " withdrawn_date = COALESCE(withdrawn_date, :d)"
                " WHERE cluster_id = :c AND participant_id = :p"),
                {"c": cluster, "p": pid, "d": now.date().isoformat()})
        turns, segments = withdraw_in_store(conn, rt.secrets, cluster, pid)
        if not already or cleared or turns or segments:
            append_audit(conn, cluster, "participant_withdrawn", {
                "participant_id": pid, "turns": turns, "segments": segments, "repeat": already,
            }, flow_run_id, now)
    return {"status": "already_withdrawn" if already else "withdrawn", "turns_withdrawn": turns,
            "segments_deleted": segments}
