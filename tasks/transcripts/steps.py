"""Thin Prefect tasks of the transcript commands: pipeline stages as named tasks, counts-only artifacts.

``import_transcripts`` and ``redact_session`` take a stage runner: here each stage ("check
delivery", "read and de-identify", "store transcripts", "write review lists", "quarantine") runs
as a named task whose inputs and result stay in memory (``run_stage_as_task``). Artifacts show
sessions, turns, words, replacements by kind and review-list sizes: never text, labels or names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.core.prefect import artifact_key, stage_task
from tasks.core.runtime import Runtime
from tasks.ingest.steps import run_stage_as_task
from tasks.transcripts.intake import approve_session, import_transcripts, redact_session


def import_transcripts_stages(rt: Runtime, path: Path, flow_run_id: str | None) -> dict[str, Any]:
    """Import an encrypted archive of transcripts, each stage a named task."""
    return import_transcripts(rt, path, flow_run_id, stage=run_stage_as_task)


def redact_session_stages(rt: Runtime, session_id: str, flow_run_id: str | None) -> dict[str, Any]:
    """De-identify a session again, each stage a named task."""
    return redact_session(rt, session_id, flow_run_id, stage=run_stage_as_task)


@stage_task("approve transcript")
def approve_session_task(rt: Runtime, session_id: str, flow_run_id: str | None) -> dict[str, Any]:
    """Record the researcher's approval of a session's de-identified transcript."""
    return approve_session(rt, session_id, flow_run_id)


def counts_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row of counts: sessions, turns, words, withdrawn turns, review entries, replacements by kind."""
    row: dict[str, Any] = {key: result[key] for key in
                           ("sessions", "turns", "words", "withdrawn_turns", "review_entries") if key in result}
    if "session_id" in result:
        row = {"session": result["session_id"], **row}
    row.update({f"replaced: {kind}": n for kind, n in result.get("replacements", {}).items()})
    return [row]


@stage_task("publish transcript counts")
def publish_counts_task(cluster: str, command: str, result: dict[str, Any]) -> None:
    """Table artifact of a transcript command's figures (counts only)."""
    if result.get("status") == "duplicate":
        return
    create_table_artifact(counts_table(result), key=artifact_key(cluster, f"transcripts-{command}"),
                          description=f"transcripts {command}: sessions, turns, words, replacements by "
                                      "kind and review-list entries; exact counts for running the fieldwork; "
                                      "counts only, no personal data")
