"""A retention sweep: the checks before it deletes, its ledger, and the deletion of each item.

A unit that touches files, keys or Prefect is first recorded as ``started`` in
``retention_deletions`` with its plan, then removed, then closed as ``done`` in the transaction
that deletes its rows and writes its audit event; the next sweep finishes any started unit
before planning anew, so a sweep killed at any point is finished by a re-run and nothing is
deleted twice or unrecorded.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from tasks.core.audit import append_audit
from tasks.core.db import query, rows
from tasks.core.errors import ConfigError
from tasks.core.home import Home
from tasks.core.runtime import Checkpoint
from tasks.core.settings import Settings
from tasks.retention.dates import date_problems
from tasks.retention.files import delete_file, prune_folder, prune_stop, resolve, shred_key
from tasks.retention.history import RunHistory
from tasks.retention.inventory import Inventory
from tasks.retention.plan import Unit
from tasks.retention.rules import Rule
from tasks.retention.store import delete_rows, null_columns

DELETION_EVENT = "retention-deletion"


# --- the sweep and its checks -----------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """One sweep's identity: what the audit events and the ledger are stamped with."""

    sweep_id: str
    as_of: date
    flow_run_id: str | None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The sweep's own flow run and the runs it is nested in: never deleted while running.
    running: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deleted:
    """A finished unit with the counts actually deleted."""

    unit: Unit
    as_of: date
    counts: dict[str, Any]
    resumed: bool = False

    def view(self) -> dict[str, Any]:
        """The JSON view of one deletion."""
        return {
            "category": self.unit.category,
            "rule": self.unit.rule,
            "due_date": self.unit.due_date.isoformat(),
            **self.counts,
            "resumed": self.resumed,
        }


def last_sweep(conn: Connection, cluster_id: str) -> dict[str, Any] | None:
    """The sweep with the latest as_of, or None."""
    found = rows(conn, "retention_last_sweep", {"cluster_id": cluster_id})
    return found[0] if found else None


def unfinished_units(conn: Connection, cluster_id: str) -> list[tuple[str, Sweep, Unit]]:
    """Units a killed sweep started but did not close."""
    return [
        (
            row["unit_id"],
            Sweep(row["sweep_id"], date.fromisoformat(row["as_of"]), None),
            Unit.from_plan(row["plan"]),
        )
        for row in rows(conn, "retention_ledger_unfinished", {"cluster_id": cluster_id})
    ]


def _protected(rule: Rule, inventory: Inventory) -> tuple[int, int]:
    # Rows and files of a store that its key still protects: everything it deletes, or only the
    # rows of the tables named in key_protects (a cleared column's table: rows that still have it).
    nulled = rule.null_columns.table if rule.null_columns else None
    if rule.key_protects is not None:
        return sum(
            inventory.nulls.get(t, 0) if t == nulled else inventory.tables.get(t, 0) for t in rule.key_protects
        ), 0
    rows_left = sum(inventory.tables.get(t, 0) for t in rule.tables)
    rows_left += inventory.nulls.get(nulled, 0) if nulled else 0
    files_left = sum(
        1 for f in inventory.files if f.category in rule.file_categories and not f.deleted
    )
    files_left += sum(len(inventory.loose.get(folder, ())) for folder in rule.folders)
    return rows_left, files_left


def key_problems(
    rules: Sequence[Rule],
    inventory: Inventory,
    home: Home,
    unfinished: set[str],
    has_secret: Callable[[str], bool],
) -> list[str]:
    """Store keys missing while data they protect remain and the schedule did not destroy them."""
    problems = []
    for rule in rules:
        if not rule.is_store or rule.name in unfinished:
            continue
        rows_left, files_left = _protected(rule, inventory)
        if not rows_left and not files_left:
            continue
        problems += [
            f"key {key} is missing (expected {home.keys / key}) while {rows_left} row(s) and "
            f"{files_left} file(s) of {rule.category} it protects remain, and no retention "
            "sweep destroyed it; restore the key from its backup or check CLUSTER_EVAL_HOME"
            for key in rule.keys
            if key not in inventory.keys and not has_secret(key)
        ]
    return problems


