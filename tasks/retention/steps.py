"""The retention sweep's named tasks (thin wrappers over the plain functions of this package)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.core import flow_names
from tasks.core.db import compact_database
from tasks.core.prefect import artifact_key, stage_task
from tasks.core.runtime import Runtime
from tasks.retention.dates import is_final_due
from tasks.retention.history import FlowRunRef
from tasks.retention.inventory import take_inventory
from tasks.retention.plan import Schedule, keys_held_elsewhere, plan_schedule
from tasks.retention.report import deletion_table
from tasks.retention.rules import load_rules
from tasks.retention.sweep import (
    Deleted,
    Sweep,
    check_sweep,
    compact_prefect_database,
    delete_unit,
    finish_sweep,
    record_sweep,
    resume_units,
    unfinished_units,
)
from tasks.retention.verify import Verification, record_verification, verify_retention


def running_run_ids() -> tuple[str, ...]:
    """This flow run and the runs it is nested in (a parent flow must not lose its own record)."""
    from prefect.runtime import flow_run

    ids = (flow_run.id, flow_run.parent_flow_run_id, flow_run.root_flow_run_id)
    return tuple(dict.fromkeys(str(i) for i in ids if i))


def project_runs(runtime: Runtime, before: datetime, exclude: Sequence[str]) -> list[FlowRunRef]:
    """Flow runs of this project's flows that started before ``before``, except ``exclude``."""
    return runtime.run_history.runs(flow_names.FLOW_NAMES, before, exclude)


@stage_task("check-retention")
def open_sweep(runtime: Runtime, as_of: date, dry_run: bool, running: tuple[str, ...]) -> Sweep:
    """Refuse bad dates, a past as_of or a lost key before anything is deleted; record the sweep."""
    rules = load_rules()
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, runtime.cluster, rules)
        check_sweep(conn, runtime.settings, runtime.home, rules, inventory, as_of, runtime.secrets.exists)
    sweep = Sweep(uuid.uuid4().hex, as_of, running[0] if running else None, running=running)
    if not dry_run:
        record_sweep(runtime.engine, runtime.cluster, sweep)
    return sweep


@stage_task("finish-unfinished-deletions")
def finish_unfinished(runtime: Runtime, sweep: Sweep) -> list[Deleted]:
    """Finish deletions a killed sweep recorded as started."""
    return resume_units(
        runtime.engine, runtime.home, runtime.cluster, runtime.run_history, sweep.flow_run_id, runtime.checkpoint
    )


@stage_task("plan-retention")
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


@stage_task("delete-due")
def delete_due(runtime: Runtime, sweep: Sweep, schedule: Schedule) -> list[Deleted]:
    """Delete every due item, one transaction each, pseudonymisation key last."""
    history, checkpoint = runtime.run_history, runtime.checkpoint
    return [
        delete_unit(runtime.engine, runtime.home, runtime.cluster, sweep, unit, history, checkpoint)
        for unit in schedule.units
    ]


def deleted_history(deleted: Sequence[Deleted]) -> tuple[list[str], list[str]]:
    """The flow runs and artifacts the sweep deleted (ids, never shown)."""
    return ([r for d in deleted for r in d.unit.flow_runs],
            [a for d in deleted for a in d.unit.artifacts])


@stage_task("delete-prefect-events")
def delete_events(runtime: Runtime, sweep: Sweep, deleted: Sequence[Deleted]) -> int | None:
    """Delete Prefect's events of the deleted runs and artifacts and, at the final deadline, every
    event of this cluster but the sweep's own run's (embedded server only; None: external)."""
    runs, artifacts = deleted_history(deleted)
    final = is_final_due(runtime.settings, sweep.as_of)
    if not runs and not artifacts and not final:
        return 0
    return runtime.run_history.delete_events(runs, artifacts, sweep.running, final)


@stage_task("compact-databases")
def compact(runtime: Runtime) -> dict[str, Any]:
    """Checkpoint and vacuum both databases so deleted rows and runs leave no trace in files."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    prefect_url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    return compact_database(runtime.engine) | {
        "prefect_vacuumed": compact_prefect_database(str(prefect_url) if prefect_url else None)
    }


@stage_task("verify-retention")
def verify(runtime: Runtime, sweep: Sweep, schedule: Schedule, deleted: Sequence[Deleted]) -> Verification:
    """Search the database, HOME and Prefect for what was due; audit the result."""
    rules = load_rules()
    runs = project_runs(runtime, sweep.started, sweep.running)
    deleted_runs, deleted_artifacts = deleted_history(deleted)
    result = verify_retention(
        runtime.engine, runtime.home, runtime.settings, rules, schedule, runs, deleted_runs, runtime.run_history,
        deleted_artifacts, sweep.running,
    )
    record_verification(runtime.engine, runtime.cluster, sweep, result)
    finish_sweep(runtime.engine, runtime.cluster, sweep)
    return result


@stage_task("publish-deletions")
def publish_deletions(cluster: str, sweep: Sweep, deleted: Sequence[Deleted], verification: Verification) -> None:
    """Show what was deleted (exact counts, the retention record) on the flow run's page."""
    outcome = {"clean": "nothing remains",
               "prefect-events-pending": f"nothing else remains; {verification.remaining['events']} Prefect "
               "event(s) of this cluster remain on the external server until "
               f"{verification.prefect_events.trimmed_by if verification.prefect_events else '?'}"
               }.get(verification.outcome, f"REMAINING {verification.remaining}")
    create_table_artifact(
        key=artifact_key(cluster, "retention-sweep"),
        table=deletion_table(deleted),
        description=f"Retention sweep as of {sweep.as_of}: {len(deleted)} item(s) deleted; "
        f"verification: {outcome}; exact counts of what was deleted; counts only, no personal data.",
    )
