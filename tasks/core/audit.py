"""Append-only audit log, each entry carrying the SHA-256 of the one before (no personal data).

The chain is one sequence for the whole database (all clusters), so appends are serialised:
on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (``tasks.core.db``), so the
writer holds the database's write lock from its start; on PostgreSQL ``append_audit`` takes a
transaction-scoped advisory lock before it reads the head of the chain, held until the caller
commits or rolls back, so two concurrent stages queue instead of failing on the primary key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from tasks.core.db import query

GENESIS = "0" * 64
#: Key of the PostgreSQL advisory lock that serialises appends ("cl-audit" as a 64-bit integer).
AUDIT_LOCK_KEY = int.from_bytes(b"cl-audit", "big")
AuditValue = str | int | float | bool | None


def _digest(seq: int, cluster_id: str, at: str, event: str, details: str,
            flow_run_id: str | None, prev_hash: str) -> str:
    payload = json.dumps(
        [seq, cluster_id, at, event, details, flow_run_id, prev_hash],
        separators=(",", ":"), ensure_ascii=True,
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def append_audit(conn: Connection, cluster_id: str, event: str,
                 details: Mapping[str, AuditValue], flow_run_id: str | None = None,
                 at: datetime | None = None) -> str:
    """Append one event inside the caller's transaction; return its hash."""
    _lock_chain(conn)
    last = conn.execute(query("audit_last")).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
    when = (at or datetime.now(UTC)).isoformat()
    body = json.dumps(dict(details), sort_keys=True, separators=(",", ":"), default=str)
    digest = _digest(seq, cluster_id, when, event, body, flow_run_id, prev_hash)
    conn.execute(query("audit_insert"), {
        "seq": seq, "cluster_id": cluster_id, "at": when, "event": event, "details": body,
        "flow_run_id": flow_run_id, "prev_hash": prev_hash, "hash": digest,
    })
    return digest


def _lock_chain(conn: Connection) -> None:
    # PostgreSQL: wait for the transaction-scoped lock. Under read committed the head is read
    # after the lock is granted, so it includes the entry of the transaction that held it before.
    # SQLite: the transaction already holds the write lock (BEGIN IMMEDIATE).
    if conn.dialect.name == "postgresql":
        conn.execute(query("audit_lock"), {"key": AUDIT_LOCK_KEY})


@dataclass(frozen=True)
class AuditCheck:
    """Outcome of verifying the chain."""

    entries: int
    first_broken_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        """Whether every entry links and hashes as written."""
        return self.first_broken_seq is None

    def as_json(self) -> dict[str, Any]:
        """The ``audit verify --json`` object."""
        return {"ok": self.ok, "entries": self.entries,
                "first_broken_seq": self.first_broken_seq, "reason": self.reason}


def verify_audit(conn: Connection) -> AuditCheck:
    """Recompute every link; report the first entry whose hash or back-link does not hold."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in conn.execute(query("audit_all")):
        count += 1
        if row.seq != expected_seq:
            return AuditCheck(count, row.seq, f"entry {expected_seq} is missing")
        if row.prev_hash != prev_hash:
            return AuditCheck(count, row.seq, "does not link to the entry before it")
        digest = _digest(row.seq, row.cluster_id, row.at, row.event, row.details,
                         row.flow_run_id, row.prev_hash)
        if digest != row.hash:
            return AuditCheck(count, row.seq, "was altered after it was written")
        prev_hash, expected_seq = row.hash, expected_seq + 1
    return AuditCheck(count, None, None)


def check_audit_log(engine: Engine) -> AuditCheck:
    """Verify the whole chain on a connection of its own."""
    with engine.connect() as conn:
        return verify_audit(conn)
