"""What exists now that some retention rule will delete: rows, registered and loose files, keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection

from tasks.core.db import rows
from tasks.core.home import Home
from tasks.retention.dates import day_of
from tasks.retention.files import key_files, shown, walk_files
from tasks.retention.rules import Rule
from tasks.retention.store import count_rows, database_tables


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


def take_inventory(
    conn: Connection, home: Home, cluster_id: str, rules: Sequence[Rule]
) -> Inventory:
    """Count rows, registered and loose files and key files the rules cover."""
    present = database_tables(conn)
    named = [t for r in rules for t in r.tables]
    tables = {t: count_rows(conn, t, cluster_id) for t in named if t in present}
    stored = stored_files(conn, home, cluster_id)
    first = rows(conn, "retention_first_ingest", {"cluster_id": cluster_id})[0]["first"]
    return Inventory(
        tables,
        stored,
        loose_files(home, rules, stored),
        key_files(home),
        day_of(first),
        tuple(t for t in named if t not in present),
    )
