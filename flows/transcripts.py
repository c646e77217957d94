"""Transcript flows: import an encrypted archive of transcripts, redact a session again, approve it.

Each runs named tasks (``tasks.transcripts.steps``) and publishes counts-only artifacts; no
transcript text, speaker label or name is ever a parameter, a log line, an artifact or a result
Prefect keeps. Secrets come from the environment or 0600 key files, never from parameters. An
archive imported before, or a session approved before, ends Completed with a line saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime
from tasks.transcripts.steps import (
    approve_session_task,
    import_transcripts_stages,
    publish_counts_task,
    redact_session_stages,
)


def _figures(result: Mapping[str, Any]) -> str:
    return (f"{result['turns']} turns, {result['words']} words, {result['withdrawn_turns']} withdrawn turn(s), "
            f"{sum(result['replacements'].values())} replacement(s), {result['review_entries']} review-list entries")


def _import_summary(result: Mapping[str, Any]) -> str:
    return (f"{result['sessions']} transcript(s) imported ({result['replaced_sessions']} replacing an earlier "
            f"import): {_figures(result)}")


def _redact_summary(result: Mapping[str, Any]) -> str:
    return (f"session {result['session_id']} de-identified again: {_figures(result)} "
            f"(before: {result['review_entries_before']})")


def _approve_summary(result: Mapping[str, Any]) -> str:
    return f"session {result['session_id']} approved with {result['review_entries']} review-list entries left"


@project_flow(flow_names.TRANSCRIPTS_IMPORT, run_name=lambda p: "transcripts import", summary=_import_summary)
def transcripts_import_flow(path: Path) -> dict[str, Any]:
    """Import an encrypted archive of transcripts (``<session_id>.docx|.txt|.vtt``), de-identified at once.

    Args:
        path: the AES-256 ZIP or age file as delivered; importing the same file again changes nothing.
    """
    rt = current_runtime()
    result = import_transcripts_stages(rt, Path(path), flow_run.get_id())
    publish_counts_task(rt.cluster, "import", result)
    if result["status"] == "duplicate":
        raise NothingToDo(f"this archive was imported before (sha256 {result['sha256'][:12]}…); nothing to do",
                          result)
    return result


@project_flow(flow_names.TRANSCRIPTS_REDACT, run_name=lambda p: f"redact {p['session_id']}", summary=_redact_summary)
def transcripts_redact_flow(session_id: str) -> dict[str, Any]:
    """De-identify a session again with the current deny- and allow-lists; rewrite its review list.

    Args:
        session_id: the interview or focus group (e.g. ``FI-03``), not yet approved.
    """
    rt = current_runtime()
    result = redact_session_stages(rt, session_id, flow_run.get_id())
    publish_counts_task(rt.cluster, "redact", result)
    return result


@project_flow(flow_names.TRANSCRIPTS_APPROVE, run_name=lambda p: f"approve {p['session_id']}",
              summary=_approve_summary)
def transcripts_approve_flow(session_id: str) -> dict[str, Any]:
    """Approve a session's de-identified transcript (audited with the review-list entries left).

    Args:
        session_id: the interview or focus group (e.g. ``FI-03``).
    """
    rt = current_runtime()
    result = approve_session_task(rt, session_id, flow_run.get_id())
    if result["status"] == "already_approved":
        raise NothingToDo(f"session {session_id} was already approved; nothing to do", result)
    return result
