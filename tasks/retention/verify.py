"""Verification after a sweep: search the database, every file under HOME and Prefect for leftovers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from tasks.core.audit import AuditValue, append_audit
from tasks.core.home import Home
from tasks.core.settings import Settings
from tasks.retention.dates import is_final_due, rule_deadline
from tasks.retention.files import resolve, shown, walk_files
from tasks.retention.history import EventsLeft, FlowRunRef, RunHistory
from tasks.retention.inventory import Inventory, take_inventory
from tasks.retention.plan import Schedule, plan_schedule
from tasks.retention.rules import IDENTIFIER, Rule
from tasks.retention.store import count_rows, database_tables
from tasks.retention.sweep import Sweep

VERIFICATION_EVENT = "retention-verification"
# Tables that outlive every rule: they hold no personal data and record what was done.
KEPT_TABLES = frozenset(
    {"audit_log", "stored_files", "schema_version", "retention_sweeps", "retention_deletions"}
)


@dataclass(frozen=True)
class Verification:
    """What a completed rule should have removed and still exists (all zero when ok)."""

    as_of: date
    categories: tuple[str, ...]
    remaining: dict[str, int]
    items: tuple[dict[str, Any], ...]
    uncovered_tables: dict[str, int]
    unexpected_files: tuple[str, ...]
    # Prefect events of the deleted runs (and, at the final deadline, of the cluster) still there.
    prefect_events: EventsLeft | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing remains (Prefect's events included)."""
        return not any(self.remaining.values())

    @property
    def events_pending(self) -> bool:
        """Only events remain, on an external server whose API cannot delete them: Prefect trims
        them by ``prefect_events.trimmed_by`` (the sweep did all it can; not a failure)."""
        others = {k: n for k, n in self.remaining.items() if k != "events"}
        return (not self.ok and not any(others.values()) and self.prefect_events is not None
                and self.prefect_events.server == "external")

    @property
    def outcome(self) -> str:
        """clean | prefect-events-pending | remaining."""
        return "clean" if self.ok else "prefect-events-pending" if self.events_pending else "remaining"

    def view(self) -> dict[str, Any]:
        """The JSON view."""
        return {
            "ok": self.ok,
            "outcome": self.outcome,
            "as_of": self.as_of.isoformat(),
            "categories": list(self.categories),
            "remaining": self.remaining,
            "items": list(self.items),
            "uncovered_tables": self.uncovered_tables,
            "unexpected_files": list(self.unexpected_files),
            "prefect_events": self.prefect_events.view() if self.prefect_events else None,
        }


