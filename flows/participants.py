"""Participants flows: import the qualitative register; withdraw a participant (qualitative-v1.md §1, §6).

Flow parameters are a file path and a participant_id (a pseudonymous code): never a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.qualitative.steps import (
    compact_database_task,
    import_register_task,
    publish_register_task,
    withdraw_participant_task,
)


@flow(name=flow_names.PARTICIPANTS_IMPORT, persist_result=False)
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
    return result.as_json()


@flow(name=flow_names.PARTICIPANTS_WITHDRAW, persist_result=False)
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