def sweep_problems(
    conn: Connection,
    settings: Settings,
    home: Home,
    rules: Sequence[Rule],
    inventory: Inventory,
    as_of: date,
    has_secret: Callable[[str], bool],
) -> list[str]:
    """Why a sweep at as_of must not run: a past as_of, dates that delete too early, lost keys."""
    cluster = settings.study.cluster
    problems = []
    last = last_sweep(conn, cluster)
    if last and as_of < date.fromisoformat(last["as_of"]):
        problems.append(
            f"--as-of {as_of} is before the last retention sweep (as of {last['as_of']}); the "
            "schedule cannot go back in time: use a date on or after it"
        )
    unfinished = {unit.rule for _, _, unit in unfinished_units(conn, cluster)}
    problems += date_problems(settings, inventory.first_ingest, rules)
    problems += key_problems(rules, inventory, home, unfinished, has_secret)
    return problems


def check_sweep(
    conn: Connection,
    settings: Settings,
    home: Home,
    rules: Sequence[Rule],
    inventory: Inventory,
    as_of: date,
    has_secret: Callable[[str], bool],
) -> None:
    """Refuse, before anything is deleted, with the first problem found."""
    problems = sweep_problems(conn, settings, home, rules, inventory, as_of, has_secret)
    if problems:
        raise ConfigError(f"retention: {problems[0]} (nothing was deleted)")


# --- the ledger -------------------------------------------------------------------------------


def record_sweep(engine: Engine, cluster_id: str, sweep: Sweep) -> None:
    """Record a sweep's start (its as_of bounds every later sweep)."""
    with engine.begin() as conn:
        conn.execute(
            query("retention_sweep_insert"),
            {
                "cluster_id": cluster_id,
                "sweep_id": sweep.sweep_id,
                "as_of": sweep.as_of.isoformat(),
                "flow_run_id": sweep.flow_run_id,
                "started_at": sweep.started.isoformat(),
            },
        )


def finish_sweep(engine: Engine, cluster_id: str, sweep: Sweep) -> None:
    """Record that a sweep ran to its end."""
    with engine.begin() as conn:
        conn.execute(
            query("retention_sweep_finish"),
            {
                "cluster_id": cluster_id,
                "sweep_id": sweep.sweep_id,
                "finished_at": datetime.now(UTC).isoformat(),
            },
        )


def _ledger_row(
    cluster_id: str,
    unit_id: str,
    sweep: Sweep,
    unit: Unit,
    state: str,
    counts: dict[str, Any] | None,
) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "cluster_id": cluster_id,
        "unit_id": unit_id,
        "sweep_id": sweep.sweep_id,
        "as_of": sweep.as_of.isoformat(),
        "rule": unit.rule,
        "category": unit.category,
        "due_date": unit.due_date.isoformat(),
        "kind": unit.kind,
        "target": unit.target,
        "plan": unit.plan(),
        "state": state,
        "counts": json.dumps(counts) if counts else None,
        "started_at": now,
        "done_at": now if state == "done" else None,
    }


# --- deletion ---------------------------------------------------------------------------------


def _remove(home: Home, unit: Unit, history: RunHistory | None) -> int:
    # Keys first: once a store's key is gone its rows and files are unreadable everywhere.
    for key in unit.keys:
        shred_key(home, key)
    absent = 0
    for path in unit.files:
        absent += not delete_file(resolve(home, path), prune_stop(home, path))
    for folder in unit.folders:
        prune_folder(resolve(home, folder), prune_stop(home, folder))
    if unit.flow_runs or unit.artifacts:
        if history is None:
            raise ConfigError("the Prefect API is needed to delete flow run history")
        history.delete(unit.flow_runs, unit.artifacts)
    return absent


def _audit_details(
    unit: Unit, as_of: date, sweep_id: str, table_counts: dict[str, int], nulled: dict[str, int]
) -> dict[str, Any]:
    return {
        "category": unit.category,
        "rule": unit.rule,
        "as_of": as_of.isoformat(),
        "due_date": unit.due_date.isoformat(),
        "kind": unit.kind,
        "item": unit.target,
        "rows": sum(table_counts.values()) + sum(nulled.values()),
        "tables": ",".join(f"{t}={n}" for t, n in table_counts.items()),
        "nulled": ",".join(f"{t}={n}" for t, n in nulled.items()),
        "files": len(unit.files),
        "keys": len(unit.keys),
        "flow_runs": len(unit.flow_runs),
        "artifacts": len(unit.artifacts),
        "sweep": sweep_id,
    }


