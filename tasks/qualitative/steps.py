"""Thin Prefect tasks over the register and withdrawal (the names the Prefect UI shows).

Each task calls one plain function (tested without Prefect) and is made with ``stage_task``:
no persisted results, no cache. Artifacts hold counts only: participants by strand, sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_table_artifact
from sqlalchemy import text

from tasks.core.db import compact_database
from tasks.core.prefect import artifact_key, stage_task
from tasks.core.runtime import Runtime
from tasks.qualitative.register import RegisterResult, import_register
from tasks.qualitative.withdraw import withdraw_participant


@stage_task("import-register")
def import_register_task(rt: Runtime, path: Path, flow_run_id: str | None) -> RegisterResult:
    """Decrypt, validate and store the participants register (a file seen before changes nothing)."""
    return import_register(rt, path, flow_run_id)


@stage_task("withdraw-participant")
def withdraw_participant_task(rt: Runtime, participant_id: str, flow_run_id: str | None) -> dict[str, Any]:
    """Remove a participant's names, words and coded segments now."""
    return withdraw_participant(rt, participant_id, flow_run_id)


def register_table(rt: Runtime) -> list[dict[str, Any]]:
    """Participants, sessions and withdrawals by strand (counts only)."""
    with rt.engine.connect() as conn:
        found = conn.execute(text(
            "SELECT p.strand, COUNT(*) AS participants, COUNT(DISTINCT p.session_id) AS sessions,"
            " SUM(CASE WHEN p.withdrawn_date IS NOT NULL OR w.participant_id IS NOT NULL THEN 1 ELSE 0 END)"
            " AS withdrawn"
            " FROM qual_participants p LEFT JOIN qual_withdrawals w"
            " ON w.cluster_id = p.cluster_id AND w.participant_id = p.participant_id"
            " WHERE p.cluster_id = :c GROUP BY p.strand ORDER BY p.strand"), {"c": rt.cluster}).all()
    return [{"strand": r.strand, "participants": int(r.participants), "sessions": int(r.sessions),
             "withdrawn": int(r.withdrawn or 0)} for r in found]


@stage_task("publish-register")
def publish_register_task(rt: Runtime) -> list[dict[str, Any]]:
    """Table artifact: participants, sessions and withdrawals by strand (no names, no ids)."""
    table = register_table(rt)
    create_table_artifact(table, key=artifact_key(rt.cluster, "qualitative-register"),
                          description="Qualitative participants register by strand: exact counts for running the "
                                      "fieldwork; counts only, no personal data")
    return table


@stage_task("compact-database")
def compact_database_task(rt: Runtime) -> dict[str, Any]:
    """Leave no trace of replaced or deleted rows in the database files (SQLite: VACUUM)."""
    return compact_database(rt.engine)
