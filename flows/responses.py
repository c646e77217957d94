"""Response flows: import a survey export; withdraw a household.

``withdraw`` never passes the token to Prefect: the flow receives its SHA-256 and finds the
household by it, so the token does not appear in flow parameters or the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.survey.steps import (
    compact_database_task,
    finish_progress_task,
    import_responses_task,
    publish_response_rates_task,
    start_progress_task,
    withdraw_household_task,
)


@flow(name=flow_names.IMPORT_RESPONSES, persist_result=False)
def import_flow(path: Path) -> dict[str, Any]:
    """Validate and import a survey response export; update progress and response-rate artifacts.

    Args:
        path: the CSV export (survey response export v1); importing the same file again
            changes nothing.
    """
    rt = current_runtime()
    progress = start_progress_task(rt.engine, rt.settings)
    result = import_responses_task(rt.engine, rt.settings, Path(path), flow_run.get_id())
    finish_progress_task(progress, result)
    publish_response_rates_task(rt.engine, rt.settings)
    return result.as_json()


@flow(name=flow_names.WITHDRAW, persist_result=False)
def withdraw_flow(token_sha256: str) -> dict[str, Any]:
    """Delete a household's survey data and contact details now and never contact it again.

    Args:
        token_sha256: SHA-256 (hex) of the household's survey token, so the token itself
            never reaches Prefect.
    """
    rt = current_runtime()
    withdrawal = withdraw_household_task(rt.engine, rt.settings, token_sha256, flow_run.get_id())
    compact_database_task(rt.engine)  # no trace of the deleted rows left in the database files
    return withdrawal.as_json()
