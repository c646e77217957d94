"""The retention schedule: what exists, grouped into deletion items due at as_of and next."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.core.home import Home
from tasks.core.secrets import AUDIT_KEY, PSEUDONYM_KEY
from tasks.core.settings import Settings
from tasks.retention.dates import day_of, final_deadline, rule_deadline
from tasks.retention.files import resolve, shown, tree
from tasks.retention.history import FlowRunRef
from tasks.retention.inventory import Delivery, Inventory, StoredFile
from tasks.retention.rules import ALL, RULES_FILE, Rule, offset_value

#: Bases with one deadline for the whole rule (unscheduled while their date is not set).
FIXED_BASES = ("fieldwork_end", "publication")


@dataclass(frozen=True)
class Unit:
    """One deletion item, done in its own transaction."""

    rule: str
    category: str
    due_date: date
    kind: str  # store | rows | file | folder | key | flow_runs | delivery
    target: str
    tables: tuple[tuple[str, int], ...] = ()
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    registered: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    flow_runs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    # Columns set to NULL: (table, columns, rows that have any of them).
    nulls: tuple[tuple[str, tuple[str, ...], int], ...] = ()

    def item(self) -> dict[str, Any]:
        """The JSON view: what and how much, no ids (rows = rows deleted or cleared)."""
        return {
            "kind": self.kind,
            "target": self.target,
            "rows": sum(n for _, n in self.tables) + sum(n for _, _, n in self.nulls),
            "tables": dict(self.tables),
            "nulled": {t: n for t, _, n in self.nulls},
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
        raw["nulls"] = tuple((t, tuple(c), n) for t, c, n in raw.get("nulls", ()))
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


@dataclass
class _Claims:
    """What earlier rules already took: each file, key and run belongs to one rule only."""

    files: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)

    def take(self, taken: set[str], items: Iterable[str]) -> tuple[str, ...]:
        """The items not taken yet, now taken (in order, once each)."""
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
    # Rules with items that have no due date yet (not approved, no publication date).
    undated: set[str] = field(default_factory=set)

    def covers(self, rule: Rule, category: str) -> bool:
        """Whether a rule covers a file category (by name, or by * for categories no rule names)."""
        named = {c for r in self.rules for c in r.file_categories if c != ALL}
        return category in rule.file_categories or (
            ALL in rule.file_categories and category not in named
        )

    def closes(self, rule: Rule, category: str) -> bool:
        """Whether rule is the last to cover a category (it removes the registered folder)."""
        return not any(self.covers(r, category) for r in self.rules[self.rules.index(rule) + 1 :])

    def deadline(self, rule: Rule) -> date | None:
        """The rule's one deadline (None: not scheduled); per-item bases: the final deadline."""
        if rule.basis == "last_approval":
            return rule_deadline(rule, self.settings, self.inventory.approvals.register_approved())
        return rule_deadline(rule, self.settings)

    def units(self, rule: Rule, deadline: date | None, runs: Sequence[FlowRunRef], as_of: date) -> list[Unit]:
        """Every unit of one rule, due or not."""
        if rule.prefect:
            return self.history_units(rule, runs, as_of)
        if rule.basis == "ingest":
            return self.ingest_units(rule)
        if rule.basis == "approval":
            return self.approval_units(rule)
        if deadline is None:  # last_approval, not all approved and no publication date
            self.undated.update([rule.name] if self.has_items(rule) else [])
            return []
        return self.fixed_units(rule, deadline)

    def has_items(self, rule: Rule) -> bool:
        """Whether anything exists that the rule would delete or clear (without claiming it)."""
        nulls = rule.null_columns and self.inventory.nulls.get(rule.null_columns.table)
        files = any(not f.deleted and self.covers(rule, f.category) for f in self.inventory.files)
        keys = any(k in rule.keys for k in self.inventory.keys if k not in self.claims.keys)
        return bool(nulls or files or keys or self.table_counts(rule))

    def registered_unit(self, rule: Rule, due: date, stored: StoredFile) -> Unit | None:
        """The unit of one registered file or folder, or None when an earlier rule took it all."""
        path = resolve(self.home, stored.path)
        if path.is_dir() and not path.is_symlink():
            return self.folder_unit(rule, due, stored, path)
        files = self.claims.take(self.claims.files, [stored.shown])
        if not files:
            return None
        return Unit(
            rule.name, rule.category, due, "file", stored.shown, files=files, registered=(stored.path,)
        )

    def folder_unit(self, rule: Rule, due: date, stored: StoredFile, path: Path) -> Unit | None:
        """A registered folder (an analysis output): only the rule's entries, never anything else."""
        closes = self.closes(rule, stored.category)
        tops = [path / entry for entry in rule.entries] if rule.entries else [path]
        found = [shown(self.home, p) for top in tops for p in tree(top)]
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
        """Units of the registered files a rule covers and of the loose files in its folders."""
        units: list[Unit] = []
        for stored in self.inventory.files:
            due = due_of(stored)
            if not stored.deleted and self.covers(rule, stored.category) and due is not None:
                unit = self.registered_unit(rule, due, stored)
                units += [unit] if unit else []
        loose_due = due_of(None)
        return units + (self.loose_units(rule, loose_due) if loose_due is not None else [])

    def loose_units(self, rule: Rule, due: date) -> list[Unit]:
        """Unregistered files in the rule's folders, one unit each."""
        loose = [p for folder in rule.folders for p in self.inventory.loose.get(folder, ())]
        return [
            Unit(rule.name, rule.category, due, "file", path, files=(path,))
            for path in self.claims.take(self.claims.files, loose)
        ]

    def key_names(self, rule: Rule, wanted: Sequence[str]) -> tuple[str, ...]:
        """Key files present and wanted (or all for *), not taken yet, pseudonymisation key last.

        Never the audit key: it outlives the final sweep, so the record of deletion can be verified.
        """
        present = [k for k in self.inventory.keys if k != AUDIT_KEY and (k in wanted or ALL in wanted)]
        return self.claims.take(self.claims.keys, _ordered_keys(present))

    def table_counts(self, rule: Rule) -> tuple[tuple[str, int], ...]:
        """The rule's tables that hold rows of this cluster, with their counts."""
        return tuple(
            (t, self.inventory.tables[t]) for t in rule.tables if self.inventory.tables.get(t)
        )

    def null_counts(self, rule: Rule) -> tuple[tuple[str, tuple[str, ...], int], ...]:
        """The rule's columns to clear, when some row of this cluster still has them."""
        spec = rule.null_columns
        count = self.inventory.nulls.get(spec.table, 0) if spec else 0
        return ((spec.table, spec.columns, count),) if spec and count else ()

    def fixed_units(self, rule: Rule, deadline: date) -> list[Unit]:
        """Units of a rule with one deadline (fieldwork end, publication, last approval)."""
        tables = self.table_counts(rule)
        nulls = self.null_counts(rule)
        files = self.file_units(rule, lambda _stored: deadline)
        keys = self.key_names(rule, rule.keys)
        if rule.is_store:
            if not (tables or nulls or files or keys):
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
                    nulls=nulls,
                )
            ]
        rows_unit = [Unit(rule.name, rule.category, deadline, "rows", rule.category, tables=tables, nulls=nulls)]
        return (
            (rows_unit if tables or nulls else [])
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

    def approval_units(self, rule: Rule) -> list[Unit]:
        """One unit per delivery: its encrypted file and its sessions' files in the rule's folders
        (``<session>.<ext>``, e.g. review lists), due the offset after the last of its sessions was
        approved (capped by, and until then at, the final deadline); strays at the final deadline.
        """
        approvals, final = self.inventory.approvals, final_deadline(self.settings)
        live = [f for f in self.inventory.files if not f.deleted and self.covers(rule, f.category)]
        of_session = approvals.delivery_of_session()
        listed: dict[str, list[str]] = {}
        strays: list[str] = []
        for path in (p for folder in rule.folders for p in self.inventory.loose.get(folder, ())):
            delivery = of_session.get(PurePosixPath(path).stem)
            if delivery is None:
                strays.append(path)
            else:
                listed.setdefault(delivery.shown, []).append(path)
        covered = {f.shown for f in live}
        units = [
            unit
            for d in approvals.deliveries
            if d.sessions or d.shown in covered
            if (unit := self.delivery_unit(rule, d, live, listed.get(d.shown, [])))
        ]
        known = {d.shown for d in approvals.deliveries}
        strays += [f.shown for f in live if f.shown not in known]
        if final is None:
            self.undated.update([rule.name] if strays else [])
            return units
        registered = {f.shown: f.path for f in live}
        return units + [
            Unit(rule.name, rule.category, final, "file", p, files=(p,), registered=tuple(
                [registered[p]] if p in registered else []))
            for p in self.claims.take(self.claims.files, strays)
        ]

    def delivery_unit(
        self, rule: Rule, delivery: Delivery, live: Sequence[StoredFile], listed: Sequence[str]
    ) -> Unit | None:
        """A delivery's unit (its file if it exists, its sessions' listed files), or None when nothing is left."""
        due = rule_deadline(rule, self.settings, self.inventory.approvals.delivery_approved(delivery))
        on_disk = resolve(self.home, delivery.shown)
        registered = tuple(f.path for f in live if f.shown == delivery.shown)
        own = [delivery.shown] if registered or on_disk.exists() or on_disk.is_symlink() else []
        if due is None:
            self.undated.update([rule.name] if own or listed else [])
            return None
        files = self.claims.take(self.claims.files, [*own, *listed])
        if not files and not registered:
            return None
        return Unit(rule.name, rule.category, due, "delivery", delivery.shown, files=files, registered=registered)

    def history_units(self, rule: Rule, runs: Sequence[FlowRunRef], as_of: date) -> list[Unit]:
        """Prefect flow runs: rolling (older than the offset) or all at the final deadline."""
        pending = [r for r in runs if r.id not in self.claims.runs]
        if rule.basis == "rolling":
            return self.rolling_history_units(rule, pending, as_of)
        return self.final_history_units(rule, pending, as_of)

    def final_history_units(self, rule: Rule, pending: Sequence[FlowRunRef], as_of: date) -> list[Unit]:
        """Every pending run, at the rule's deadline (claimed once that has come)."""
        deadline = rule_deadline(rule, self.settings)
        if deadline is None or not pending:
            return []
        ids = tuple(r.id for r in pending)
        if deadline <= as_of:
            self.claims.runs.update(ids)
        return [Unit(rule.name, rule.category, deadline, "flow_runs", "flow_runs", flow_runs=ids)]

    def runs_by_due_day(self, rule: Rule, pending: Sequence[FlowRunRef], as_of: date) -> dict[date, list[str]]:
        """Pending run ids by the day they fall due (the offset after the day each started)."""
        days = offset_value(rule, self.settings)
        by_day: dict[date, list[str]] = {}
        for run in pending:
            by_day.setdefault((day_of(run.start_time) or as_of) + timedelta(days=days), []).append(run.id)
        return by_day

    def rolling_history_units(self, rule: Rule, pending: Sequence[FlowRunRef], as_of: date) -> list[Unit]:
        """Runs due by as_of in one unit, and the nearest later day's runs (the history keeps rolling)."""
        by_day = self.runs_by_due_day(rule, pending, as_of)
        due = sorted(d for d in by_day if d <= as_of)
        later = sorted(d for d in by_day if d > as_of)
        units = []
        if due:
            ids = self.claims.take(self.claims.runs, (i for d in due for i in by_day[d]))
            units.append(Unit(rule.name, rule.category, due[-1], "flow_runs", "flow_runs", flow_runs=ids))
        if later:  # only the nearest: the history keeps rolling
            units.append(
                Unit(rule.name, rule.category, later[0], "flow_runs", "flow_runs", flow_runs=tuple(by_day[later[0]]))
            )
        return units


def _unscheduled(rule: Rule) -> dict[str, str]:
    reasons = {
        "fieldwork_end": "survey.fieldwork_end and retention.publication_date are not set",
        "approval": "some transcripts are not approved and retention.publication_date is not set",
        "last_approval": "not every session's transcript is approved and retention.publication_date is not set",
    }
    reason = reasons.get(rule.basis, "retention.publication_date is not set")
    return {"category": rule.category, "rule": rule.name, "reason": reason}


def _entries(rule: Rule, units: Sequence[Unit], deadline: date | None) -> list[Entry]:
    # A rule with one deadline shows it even with nothing to delete; others only their items' days.
    fixed = {deadline} if deadline and rule.basis in FIXED_BASES else set()
    return [
        Entry(rule.name, rule.category, day, tuple(u for u in units if u.due_date == day))
        for day in sorted({u.due_date for u in units} | fixed)
    ]


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
        deadline = planner.deadline(rule)
        if deadline is None and rule.basis in FIXED_BASES:
            unscheduled.append(_unscheduled(rule))
            continue
        entries += _entries(rule, planner.units(rule, deadline, runs, as_of), deadline)
        if rule.name in planner.undated:
            unscheduled.append(_unscheduled(rule))
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
