"""Inbox pick-up flow: ingest every new extract Egress downloaded into ``CLUSTER_EVAL_HOME/inbox``.

Each settled extract is claimed by an atomic rename into this run's claim folder, then ingested as
an ``ingest`` subflow (``tasks.ingest.inbox``), so two workers never ingest one file twice and a
Retry of the run finishes the files it had claimed. Any rejected extract ends the run Failed with
how many and the first reason; an empty inbox ends it Completed, "inbox empty: nothing to do".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect.runtime import flow_run

from flows.ingest import ingest_flow
from tasks.core import flow_names
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime
from tasks.ingest.inbox import EMPTY_LINE, PickUp, pick_up, pick_up_line, rejection_line
from tasks.ingest.steps import ExtractRejected, claim_owner_finished, run_stage_as_task

UK = ZoneInfo("Europe/London")


class InboxRejected(UserFacingError):
    """At least one picked-up extract was rejected: how many, the first reason; ``result`` the counts."""

    def __init__(self, counts: PickUp) -> None:
        super().__init__(rejection_line(counts))
        self.result = counts.to_json()


def inbox_run_name(parameters: Mapping[str, Any]) -> str:
    """``inbox pick-up YYYY-MM-DD HH:MM`` in UK time (the run's scheduled start)."""
    started = flow_run.scheduled_start_time or datetime.now(UK)
    return f"inbox pick-up {started.astimezone(UK):%Y-%m-%d %H:%M}"


def _summary(result: dict[str, Any]) -> str:
    return pick_up_line(PickUp(**{k: v for k, v in result.items() if k != "found"}))


def _ingest(path: Path) -> tuple[str, str | None]:
    try:
        result = ingest_flow(str(path))
    except ExtractRejected as rejected:
        return "rejected", rejected.result["error"]
    return str(result["status"]), None


@project_flow(flow_names.INGEST_INBOX, run_name=inbox_run_name, summary=_summary)
def ingest_inbox_flow() -> dict[str, Any]:
    """Ingest every new extract in CLUSTER_EVAL_HOME/inbox (``*.zip``, ``*.age`` with optional ``.sha256``).

    A file is taken once it and its ``.sha256`` have not changed for ``ingest.inbox_settle_seconds``;
    dotfiles, sub-folders and partial downloads (``.part``, ``.crdownload``, ``.tmp``) are left alone.
    No parameters: the inbox is part of the state folder. A Retry of a run only finishes the files
    it had claimed.

    Returns:
        Counts: found, ingested, duplicate, rejected, waiting, held (and the first rejection's line).
    """
    runtime = current_runtime()
    run_id = flow_run.get_id() or str(uuid.uuid4())
    counts = pick_up(runtime.home.inbox, run_id, runtime.settings.ingest.inbox_settle_seconds, time.time(),
                     claim_owner_finished, _ingest, retry=flow_run.run_count > 1, stage=run_stage_as_task)
    if counts.rejected:
        raise InboxRejected(counts)
    if counts.found == 0 and counts.held == 0:
        raise NothingToDo(EMPTY_LINE, counts.to_json())
    return counts.to_json()
