"""Retention schedule: rules, due dates, deletion per item, verification (no personal data).

The rules are configuration (``deployments/retention-rules.toml``); the dates come from
settings. A sweep deletes *units* ("items"), each in its own transaction: a store (its key,
rows and files), a group of tables, one file, one key, or a batch of Prefect flow runs. A unit
that touches files, keys or Prefect is first recorded as ``started`` in ``retention_deletions``
with its plan, then removed, then closed as ``done`` in the transaction that deletes its rows
and writes its audit event; the next sweep finishes any started unit before planning anew, so a
sweep killed at any point is finished by a re-run and nothing is deleted twice or unrecorded.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import sqlite3
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import TextClause

from tasks.core.audit import append_audit
from tasks.core.db import query, rows
from tasks.core.errors import ConfigError
from tasks.core.home import Home
from tasks.core.runtime import Checkpoint
from tasks.core.secrets import PSEUDONYM_KEY, get_secret
from tasks.core.settings import RetentionSettings, Settings
from tasks.retention.history import FlowRunRef, RunHistory

RULES_FILE = "retention-rules.toml"
BASES = ("ingest", "fieldwork_end", "publication", "rolling")
ALL = "*"
DELETION_EVENT = "retention-deletion"
VERIFICATION_EVENT = "retention-verification"
# Tables that outlive every rule: they hold no personal data and record what was done.
KEPT_TABLES = frozenset(
    {"audit_log", "stored_files", "schema_version", "retention_sweeps", "retention_deletions"}
)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FOLDER = re.compile(r"^[a-z][a-z0-9_-]*$")


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One row of the retention table: what is deleted, when (basis + offset) and how."""

    name: str
    category: str
    what: str
    basis: str
    offset: str
    unit: str
    how: str
    tables: tuple[str, ...] = ()
    file_categories: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    keys_when_empty: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()
    prefect: bool = False

    @property
    def is_store(self) -> bool:
        """A store is crypto-shredded as one item: its key first, then its rows and files."""
        return bool(self.keys) and ALL not in self.keys


