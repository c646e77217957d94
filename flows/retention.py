"""Retention flow: apply the schedule of ``deployments/retention-rules.toml`` and audit it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.core import flow_names
from tasks.core.db import compact_database
from tasks.core.runtime import Runtime, current_runtime
from tasks.retention.schedule import (
    Deleted,
    FlowRunRef,
    Schedule,
    Sweep,
    Verification,
    check_sweep,
    compact_prefect_database,
    delete_unit,
    deletion_table,
    finish_sweep,
    keys_held_elsewhere,
    load_rules,
    plan_schedule,
    record_sweep,
    record_verification,
    resume_units,
    sweep_report,
    take_inventory,
    unfinished_units,
    verify_retention,
)


def running_run_ids() -> tuple[str, ...]:
    """This flow run and the runs it is nested in (a parent flow must not lose its own record)."""
    from prefect.runtime import flow_run

    ids = (flow_run.id, flow_run.parent_flow_run_id, flow_run.root_flow_run_id)
    return tuple(dict.fromkeys(str(i) for i in ids if i))


def project_runs(runtime: Runtime, before: datetime, exclude: Sequence[str]) -> list[FlowRunRef]:
    """Flow runs of this project's flows that started before ``before``, except ``exclude``."""
    return runtime.run_history.runs(flow_names.FLOW_NAMES, before, exclude)


@task(name="check-retention", cache_policy=NO_CACHE, persist_result=False)
def open_sweep(runtime: Runtime, as_of: date, dry_run: bool, running: tuple[str, ...]) -> Sweep:
    """Refuse bad dates, a past as_of or a lost key before anything is deleted; record the sweep."""
    rules = load_rules()
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, runtime.cluster, rules)
        check_sweep(conn, runtime.settings, runtime.home, rules, inventory, as_of)
    sweep = Sweep(uuid.uuid4().hex, as_of, running[0] if running else None, running=running)
    if not dry_run:
        record_sweep(runtime.engine, runtime.cluster, sweep)
    return sweep


@task(name="finish-unfinished-deletions", cache_policy=NO_CACHE, persist_result=False)
def finish_unfinished(runtime: Runtime, sweep: Sweep) -> list[Deleted]:
    """Finish deletions a killed sweep recorded as started."""
    return resume_units(
        runtime.engine,
        runtime.home,
        runtime.cluster,
        runtime.run_history,
        sweep.flow_run_id,
        runtime.checkpoint,
    )


@task(name="plan-retention", cache_policy=NO_CACHE, persist_result=False)
def plan_retention(runtime: Runtime, sweep: Sweep) -> tuple[Schedule, list[str]]:
    """What is due at as_of and what comes next, from the rules, settings and what exists."""
    rules = load_rules()
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, runtime.cluster, rules)
        unfinished = [unit for _, _, unit in unfinished_units(conn, runtime.cluster)]
    runs = project_runs(runtime, sweep.started, sweep.running)
    schedule = plan_schedule(rules, runtime.settings, inventory, runtime.home, runs, sweep.as_of)
    notes = keys_held_elsewhere(rules, inventory, runtime.secrets.exists)
    return schedule, notes + [f"unfinished deletion: {u.rule} {u.target}" for u in unfinished]


@task(name="delete-due", cache_policy=NO_CACHE, persist_result=False)
def delete_due(runtime: Runtime, sweep: Sweep, schedule: Schedule) -> list[Deleted]:
    """Delete every due item, one transaction each, pseudonymisation key last."""
    history, checkpoint = runtime.run_history, runtime.checkpoint
    return [
        delete_unit(runtime.engine, runtime.home, runtime.cluster, sweep, unit, history, checkpoint)
        for unit in schedule.units
    ]


@task(name="compact-databases", cache_policy=NO_CACHE, persist_result=False)
def compact(runtime: Runtime) -> dict[str, Any]:
    """Checkpoint and vacuum both databases so deleted rows and runs leave no trace in files."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    prefect_url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    return compact_database(runtime.engine) | {
        "prefect_vacuumed": compact_prefect_database(str(prefect_url) if prefect_url else None)
    }


@task(name="verify-retention", cache_policy=NO_CACHE, persist_result=False)
def verify(
    runtime: Runtime, sweep: Sweep, schedule: Schedule, deleted: Sequence[Deleted]
) -> Verification:
    """Search the database, HOME and Prefect for what was due; audit the result."""
    rules = load_rules()
    runs = project_runs(runtime, sweep.started, sweep.running)
    deleted_runs = [r for d in deleted for r in d.unit.flow_runs]
    result = verify_retention(
        runtime.engine,
        runtime.home,
        runtime.settings,
        rules,
        schedule,
        runs,
        deleted_runs,
        runtime.run_history,
    )
    record_verification(runtime.engine, runtime.cluster, sweep, result)
    finish_sweep(runtime.engine, runtime.cluster, sweep)
    return result


@task(name="publish-deletions", cache_policy=NO_CACHE, persist_result=False)
def publish_deletions(sweep: Sweep, deleted: Sequence[Deleted], verification: Verification) -> None:
    """Show what was deleted (counts only) on the flow run's page."""
    outcome = "nothing remains" if verification.ok else f"REMAINING {verification.remaining}"
    create_table_artifact(
        key="retention-sweep",
        table=deletion_table(deleted),
        description=f"Retention sweep as of {sweep.as_of}: {len(deleted)} item(s) deleted; "
        f"verification: {outcome}.",
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
    return sweep_report(
        schedule, False, deleted, verification, compaction=compaction, warnings=notes
    )


