"""Retention flow: apply the schedule of ``deployments/retention-rules.toml`` and audit it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.retention.report import sweep_report
from tasks.retention.steps import (
    compact,
    delete_due,
    finish_unfinished,
    open_sweep,
    plan_retention,
    publish_deletions,
    running_run_ids,
    verify,
)


@flow(name=flow_names.RETENTION_SWEEP, persist_result=False)
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
    verification = verify(runtime, sweep, schedule, deleted)
    publish_deletions(sweep, deleted, verification)
    compaction = compact(runtime)  # last: leaves the database files as the sweep left the rows
    return sweep_report(schedule, False, deleted, verification, compaction=compaction, warnings=notes)