def _close(
    engine: Engine,
    cluster_id: str,
    unit_id: str,
    sweep: Sweep,
    unit: Unit,
    started: bool,
    flow_run_id: str | None,
) -> dict[str, Any]:
    with engine.begin() as conn:
        nulled = {t: null_columns(conn, t, columns, cluster_id) for t, columns, _ in unit.nulls}
        table_counts = {t: delete_rows(conn, t, cluster_id) for t, _ in unit.tables}
        stamp = datetime.now(UTC).isoformat()
        for path in unit.registered:
            conn.execute(
                query("retention_file_deleted"),
                {"cluster_id": cluster_id, "path": path, "deleted_at": stamp},
            )
        details = _audit_details(unit, sweep.as_of, sweep.sweep_id, table_counts, nulled)
        counts = {
            k: details[k] for k in ("kind", "rows", "files", "keys", "flow_runs", "artifacts")
        }
        counts |= {"target": unit.target, "tables": table_counts, "nulled": nulled}
        if started:
            conn.execute(
                query("retention_ledger_done"),
                {
                    "cluster_id": cluster_id,
                    "unit_id": unit_id,
                    "counts": json.dumps(counts),
                    "done_at": stamp,
                },
            )
        else:
            conn.execute(
                query("retention_ledger_insert"),
                _ledger_row(cluster_id, unit_id, sweep, unit, "done", counts),
            )
        append_audit(conn, cluster_id, DELETION_EVENT, details, flow_run_id)
    return counts


def _no_checkpoint(_label: str) -> None:
    return None


def delete_unit(
    engine: Engine,
    home: Home,
    cluster_id: str,
    sweep: Sweep,
    unit: Unit,
    history: RunHistory | None,
    checkpoint: Checkpoint | None = None,
) -> Deleted:
    """Delete one item: record it as started, remove files/keys/runs, close with rows and audit."""
    mark = checkpoint or _no_checkpoint
    unit_id = uuid.uuid4().hex
    outside = unit.files or unit.keys or unit.flow_runs
    if outside:
        if unit.flow_runs and history is not None:
            unit = replace(unit, artifacts=tuple(history.artifact_ids(unit.flow_runs)))
        with engine.begin() as conn:
            conn.execute(
                query("retention_ledger_insert"),
                _ledger_row(cluster_id, unit_id, sweep, unit, "started", None),
            )
        mark(f"{unit.rule}:{unit.target}:started")
        absent = _remove(home, unit, history)
        mark(f"{unit.rule}:{unit.target}:removed")
    else:
        absent = 0
    counts = _close(engine, cluster_id, unit_id, sweep, unit, bool(outside), sweep.flow_run_id)
    mark(f"{unit.rule}:{unit.target}:done")
    return Deleted(unit, sweep.as_of, counts | {"already_absent": absent})


def resume_units(
    engine: Engine,
    home: Home,
    cluster_id: str,
    history: RunHistory | None,
    flow_run_id: str | None,
    checkpoint: Checkpoint | None = None,
) -> list[Deleted]:
    """Finish every unit a killed sweep left started (idempotent removal, then close)."""
    with engine.connect() as conn:
        pending = unfinished_units(conn, cluster_id)
    done = []
    for unit_id, sweep, unit in pending:
        absent = _remove(home, unit, history)
        counts = _close(engine, cluster_id, unit_id, sweep, unit, True, flow_run_id)
        (checkpoint or _no_checkpoint)(f"{unit.rule}:{unit.target}:resumed")
        done.append(Deleted(unit, sweep.as_of, counts | {"already_absent": absent}, resumed=True))
    return done


def compact_prefect_database(url: str | None) -> bool | None:
    """Vacuum Prefect's own SQLite database so deleted runs leave no bytes behind (None: not local)."""
    if not url or not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or not Path(database).is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.OperationalError:  # the server kept it busy: the next sweep tries again
        return False
    return busy == 0