def allowed_files(engine: Engine, home: Home) -> tuple[set[Path], tuple[Path, ...]]:
    """Files that outlive the final deletion: the SQLite database, Prefect's own folder, the audit key and anchor."""
    from tasks.core.audit import HEAD_FILE
    from tasks.core.secrets import AUDIT_KEY

    kept: set[Path] = {(home.keys / AUDIT_KEY).resolve(), (home.root / HEAD_FILE).resolve()}
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database:
        base = Path(database).resolve()
        kept |= {base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")}
    return kept, (home.prefect.resolve(),)


def uncovered_rows(conn: Connection, cluster_id: str, rules: Sequence[Rule]) -> dict[str, int]:
    """Rows of this cluster in tables with a cluster_id that no rule names (nor kept by design)."""
    covered = {t for r in rules for t in r.tables} | KEPT_TABLES
    return {
        t: count_rows(conn, t, cluster_id)
        for t, cols in sorted(database_tables(conn).items())
        if t not in covered and "cluster_id" in cols and IDENTIFIER.match(t)
    }


def unexpected_files(engine: Engine, home: Home) -> tuple[str, ...]:
    """Every file under HOME except the SQLite database and Prefect's folder (after the final deadline)."""
    kept, kept_trees = allowed_files(engine, home)
    return tuple(
        shown(home, p)
        for p in walk_files(home.root)
        if p.resolve() not in kept and not any(t in p.resolve().parents for t in kept_trees)
    )


def stale_files(home: Home, inventory: Inventory, after: Schedule) -> list[str]:
    """Files registered as deleted that still exist (and are not due again)."""
    listed = {p for u in after.units for p in u.files}
    return [
        f.shown
        for f in inventory.files
        if f.deleted and f.shown not in listed and resolve(home, f.path).exists()
    ]


def _categories(
    rules: Sequence[Rule], settings: Settings, schedule: Schedule, after: Schedule
) -> tuple[str, ...]:
    # Categories whose rule has completed, then those something was (or is still) due in.
    done = {u.category for u in schedule.units} | {e.category for e in after.due}
    completed = [
        r.category
        for r in rules
        if (d := rule_deadline(r, settings)) is not None and d <= schedule.as_of
    ]
    return tuple(dict.fromkeys(completed + sorted(done)))


def _remaining(
    items: Sequence[Mapping[str, Any]], rows: int, files: int, leftovers: Mapping[str, int], events: int
) -> dict[str, int]:
    return {
        "rows": sum(i["rows"] for i in items) + rows,
        "files": sum(i["files"] for i in items) + files,
        "keys": sum(i["keys"] for i in items),
        "flow_runs": sum(i["flow_runs"] for i in items) + leftovers.get("flow_runs", 0),
        "artifacts": leftovers.get("artifacts", 0),
        "logs": leftovers.get("logs", 0),
        "events": events,
    }


def verify_retention(
    engine: Engine,
    home: Home,
    settings: Settings,
    rules: Sequence[Rule],
    schedule: Schedule,
    runs: Sequence[FlowRunRef],
    deleted_runs: Sequence[str],
    history: RunHistory | None,
    deleted_artifacts: Sequence[str] = (),
    keep_runs: Sequence[str] = (),
) -> Verification:
    """Search the database, every file under HOME and Prefect for what the due rules cover.

    Prefect's events: those of the deleted runs and artifacts and, at the final deadline, every
    event of this cluster except those of ``keep_runs`` (the sweep's own run).
    """
    cluster = settings.study.cluster
    with engine.connect() as conn:
        inventory = take_inventory(conn, home, cluster, rules)
        uncovered = uncovered_rows(conn, cluster, rules)
    after = plan_schedule(rules, settings, inventory, home, runs, schedule.as_of)
    items = tuple(dict(u.item(), category=u.category, rule=u.rule) for u in after.units)
    stale = stale_files(home, inventory, after)
    final_due = is_final_due(settings, schedule.as_of)
    unexpected = unexpected_files(engine, home) if final_due else ()
    leftovers = history.leftovers(deleted_runs) if history is not None and deleted_runs else {}
    events = None
    if history is not None and (deleted_runs or deleted_artifacts or final_due):
        events = history.leftover_events(deleted_runs, deleted_artifacts, keep_runs, final_due)
    rows_left = sum(uncovered.values()) if final_due else 0
    return Verification(
        schedule.as_of,
        _categories(rules, settings, schedule, after),
        _remaining(items, rows_left, len(stale) + len(unexpected), leftovers, events.remaining if events else 0),
        items,
        {t: n for t, n in uncovered.items() if n},
        unexpected + tuple(stale),
        events,
    )


def record_verification(
    engine: Engine, cluster_id: str, sweep: Sweep, result: Verification
) -> None:
    """Write the verification outcome to the audit log (counts only)."""
    details: dict[str, AuditValue] = {
        "as_of": result.as_of.isoformat(),
        "ok": result.ok,
        "sweep": sweep.sweep_id,
        "categories": ",".join(result.categories),
        **result.remaining,
        "unexpected_files": len(result.unexpected_files),
        "uncovered_rows": sum(result.uncovered_tables.values()),
        "outcome": result.outcome,
        "events_server": result.prefect_events.server if result.prefect_events else None,
        "events_trimmed_by": _trimmed_by(result),
    }
    with engine.begin() as conn:
        append_audit(conn, cluster_id, VERIFICATION_EVENT, details, sweep.flow_run_id)


def _trimmed_by(result: Verification) -> str | None:
    trimmed = result.prefect_events.trimmed_by if result.prefect_events else None
    return trimmed.isoformat() if trimmed else None


def events_line(events: Mapping[str, Any]) -> str:
    """One line on the Prefect events an external server still holds (from EventsLeft.view)."""
    assumed = " (assumed: the server did not say)" if events.get("retention_assumed") else ""
    return (f"Prefect still holds {events['remaining']} event(s) of this cluster until "
            f"{events['trimmed_by']}: the {events['server']} Prefect server's API cannot delete events; "
            f"it trims them {events['retention_days']:g} day(s) after they occurred{assumed} "
            "(server setting PREFECT_SERVER_EVENTS_RETENTION_PERIOD)")
