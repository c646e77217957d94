"""Participants flows: import the qualitative register; withdraw a participant (qualitative-v1.md §1, §6).

Flow parameters are a file path and a participant_id (a pseudonymous code): never a name. A register
imported before ends Completed with a line saying there was nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime
from tasks.qualitative.steps import (
    compact_database_task,
    import_register_task,
    publish_register_task,
    withdraw_participant_task,
)


def _import_summary(result: Mapping[str, Any]) -> str:
    return (f"register imported: {result['participants']} participant(s) in {result['sessions']} session(s) "
            f"({result['families']} family member(s), {result['practitioners']} practitioner(s)), "
            f"{result['withdrawn']} withdrawn")


def _withdraw_summary(result: Mapping[str, Any]) -> str:
    already = "had already withdrawn" if result["status"] == "already_withdrawn" else "withdrawn"
    return (f"participant {already}: {result['turns_withdrawn']} transcript turn(s) replaced by "
            f"[withdrawn], {result['segments_deleted']} coded segment(s) deleted")


@project_flow(flow_names.PARTICIPANTS_IMPORT, run_name=lambda p: "participants import", summary=_import_summary)
def participants_import_flow(path: Path) -> dict[str, Any]:
    """Import (replace) the encrypted participants register; publish counts by strand.

    Args:
        path: the encrypted register (AES-256 ZIP or age) holding participants.csv or a workbook
            with a sheet ``participants``; importing the same file again changes nothing.
    """
    rt = current_runtime()
    result = import_register_task(rt, Path(path), flow_run.get_id())
    if result.status == "imported":
        compact_database_task(rt)  # the replaced register's sealed names leave no free pages
    publish_register_task(rt)
    if result.status == "duplicate":
        raise NothingToDo(f"this register was imported before (sha256 {result.sha256[:12]}…); nothing to do; "
                          f"{result.participants} participant(s) in the register", result.as_json())
    return result.as_json()


@project_flow(flow_names.PARTICIPANTS_WITHDRAW, run_name=lambda p: f"withdraw participant {p['participant_id']}",
              summary=_withdraw_summary)
def participants_withdraw_flow(participant_id: str) -> dict[str, Any]:
    """A participant withdraws: names, words and coded segments removed now.

    Args:
        participant_id: the participant's id in the register (e.g. F03), never a name.
    """
    rt = current_runtime()
    result = withdraw_participant_task(rt, participant_id, flow_run.get_id())
    compact_database_task(rt)  # no trace of the removed names or words in the database files
    publish_register_task(rt)
    return result
