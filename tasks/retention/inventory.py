"""What exists now that some retention rule will delete: rows, registered and loose files, keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection

from tasks.core.db import rows
from tasks.core.home import Home
from tasks.retention.dates import day_of
from tasks.retention.files import key_files, shown, walk_files
from tasks.retention.rules import Rule
from tasks.retention.store import count_rows, count_set, database_tables

#: Tables the approval bases read (qualitative strand, sql/migrations/0007_qualitative.sql).
QUALITATIVE_TABLES = frozenset({"qual_deliveries", "qual_sessions", "qual_participants", "qual_withdrawals"})


@dataclass(frozen=True)
class StoredFile:
    """A file registered in stored_files."""

    path: str
    shown: str
    category: str
    registered: date
    deleted: bool


@dataclass(frozen=True)
class Delivery:
    """A qualitative delivery (qual_deliveries) and the sessions whose transcript it holds."""

    sha256: str
    kind: str  # register | transcripts
    shown: str  # the encrypted file, as listed
    sessions: tuple[str, ...]


@dataclass(frozen=True)
class Approvals:
    """When qualitative transcripts were approved (pseudonymous codes and days only)."""

    deliveries: tuple[Delivery, ...] = ()
    approved: Mapping[str, date | None] = field(default_factory=dict)  # session -> day, None: not yet
    register_sessions: tuple[str, ...] = ()  # register sessions with a participant not withdrawn

    def delivery_approved(self, delivery: Delivery) -> date | None:
        """The day the last of a delivery's sessions was approved; None while any is not.

        A delivery no session refers to any more (its sessions re-imported from a later one) holds
        nothing redaction can need once every register session is approved: the last approval then.
        """
        if not delivery.sessions:
            return self.register_approved()
        days = [self.approved.get(s) for s in delivery.sessions]
        if any(d is None for d in days):
            return None
        return max(d for d in days if d is not None)

    def register_approved(self) -> date | None:
        """The last session approval, once every register session has a stored, approved transcript."""
        if not self.register_sessions or any(self.approved.get(s) is None for s in self.register_sessions):
            return None
        return max(d for d in self.approved.values() if d is not None)

    def delivery_of_session(self) -> dict[str, Delivery]:
        """The delivery each stored session's transcript came from."""
        return {s: d for d in self.deliveries for s in d.sessions}


@dataclass(frozen=True)
class Inventory:
    """What exists now that some rule will delete."""

    tables: dict[str, int]
    files: tuple[StoredFile, ...]
    loose: dict[str, tuple[str, ...]]
    keys: tuple[str, ...]
    first_ingest: date | None
    missing_tables: tuple[str, ...] = ()
    nulls: dict[str, int] = field(default_factory=dict)  # table -> rows a null_columns rule would clear
    approvals: Approvals = field(default_factory=Approvals)


def stored_files(conn: Connection, home: Home, cluster_id: str) -> tuple[StoredFile, ...]:
    """Every file registered for this cluster, deleted or not."""
    return tuple(
        StoredFile(
            row["path"],
            shown(home, row["path"]),
            row["category"],
            day_of(row["registered_at"]) or date.min,
            row["deleted_at"] is not None,
        )
        for row in rows(conn, "retention_stored_files", {"cluster_id": cluster_id})
    )


def loose_files(
    home: Home, rules: Sequence[Rule], stored: Sequence[StoredFile]
) -> dict[str, tuple[str, ...]]:
    """Files in the rules' folders that no live registration covers, by folder."""
    live = {f.shown for f in stored if not f.deleted}
    folders = sorted({f for r in rules for f in r.folders})
    listed = {folder: [shown(home, q) for q in walk_files(home.root / folder)] for folder in folders}
    return {folder: tuple(p for p in paths if p not in live) for folder, paths in listed.items()}


def qualitative_approvals(conn: Connection, home: Home, cluster_id: str) -> Approvals:
    """Deliveries, the sessions each holds, approval days and the sessions the register expects."""
    sessions = rows(conn, "retention_qual_sessions", {"cluster_id": cluster_id})
    held: dict[str, list[str]] = {}
    for row in sessions:
        held.setdefault(row["delivery_sha256"], []).append(row["session_id"])
    deliveries = tuple(
        Delivery(row["sha256"], row["kind"], shown(home, row["stored_path"]), tuple(held.get(row["sha256"], ())))
        for row in rows(conn, "retention_qual_deliveries", {"cluster_id": cluster_id})
    )
    register = rows(conn, "retention_qual_register_sessions", {"cluster_id": cluster_id})
    return Approvals(
        deliveries,
        {row["session_id"]: day_of(row["approved_at"]) for row in sessions},
        tuple(row["session_id"] for row in register),
    )


def take_inventory(
    conn: Connection, home: Home, cluster_id: str, rules: Sequence[Rule]
) -> Inventory:
    """Count rows, registered and loose files and key files the rules cover."""
    present = database_tables(conn)
    named = [t for r in rules for t in r.tables]
    tables = {t: count_rows(conn, t, cluster_id) for t in named if t in present}
    stored = stored_files(conn, home, cluster_id)
    first = rows(conn, "retention_first_ingest", {"cluster_id": cluster_id})[0]["first"]
    nulls = {
        r.null_columns.table: count_set(conn, r.null_columns.table, r.null_columns.columns, cluster_id)
        for r in rules
        if r.null_columns and r.null_columns.table in present
    }
    approvals = qualitative_approvals(conn, home, cluster_id) if QUALITATIVE_TABLES <= set(present) else Approvals()
    return Inventory(
        tables,
        stored,
        loose_files(home, rules, stored),
        key_files(home),
        day_of(first),
        tuple(t for t in named if t not in present),
        nulls,
        approvals,
    )
