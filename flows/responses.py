"""Response flows: import a survey export; withdraw a household.

``withdraw`` never passes the token to Prefect: the flow receives its SHA-256 and finds the
household by it, so the token does not appear in flow parameters, the run's name or the UI.
An export imported before ends Completed with a line saying there was nothing to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime
from tasks.survey.steps import (
    compact_database_task,
    finish_progress_task,
    import_responses_task,
    publish_response_rates_task,
    start_progress_task,
    withdraw_household_task,
)


def _import_name(params: Mapping[str, Any]) -> str:
    """``import responses <sha256[:8]>`` of the file (the same short hash the audit log keeps)."""
    try:
        digest = hashlib.sha256(Path(params["path"]).read_bytes()).hexdigest()[:8]
    except OSError:
        return "import responses (unreadable file)"
    return f"import responses {digest}"


def _import_summary(result: Mapping[str, Any]) -> str:
    rate = result["response_rate"]
    return (f"{result['rows']} rows: {result['accepted']} accepted, {result['quarantined']} quarantined, "
            f"{len(result['duplicates'])} duplicate(s), {result['already_stored']} already stored; "
            f"respondents {rate['responded']} of {rate['issued']} issued, target {rate['target_respondents']}")


def _withdraw_summary(result: Mapping[str, Any]) -> str:
    already = "had already withdrawn" if result["status"] == "already_withdrawn" else "withdrawn"
    return (f"household {already} (wave {result['wave']}): {result['responses_deleted']} response(s), "
            f"{result['contact_deleted']} contact record(s), {result['interview_draws_deleted']} interview "
            "draw(s) deleted; never to be contacted again")


@project_flow(flow_names.IMPORT_RESPONSES, run_name=_import_name, summary=_import_summary)
def import_flow(path: Path) -> dict[str, Any]:
    """Validate and import a survey response export; update progress and response-rate artifacts.

    Args:
        path: the CSV export (survey response export v1); importing the same file again
            changes nothing.
    """
    rt = current_runtime()
    progress = start_progress_task(rt.engine, rt.settings)
    result = import_responses_task(rt.engine, rt.settings, Path(path), flow_run.get_id(), rt.checkpoint)
    finish_progress_task(progress, result)
    publish_response_rates_task(rt.engine, rt.settings)
    if result.status == "duplicate":
        raise NothingToDo(f"this survey export was imported before (sha256 {result.sha256[:12]}…); "
                          "nothing to do", result.as_json())
    return result.as_json()


@project_flow(flow_names.WITHDRAW, run_name=lambda p: "withdraw household", summary=_withdraw_summary)
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
