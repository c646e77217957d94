"""Retention flow: apply the schedule of ``deployments/retention-rules.toml`` and audit it.

A sweep whose verification finds data that should be gone ends the run Failed with the line the
CLI prints; its result (what was deleted, what remains) stays in the ``--json`` output. The one
exception: Prefect events on an external server, whose API cannot delete them, are reported with
the day the server trims them (verification outcome ``prefect-events-pending``), not a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from tasks.core import flow_names
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime
from tasks.retention.report import sweep_report
from tasks.retention.steps import (
    compact,
    delete_due,
    delete_events,
    finish_unfinished,
    open_sweep,
    plan_retention,
    publish_deletions,
    running_run_ids,
    verify,
)
from tasks.retention.verify import events_line


class RetentionNotVerified(UserFacingError):
    """Verification found data the sweep should have deleted; ``result`` is the sweep's result."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def _run_name(params: Mapping[str, Any]) -> str:
    day = params.get("as_of") or datetime.now(UTC).date()
    return f"retention {day}{' (dry run)' if params.get('dry_run') else ''}"


def _summary(result: Mapping[str, Any]) -> str:
    head = f"retention as of {result['as_of']}"
    if result["dry_run"]:
        items = sum(len(entry["items"]) for entry in result["due"])
        return (f"{head} (dry run): {len(result['due'])} rule(s) due now ({items} item(s)), "
                f"{len(result['next'])} coming next; nothing deleted")
    deleted = result["deleted"]
    totals = ", ".join(f"{sum(int(d.get(k, 0)) for d in deleted)} {k.replace('_', ' ')}"
                       for k in ("rows", "files", "keys", "flow_runs"))
    return (f"{head}: {len(deleted)} item(s) deleted ({totals}); verification: {verification_text(result)}; "
            f"{len(result['next'])} deletion(s) coming next; {len(result['warnings'])} warning(s)")


def verification_text(result: Mapping[str, Any]) -> str:
    """What the verification found, in words (the flow's summary and the CLI line)."""
    check = result["verification"]
    if check["outcome"] == "clean":
        return "nothing remains"
    if check["outcome"] == "prefect-events-pending":
        return f"nothing else remains; {events_line(check['prefect_events'])}"
    return f"REMAINING {check['remaining']}"


@project_flow(flow_names.RETENTION_SWEEP, run_name=_run_name, summary=_summary)
def retention_flow(as_of: date | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Apply the retention schedule: list (dry run) or delete what is due, verify and audit it.

    Args:
        as_of: the day the schedule is applied for (default today, UTC); never before the
            as_of of the last sweep.
        dry_run: only list what is due now and what comes next; delete nothing.
    """
    runtime = current_runtime()
    sweep = open_sweep(runtime, as_of or datetime.now(UTC).date(), dry_run, running_run_ids())
    resumed = [] if dry_run else finish_unfinished(runtime, sweep)
    schedule, notes = plan_retention(runtime, sweep)
    if dry_run:
        return sweep_report(schedule, True, warnings=notes)
    deleted = resumed + delete_due(runtime, sweep, schedule)
    delete_events(runtime, sweep, deleted)
    verification = verify(runtime, sweep, schedule, deleted)
    publish_deletions(runtime.cluster, sweep, deleted, verification)
    compaction = compact(runtime)  # last: leaves the database files as the sweep left the rows
    result = sweep_report(schedule, False, deleted, verification, compaction=compaction, warnings=notes)
    if verification.outcome == "remaining":
        raise RetentionNotVerified(
            f"retention verification found data that should be gone: {verification.remaining}; "
            "see the JSON 'verification' items", result)
    return result