def _rule(raw: Mapping[str, Any], number: int) -> Rule:
    where = f"{RULES_FILE} rule {number}"
    known = {f.name: f for f in fields(Rule)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [n for n, f in known.items() if f.default is MISSING and n not in raw]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    rule = Rule(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    where = f"{RULES_FILE} rule {rule.name}"
    offset = RetentionSettings.model_fields.get(rule.offset)
    if rule.basis not in BASES:
        raise ConfigError(f"{where}: basis must be one of {', '.join(BASES)}")
    if offset is None or offset.annotation is not int:
        raise ConfigError(f"{where}: offset must name a whole-number setting in [retention]")
    if rule.unit not in ("days", "months"):
        raise ConfigError(f"{where}: unit must be days or months")
    if rule.basis == "publication" and (rule.offset, rule.unit) != (
        "months_after_publication",
        "months",
    ):
        raise ConfigError(f"{where}: publication rules use months_after_publication in months")
    if (rule.basis == "rolling" and not rule.prefect) or (
        rule.prefect and rule.basis not in ("rolling", "publication")
    ):
        raise ConfigError(f"{where}: only Prefect history rolls; it is rolling or publication")
    if any(not _IDENTIFIER.match(t) for t in rule.tables):
        raise ConfigError(f"{where}: table names must be lower-case identifiers")
    if any(not _FOLDER.match(f) for f in rule.folders):
        raise ConfigError(f"{where}: folders must be plain folder names under CLUSTER_EVAL_HOME")
    return rule


def load_rules(source: str | None = None) -> tuple[Rule, ...]:
    """Parse and check the retention rules table (default: the packaged TOML file)."""
    if source is None:
        source = (package_files("deployments") / RULES_FILE).read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{RULES_FILE} is not valid TOML: {exc}") from None
    rules = tuple(_rule(item, n) for n, item in enumerate(raw.get("rule", []), start=1))
    names = [r.name for r in rules]
    tables = [t for r in rules for t in r.tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"{RULES_FILE}: rule names must be unique")
    if len(set(tables)) != len(tables):
        raise ConfigError(f"{RULES_FILE}: a table may be named by one rule only")
    if not rules:
        raise ConfigError(f"{RULES_FILE}: no [[rule]] entries")
    return rules


# --- dates ------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (clamped to the month's last day)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _shift(day: date, rule: Rule, settings: Settings) -> date:
    amount = int(getattr(settings.retention, rule.offset))
    return add_months(day, amount) if rule.unit == "months" else day + timedelta(days=amount)


def final_deadline(settings: Settings) -> date | None:
    """Publication date + months_after_publication: by then everything is gone."""
    published = settings.retention.publication_date
    if published is None:
        return None
    return add_months(published, settings.retention.months_after_publication)


def rule_deadline(rule: Rule, settings: Settings, basis_day: date | None = None) -> date | None:
    """When a rule (or, for basis ingest, one item registered on basis_day) falls due."""
    final = final_deadline(settings)
    start = {"fieldwork_end": settings.survey.fieldwork_end, "ingest": basis_day}.get(rule.basis)
    own = None if start is None or rule.basis == "publication" else _shift(start, rule, settings)
    if own is None:
        return final
    return own if final is None else min(own, final)


def day_of(stamp: str | date | datetime | None) -> date | None:
    """The UTC calendar day of an ISO timestamp or date (as stored in TEXT columns)."""
    if stamp is None or stamp == "":
        return None
    if isinstance(stamp, datetime):
        moment = stamp
    elif isinstance(stamp, date):
        return stamp
    else:
        moment = datetime.fromisoformat(str(stamp))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def date_problems(
    settings: Settings, first_ingest: date | None, rules: Sequence[Rule]
) -> list[str]:
    """Settings under which a rule would delete data before it was ingested or used."""
    fieldwork, published = settings.survey.fieldwork_end, settings.retention.publication_date
    affected = " and ".join(r.name for r in rules if r.basis == "fieldwork_end")
    problems = []
    if first_ingest and fieldwork and fieldwork < first_ingest:
        problems.append(
            f"survey.fieldwork_end {fieldwork} is before the first extract was ingested "
            f"({first_ingest}): rule(s) {affected} would delete data before it arrived; "
            "correct survey.fieldwork_end"
        )
    if first_ingest and published and published < first_ingest:
        problems.append(
            f"retention.publication_date {published} is before the first extract was ingested "
            f"({first_ingest}); correct retention.publication_date"
        )
    if fieldwork and published and published < fieldwork:
        problems.append(
            f"retention.publication_date {published} is before survey.fieldwork_end "
            f"{fieldwork}: the final report cannot precede fieldwork; correct one of them"
        )
    return problems


# --- SQL with whitelisted identifiers ---------------------------------------------------------


@cache
def _table_query(name: str, table: str) -> TextClause:
    # Identifiers come only from the packaged rules table or the database catalogue, checked
    # against a strict pattern; values are always bind parameters.
    if not _IDENTIFIER.match(table):
        raise ConfigError(f"table name {table!r} is not allowed")
    return text(query(name).text.format(table=table))


def count_rows(conn: Connection, table: str, cluster_id: str) -> int:
    """Rows of this cluster in one table."""
    return int(
        conn.execute(
            _table_query("retention_count_rows", table), {"cluster_id": cluster_id}
        ).scalar_one()
    )


def delete_rows(conn: Connection, table: str, cluster_id: str) -> int:
    """Delete every row of this cluster in one table (inside the caller's transaction)."""
    try:
        result = conn.execute(
            _table_query("retention_delete_rows", table), {"cluster_id": cluster_id}
        )
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(
            f"deleting table {table} failed ({reason}); a table no retention rule names may "
            f"still refer to it: add it to {RULES_FILE}"
        ) from None
    return result.rowcount or 0


# --- files and keys ---------------------------------------------------------------------------


def resolve(home: Home, path: str) -> Path:
    """A registered or listed path: absolute as given, else relative to the state folder."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else home.root / candidate


def shown(home: Home, path: str | Path) -> str:
    """A path as listed: relative to the state folder when inside it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(home.root.resolve()).as_posix()
        except ValueError:
            return str(candidate)
    return candidate.as_posix()


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def delete_file(path: Path, stop: Path | None = None) -> bool:
    """Delete one whole file (its content is encrypted at rest); prune empty folders below stop."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_folder(path.parent)
    if stop is not None:
        _remove_empty_parents(path.parent, stop)
    return True


def prune_folder(folder: Path, stop: Path | None = None) -> None:
    """Remove a folder if nothing but empty folders is left in it, and empty parents below stop."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for top, dirs, _names in os.walk(folder, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(top) / name).rmdir()
    try:
        folder.rmdir()
    except OSError:
        return
    if stop is not None:
        _remove_empty_parents(folder.parent, stop)


def _stop(home: Home, path: str) -> Path | None:
    # Emptied folders are removed up to the state folder's first level (raw, outputs, ...).
    relative = Path(path)
    return None if relative.is_absolute() else home.root / relative.parts[0]


def shred_key(home: Home, name: str) -> bool:
    """Crypto-shred: overwrite the key file ``HOME/keys/<name>`` with random bytes, then delete it."""
    path = home.keys / name
    if not path.is_file() or path.is_symlink():
        return delete_file(path) if path.is_symlink() else False
    size = max(path.stat().st_size, 64)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    return delete_file(path)


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        found.extend(Path(top) / n for n in names)
        found.extend(Path(top) / d for d in dirs if (Path(top) / d).is_symlink())
    return sorted(found)


# --- inventory and plan -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A file registered in stored_files."""

    path: str
    shown: str
    category: str
    registered: date
    deleted: bool


@dataclass(frozen=True)
class Inventory:
    """What exists now that some rule will delete."""

    tables: dict[str, int]
    files: tuple[StoredFile, ...]
    loose: dict[str, tuple[str, ...]]
    keys: tuple[str, ...]
    first_ingest: date | None
    missing_tables: tuple[str, ...] = ()


def database_tables(conn: Connection) -> dict[str, tuple[str, ...]]:
    """Every table of the analysis database with its column names."""
    inspector = inspect(conn)
    return {
        name: tuple(c["name"] for c in inspector.get_columns(name))
        for name in inspector.get_table_names()
    }


def take_inventory(
    conn: Connection, home: Home, cluster_id: str, rules: Sequence[Rule]
) -> Inventory:
    """Count rows, registered and loose files and key files the rules cover."""
    present = database_tables(conn)
    named = [t for r in rules for t in r.tables]
    tables = {t: count_rows(conn, t, cluster_id) for t in named if t in present}
    stored = tuple(
        StoredFile(
            row["path"],
            shown(home, row["path"]),
            row["category"],
            day_of(row["registered_at"]) or date.min,
            row["deleted_at"] is not None,
        )
        for row in rows(conn, "retention_stored_files", {"cluster_id": cluster_id})
    )
    live = {f.shown for f in stored if not f.deleted}
    loose = {
        folder: tuple(
            p for p in (shown(home, q) for q in _walk(home.root / folder)) if p not in live
        )
        for folder in sorted({f for r in rules for f in r.folders})
    }
    keys = tuple(sorted(p.name for p in home.keys.iterdir())) if home.keys.is_dir() else ()
    first = rows(conn, "retention_first_ingest", {"cluster_id": cluster_id})[0]["first"]
    return Inventory(
        tables, stored, loose, keys, day_of(first), tuple(t for t in named if t not in present)
    )


@dataclass(frozen=True)
class Unit:
    """One deletion item, done in its own transaction."""

    rule: str
    category: str
    due_date: date
    kind: str  # store | rows | file | folder | key | flow_runs
    target: str
    tables: tuple[tuple[str, int], ...] = ()
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    registered: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    flow_runs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()

    def item(self) -> dict[str, Any]:
        """The JSON view: what and how much, no ids."""
        return {
            "kind": self.kind,
            "target": self.target,
            "rows": sum(n for _, n in self.tables),
            "tables": dict(self.tables),
            "files": len(self.files),
            "keys": len(self.keys),
            "flow_runs": len(self.flow_runs),
            "artifacts": len(self.artifacts),
        }

    def plan(self) -> str:
        """The unit as recorded in the deletion ledger (JSON)."""
        return json.dumps(asdict(self), default=str, sort_keys=True)

    @classmethod
    def from_plan(cls, plan: str) -> Unit:
        """Rebuild a unit from its ledger record."""
        raw = json.loads(plan)
        raw["due_date"] = date.fromisoformat(raw["due_date"])
        raw["tables"] = tuple((t, n) for t, n in raw["tables"])
        for name in ("files", "folders", "registered", "keys", "flow_runs", "artifacts"):
            raw[name] = tuple(raw[name])
        return cls(**raw)


@dataclass(frozen=True)
class Entry:
    """A rule's items that fall due on one date."""

    rule: str
    category: str
    due_date: date
    units: tuple[Unit, ...]

    def view(self) -> dict[str, Any]:
        """The JSON view of a due or next entry."""
        return {
            "category": self.category,
            "rule": self.rule,
            "due_date": self.due_date.isoformat(),
            "items": [u.item() for u in self.units],
        }


@dataclass(frozen=True)
class Schedule:
    """What is due at as_of, what comes next, and what cannot be scheduled yet."""

    as_of: date
    due: tuple[Entry, ...]
    next: tuple[Entry, ...]
    unscheduled: tuple[dict[str, str], ...]
    warnings: tuple[str, ...]

    @property
    def units(self) -> tuple[Unit, ...]:
        """Every due unit, in rule order."""
        return tuple(u for e in self.due for u in e.units)


def _ordered_keys(names: Iterable[str]) -> list[str]:
    # The pseudonymisation key goes last: until then the study data can still be linked.
    return sorted(names, key=lambda n: (n == PSEUDONYM_KEY, n))


def _tree(top: Path) -> list[Path]:
    if top.is_dir() and not top.is_symlink():
        return _walk(top)
    return [top] if top.exists() or top.is_symlink() else []


@dataclass
class _Claims:
    """What earlier rules already took: each file, key and run belongs to one rule only."""

    files: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)

    def take(self, taken: set[str], items: Iterable[str]) -> tuple[str, ...]:
        fresh = tuple(dict.fromkeys(i for i in items if i not in taken))
        taken.update(fresh)
        return fresh


@dataclass(frozen=True)
class _Planner:
    """Builds each rule's units from the inventory, in rule order (an item goes to one rule)."""

    rules: Sequence[Rule]
    settings: Settings
    inventory: Inventory
    home: Home
    claims: _Claims = field(default_factory=_Claims)

    def covers(self, rule: Rule, category: str) -> bool:
        named = {c for r in self.rules for c in r.file_categories if c != ALL}
        return category in rule.file_categories or (
            ALL in rule.file_categories and category not in named
        )

    def closes(self, rule: Rule, category: str) -> bool:
        """Whether rule is the last to cover a category (it removes the registered folder)."""
        return not any(self.covers(r, category) for r in self.rules[self.rules.index(rule) + 1 :])

    def registered_unit(self, rule: Rule, due: date, stored: StoredFile) -> Unit | None:
        path = resolve(self.home, stored.path)
        closes = self.closes(rule, stored.category)
        if not (path.is_dir() and not path.is_symlink()):
            files = self.claims.take(self.claims.files, [stored.shown])
            if not files:
                return None
            return Unit(
                rule.name,
                rule.category,
                due,
                "file",
                stored.shown,
                files=files,
                registered=(stored.path,),
            )
        # A registered folder (an analysis output): only the rule's entries, never anything else.
        tops = [path / entry for entry in rule.entries] if rule.entries else [path]
        found = [shown(self.home, p) for top in tops for p in _tree(top)]
        files = self.claims.take(self.claims.files, found)
        folders = tuple(shown(self.home, t) for t in tops if t != path and t.is_dir())
        if not files and not closes:
            return None
        label = stored.shown + (f" [{' '.join(rule.entries)}]" if rule.entries else "")
        return Unit(
            rule.name,
            rule.category,
            due,
            "folder",
            label,
            files=files,
            folders=folders + ((stored.shown,) if closes else ()),
            registered=(stored.path,) if closes else (),
        )

    def file_units(
        self, rule: Rule, due_of: Callable[[StoredFile | None], date | None]
    ) -> list[Unit]:
        units = []
        for stored in self.inventory.files:
            due = due_of(stored)
            if not stored.deleted and self.covers(rule, stored.category) and due is not None:
                unit = self.registered_unit(rule, due, stored)
                units += [unit] if unit else []
        due = due_of(None)
        loose = [p for folder in rule.folders for p in self.inventory.loose.get(folder, ())]
        for path in self.claims.take(self.claims.files, loose) if due is not None else ():
            units.append(Unit(rule.name, rule.category, due, "file", path, files=(path,)))
        return units

    def key_names(self, rule: Rule, wanted: Sequence[str]) -> tuple[str, ...]:
        present = [k for k in self.inventory.keys if k in wanted or ALL in wanted]
        return self.claims.take(self.claims.keys, _ordered_keys(present))

    def table_counts(self, rule: Rule) -> tuple[tuple[str, int], ...]:
        return tuple(
            (t, self.inventory.tables[t]) for t in rule.tables if self.inventory.tables.get(t)
        )

    def fixed_units(self, rule: Rule, deadline: date) -> list[Unit]:
        """Units of a rule with one deadline (fieldwork end or publication)."""
        tables = self.table_counts(rule)
        files = self.file_units(rule, lambda _stored: deadline)
        keys = self.key_names(rule, rule.keys)
        if rule.is_store:
            if not (tables or files or keys):
                return []
            return [
                Unit(
                    rule.name,
                    rule.category,
                    deadline,
                    "store",
                    rule.category,
                    tables=tables,
                    files=tuple(p for u in files for p in u.files),
                    folders=tuple(p for u in files for p in u.folders),
                    registered=tuple(p for u in files for p in u.registered),
                    keys=keys,
                )
            ]
        rows_unit = [Unit(rule.name, rule.category, deadline, "rows", rule.category, tables=tables)]
        return (
            (rows_unit if tables else [])
            + files
            + [Unit(rule.name, rule.category, deadline, "key", k, keys=(k,)) for k in keys]
        )

    def ingest_units(self, rule: Rule) -> list[Unit]:
        """Units of a rule counted from each file's registration (raw extracts)."""
        final = final_deadline(self.settings)
        units = self.file_units(
            rule, lambda f: rule_deadline(rule, self.settings, f.registered) if f else final
        )
        ever = [f for f in self.inventory.files if self.covers(rule, f.category)]
        if not ever:  # nothing ingested yet: the transport key is still needed
            return units
        # Once the last raw file is gone its transport key protects nothing.
        last = max(rule_deadline(rule, self.settings, f.registered) or date.min for f in ever)
        units += [
            Unit(rule.name, rule.category, last, "key", k, keys=(k,))
            for k in self.key_names(rule, rule.keys_when_empty)
        ]
        return units

    def history_units(self, rule: Rule, runs: Sequence[FlowRunRef], as_of: date) -> list[Unit]:
        """Prefect flow runs: rolling (older than the offset) or all at the final deadline."""
        pending = [r for r in runs if r.id not in self.claims.runs]
        if rule.basis != "rolling":
            deadline = rule_deadline(rule, self.settings)
            if deadline is None or not pending:
                return []
            ids = tuple(r.id for r in pending)
            if deadline <= as_of:
                self.claims.runs.update(ids)
            return [
                Unit(rule.name, rule.category, deadline, "flow_runs", "flow_runs", flow_runs=ids)
            ]
        days = int(getattr(self.settings.retention, rule.offset))
        by_day: dict[date, list[str]] = {}
        for run in pending:
            by_day.setdefault((day_of(run.start_time) or as_of) + timedelta(days=days), []).append(
                run.id
            )
        due = sorted(d for d in by_day if d <= as_of)
        later = sorted(d for d in by_day if d > as_of)
        units = []
        if due:
            ids = self.claims.take(self.claims.runs, (i for d in due for i in by_day[d]))
            units.append(
                Unit(rule.name, rule.category, due[-1], "flow_runs", "flow_runs", flow_runs=ids)
            )
        if later:  # only the nearest: the history keeps rolling
            units.append(
                Unit(
                    rule.name,
                    rule.category,
                    later[0],
                    "flow_runs",
                    "flow_runs",
                    flow_runs=tuple(by_day[later[0]]),
                )
            )
        return units


def _unscheduled_reason(rule: Rule, settings: Settings) -> str:
    if rule.basis == "fieldwork_end":
        return "survey.fieldwork_end and retention.publication_date are not set"
    return "retention.publication_date is not set"


def plan_schedule(
    rules: Sequence[Rule],
    settings: Settings,
    inventory: Inventory,
    home: Home,
    runs: Sequence[FlowRunRef],
    as_of: date,
) -> Schedule:
    """Group what exists into items due at as_of and next, rule by rule, from rules and settings."""
    planner = _Planner(rules, settings, inventory, home)
    entries: list[Entry] = []
    unscheduled: list[dict[str, str]] = []
    for rule in rules:
        deadline = rule_deadline(rule, settings)
        if deadline is None and rule.basis in ("fieldwork_end", "publication"):
            unscheduled.append(
                {
                    "category": rule.category,
                    "rule": rule.name,
                    "reason": _unscheduled_reason(rule, settings),
                }
            )
            continue
        if rule.prefect:
            units = planner.history_units(rule, runs, as_of)
        elif rule.basis == "ingest":
            units = planner.ingest_units(rule)
        else:
            units = planner.fixed_units(rule, deadline or as_of)
        fixed = {deadline} if deadline and rule.basis in ("fieldwork_end", "publication") else set()
        for day in sorted({u.due_date for u in units} | fixed):
            entries.append(
                Entry(rule.name, rule.category, day, tuple(u for u in units if u.due_date == day))
            )
    due = tuple(e for e in entries if e.due_date <= as_of and e.units)
    upcoming = tuple(sorted((e for e in entries if e.due_date > as_of), key=lambda e: e.due_date))
    warnings = tuple(schedule_warnings(settings, inventory))
    return Schedule(as_of, due, upcoming, tuple(unscheduled), warnings)


def schedule_warnings(settings: Settings, inventory: Inventory) -> list[str]:
    """What a reader of the schedule should know (not errors)."""
    warnings = []
    if settings.retention.publication_date is None:
        warnings.append(
            "retention.publication_date is not set: the final deletion (everything, "
            f"{settings.retention.months_after_publication} months after publication) is not "
            "scheduled; set it in [retention] once the final report's date is known"
        )
    if settings.survey.fieldwork_end is None:
        warnings.append(
            "survey.fieldwork_end is not set: contact details and fieldwork packs "
            "are kept until the final deletion"
        )
    warnings += [
        f"table {t} named in {RULES_FILE} does not exist" for t in inventory.missing_tables
    ]
    return warnings


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
        rows_left = sum(inventory.tables.get(t, 0) for t in rule.tables)
        files_left = sum(
            1 for f in inventory.files if f.category in rule.file_categories and not f.deleted
        )
        files_left += sum(len(inventory.loose.get(folder, ())) for folder in rule.folders)
        if not rows_left and not files_left:
            continue
        for key in rule.keys:
            if key not in inventory.keys and not has_secret(key):
                problems.append(
                    f"key {key} is missing (expected {home.keys / key}) while {rows_left} row(s) and "
                    f"{files_left} file(s) of {rule.category} it protects remain, and no retention "
                    "sweep destroyed it; restore the key from its backup or check CLUSTER_EVAL_HOME"
                )
    return problems


def keys_held_elsewhere(
    rules: Sequence[Rule], inventory: Inventory, has_secret: Callable[[str], bool]
) -> list[str]:
    """Warnings for keys a rule destroys that come from the environment or a Secret block."""
    named = dict.fromkeys(k for r in rules for k in (*r.keys, *r.keys_when_empty) if k != ALL)
    return [
        f"key {key} comes from the environment or a Prefect Secret block, not HOME/keys: the "
        "schedule cannot destroy it there; remove it at its source when its rule falls due"
        for key in named
        if key not in inventory.keys and has_secret(key)
    ]


# --- sweep: checks, ledger, deletion ----------------------------------------------------------


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


def sweep_problems(
    conn: Connection,
    settings: Settings,
    home: Home,
    rules: Sequence[Rule],
    inventory: Inventory,
    as_of: date,
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
    problems += key_problems(
        rules, inventory, home, unfinished, lambda name: get_secret(name, home) is not None
    )
    return problems


def check_sweep(
    conn: Connection,
    settings: Settings,
    home: Home,
    rules: Sequence[Rule],
    inventory: Inventory,
    as_of: date,
) -> None:
    """Refuse, before anything is deleted, with the first problem found."""
    problems = sweep_problems(conn, settings, home, rules, inventory, as_of)
    if problems:
        raise ConfigError(f"retention: {problems[0]} (nothing was deleted)")


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


def _remove(home: Home, unit: Unit, history: RunHistory | None) -> int:
    # Keys first: once a store's key is gone its rows and files are unreadable everywhere.
    for key in unit.keys:
        shred_key(home, key)
    absent = 0
    for path in unit.files:
        absent += not delete_file(resolve(home, path), _stop(home, path))
    for folder in unit.folders:
        prune_folder(resolve(home, folder), _stop(home, folder))
    if unit.flow_runs or unit.artifacts:
        if history is None:
            raise ConfigError("the Prefect API is needed to delete flow run history")
        history.delete(unit.flow_runs, unit.artifacts)
    return absent


def _audit_details(
    unit: Unit, as_of: date, sweep_id: str, table_counts: dict[str, int]
) -> dict[str, Any]:
    return {
        "category": unit.category,
        "rule": unit.rule,
        "as_of": as_of.isoformat(),
        "due_date": unit.due_date.isoformat(),
        "kind": unit.kind,
        "item": unit.target,
        "rows": sum(table_counts.values()),
        "tables": ",".join(f"{t}={n}" for t, n in table_counts.items()),
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
        table_counts = {t: delete_rows(conn, t, cluster_id) for t, _ in unit.tables}
        stamp = datetime.now(UTC).isoformat()
        for path in unit.registered:
            conn.execute(
                query("retention_file_deleted"),
                {"cluster_id": cluster_id, "path": path, "deleted_at": stamp},
            )
        details = _audit_details(unit, sweep.as_of, sweep.sweep_id, table_counts)
        counts = {
            k: details[k] for k in ("kind", "rows", "files", "keys", "flow_runs", "artifacts")
        }
        counts |= {"target": unit.target, "tables": table_counts}
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
    mark = checkpoint or (lambda _label: None)
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
        (checkpoint or (lambda _label: None))(f"{unit.rule}:{unit.target}:resumed")
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


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What a completed rule should have removed and still exists (all zero when ok)."""

    as_of: date
    categories: tuple[str, ...]
    remaining: dict[str, int]
    items: tuple[dict[str, Any], ...]
    uncovered_tables: dict[str, int]
    unexpected_files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not any(self.remaining.values())

    def view(self) -> dict[str, Any]:
        """The JSON view."""
        return {
            "ok": self.ok,
            "as_of": self.as_of.isoformat(),
            "categories": list(self.categories),
            "remaining": self.remaining,
            "items": list(self.items),
            "uncovered_tables": self.uncovered_tables,
            "unexpected_files": list(self.unexpected_files),
        }


def allowed_files(engine: Engine, home: Home) -> tuple[set[Path], tuple[Path, ...]]:
    """Files that outlive the final deletion: the SQLite database and Prefect's own folder."""
    kept: set[Path] = set()
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database:
        base = Path(database).resolve()
        kept |= {base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")}
    return kept, (home.prefect.resolve(),)


def verify_retention(
    engine: Engine,
    home: Home,
    settings: Settings,
    rules: Sequence[Rule],
    schedule: Schedule,
    runs: Sequence[FlowRunRef],
    deleted_runs: Sequence[str],
    history: RunHistory | None,
) -> Verification:
    """Search the database, every file under HOME and Prefect for what the due rules cover."""
    cluster = settings.study.cluster
    with engine.connect() as conn:
        inventory = take_inventory(conn, home, cluster, rules)
        catalogue = database_tables(conn)
        covered = {t for r in rules for t in r.tables} | KEPT_TABLES
        uncovered = {
            t: count_rows(conn, t, cluster)
            for t, cols in sorted(catalogue.items())
            if t not in covered and "cluster_id" in cols and _IDENTIFIER.match(t)
        }
    after = plan_schedule(rules, settings, inventory, home, runs, schedule.as_of)
    items = tuple(dict(u.item(), category=u.category, rule=u.rule) for u in after.units)
    done_categories = {u.category for u in schedule.units} | {e.category for e in after.due}
    completed = [
        r for r in rules if (d := rule_deadline(r, settings)) is not None and d <= schedule.as_of
    ]
    categories = tuple(dict.fromkeys([r.category for r in completed] + sorted(done_categories)))
    listed = {p for u in after.units for p in u.files}
    stale = [
        f.shown
        for f in inventory.files
        if f.deleted and f.shown not in listed and resolve(home, f.path).exists()
    ]
    final = final_deadline(settings)
    unexpected: tuple[str, ...] = ()
    if final is not None and final <= schedule.as_of:
        kept, kept_trees = allowed_files(engine, home)
        unexpected = tuple(
            shown(home, p)
            for p in _walk(home.root)
            if p.resolve() not in kept and not any(t in p.resolve().parents for t in kept_trees)
        )
    leftovers = history.leftovers(deleted_runs) if history is not None and deleted_runs else {}
    final_due = final is not None and final <= schedule.as_of
    remaining = {
        "rows": sum(i["rows"] for i in items) + (sum(uncovered.values()) if final_due else 0),
        "files": sum(i["files"] for i in items) + len(stale) + len(unexpected),
        "keys": sum(i["keys"] for i in items),
        "flow_runs": sum(i["flow_runs"] for i in items) + leftovers.get("flow_runs", 0),
        "artifacts": leftovers.get("artifacts", 0),
        "logs": leftovers.get("logs", 0),
    }
    return Verification(
        schedule.as_of,
        categories,
        remaining,
        items,
        {t: n for t, n in uncovered.items() if n},
        unexpected + tuple(stale),
    )


def record_verification(
    engine: Engine, cluster_id: str, sweep: Sweep, result: Verification
) -> None:
    """Write the verification outcome to the audit log (counts only)."""
    details = {
        "as_of": result.as_of.isoformat(),
        "ok": result.ok,
        "sweep": sweep.sweep_id,
        "categories": ",".join(result.categories),
        **result.remaining,
        "unexpected_files": len(result.unexpected_files),
        "uncovered_rows": sum(result.uncovered_tables.values()),
    }
    with engine.begin() as conn:
        append_audit(conn, cluster_id, VERIFICATION_EVENT, details, sweep.flow_run_id)


def sweep_report(
    schedule: Schedule,
    dry_run: bool,
    deleted: Sequence[Deleted] = (),
    verification: Verification | None = None,
    compaction: dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The command's JSON result: due, next, deleted, verification."""
    return {
        "as_of": schedule.as_of.isoformat(),
        "dry_run": dry_run,
        "due": [e.view() for e in schedule.due],
        "next": [e.view() for e in schedule.next],
        "unscheduled": list(schedule.unscheduled),
        "deleted": [d.view() for d in deleted],
        "verification": verification.view() if verification else None,
        "compaction": compaction,
        "warnings": list(schedule.warnings) + list(warnings),
    }


def deletion_table(deleted: Sequence[Deleted]) -> list[dict[str, Any]]:
    """Rows of the artifact a sweep publishes: counts per deleted item, no ids."""
    return [
        {
            "category": d.unit.category,
            "rule": d.unit.rule,
            "item": d.unit.target,
            "rows": d.counts["rows"],
            "files": d.counts["files"],
            "keys": d.counts["keys"],
            "flow_runs": d.counts["flow_runs"],
            "artifacts": d.counts["artifacts"],
        }
        for d in deleted
    ]
