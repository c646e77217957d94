"""Response flows: import a survey export; withdraw a household.

``withdraw`` never passes the token to Prefect: the flow receives its SHA-256 and finds the
household by it, so the token does not appear in flow parameters or the UI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.commands import Outcome
from tasks.db import compact_database
from tasks.responses import (
    finish_progress_task,
    import_responses_task,
    publish_response_rates_task,
    start_progress_task,
    token_digest,
    withdraw_household_task,
)
from tasks.runtime import current_runtime


@flow(name="import-responses", persist_result=False)
def import_flow(path: Path) -> dict[str, Any]:
    """Validate and import a survey response export; update progress and response-rate artifacts.

    Args:
        path: the CSV export (survey response export v1); importing the same file again
            changes nothing.
    """
    rt = current_runtime()
    progress = start_progress_task(rt.engine, rt.settings)
    result = import_responses_task(rt.engine, rt.settings, Path(path),
                                   flow_run_id=flow_run.get_id())
    finish_progress_task(progress, result)
    publish_response_rates_task(rt.engine, rt.settings)
    return result.as_json()


@flow(name="withdraw", persist_result=False)
def withdraw_flow(token_sha256: str) -> dict[str, Any]:
    """Delete a household's survey data and contact details now and never contact it again.

    Args:
        token_sha256: SHA-256 (hex) of the household's survey token, so the token itself
            never reaches Prefect.
    """
    rt = current_runtime()
    result = withdraw_household_task(rt.engine, rt.settings, token_sha256,
                                     flow_run_id=flow_run.get_id()).as_json()
    compact_database(rt.engine)  # no trace of the deleted rows left in the database files
    return result


def _import_summary(result: dict[str, Any]) -> str:
    if result["status"] == "duplicate":
        return f"{result['file']} was imported before (sha256 {result['sha256'][:12]}…); nothing to do"
    rate = result["response_rate"]
    shown = "n/a" if rate["rate"] is None else f"{100 * rate['rate']:.1f}%"
    return (f"{result['rows']} rows: {result['accepted']} accepted, {result['quarantined']} "
            f"quarantined, {len(result['duplicates'])} duplicate(s), {result['already_stored']} "
            f"already stored; respondents {rate['responded']} of {rate['issued']} issued "
            f"({shown}), target {rate['target_respondents']}")


def run_import_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval responses import FILE [--json]``."""
    return import_flow(path=Path(args.file).resolve()), 0, _import_summary


def _withdraw_summary(result: dict[str, Any]) -> str:
    if result["status"] == "already_withdrawn":
        return "that household had already withdrawn; it stays marked never to be contacted"
    return (f"household withdrawn (wave {result['wave']}): {result['responses_deleted']} response(s) "
            f"and {result['contact_deleted']} contact record(s) deleted; it will not be contacted again")


def run_withdraw_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval withdraw TOKEN``."""
    return withdraw_flow(token_sha256=token_digest(args.token)), 0, _withdraw_summary
