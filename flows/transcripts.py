"""Transcript flows: import an encrypted archive of transcripts, redact a session again, approve it.

Each runs named tasks (``tasks.transcripts.steps``) and publishes counts-only artifacts; no
transcript text, speaker label or name is ever a parameter, a log line, an artifact or a result
Prefect keeps. Secrets come from the environment or 0600 key files, never from parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.transcripts.steps import (
    approve_session_task,
    import_transcripts_stages,
    publish_counts_task,
    redact_session_stages,
)


@flow(name=flow_names.TRANSCRIPTS_IMPORT, persist_result=False)
def transcripts_import_flow(path: Path) -> dict[str, Any]:
    """Import an encrypted archive of transcripts (``<session_id>.docx|.txt|.vtt``), de-identified at once.

    Args:
        path: the AES-256 ZIP or age file as delivered; importing the same file again changes nothing.
    """
    rt = current_runtime()
    result = import_transcripts_stages(rt, Path(path), flow_run.get_id())
    publish_counts_task(rt.cluster, "import", result)
    return result


@flow(name=flow_names.TRANSCRIPTS_REDACT, persist_result=False)
def transcripts_redact_flow(session_id: str) -> dict[str, Any]:
    """De-identify a session again with the current deny- and allow-lists; rewrite its review list.

    Args:
        session_id: the interview or focus group (e.g. ``FI-03``), not yet approved.
    """
    rt = current_runtime()
    result = redact_session_stages(rt, session_id, flow_run.get_id())
    publish_counts_task(rt.cluster, "redact", result)
    return result


@flow(name=flow_names.TRANSCRIPTS_APPROVE, persist_result=False)
def transcripts_approve_flow(session_id: str) -> dict[str, Any]:
    """Approve a session's de-identified transcript (audited with the review-list entries left).

    Args:
        session_id: the interview or focus group (e.g. ``FI-03``).
    """
    rt = current_runtime()
    return approve_session_task(rt, session_id, flow_run.get_id())
