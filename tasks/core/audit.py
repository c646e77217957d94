"""Append-only audit log: a keyed hash chain, anchored outside the database (no personal data).

Each entry carries the HMAC-SHA256, under the audit key (secret ``audit_key``, found like every
other key), of its fields and of the hash of the entry before it. The chain is one sequence for
the whole database, shared by every cluster and home using it, so every home needs the same key:
the one-row table ``audit_chain`` records the key's id (an HMAC of a fixed label, never the key)
and the first keyed entry; entries before it, written by an earlier version, are plain SHA-256.

Appends are serialised: on SQLite every write transaction starts with ``BEGIN IMMEDIATE``
(``tasks.core.db``), so the writer holds the database's write lock from its start; on PostgreSQL
``append_audit`` takes a transaction-scoped advisory lock before it reads the head of the chain,
held until the caller commits or rolls back, so two concurrent stages queue instead of failing.

The head of the chain is anchored outside the database, moved forward only, at the end of every
flow run (``anchor_head``): the head file ``HOME/audit/head.json`` and, when the process talks to
a Prefect API, the Prefect Variable ``cluster-eval-audit-head-<key id prefix>``. A rewrite (an
entry changed, its later hashes recomputed without the key), a deletion (a gap, or renumbered
entries) and a truncation (entries cut from the end: the head is behind an anchor) are each found
and named by ``verify_audit``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Row, inspect

from tasks.core.db import query
from tasks.core.errors import ConfigError
from tasks.core.home import DIR_MODE, Home, write_private
from tasks.core.secrets import AUDIT_KEY

GENESIS = "0" * 64
#: Key of the PostgreSQL advisory lock that serialises appends ("cl-audit" as a 64-bit integer).
AUDIT_LOCK_KEY = int.from_bytes(b"cl-audit", "big")
#: The head anchor, relative to CLUSTER_EVAL_HOME.
HEAD_FILE = Path("audit") / "head.json"
KEY_ID_LABEL = b"cluster-eval audit key id"
VARIABLE_PREFIX = "cluster-eval-audit-head-"
AuditValue = str | int | float | bool | None


class KeySource(Protocol):
    """Where the audit key comes from (``tasks.core.secrets.Secrets``)."""

    def key_or_create(self, name: str) -> tuple[bytes, bool]: ...

    def key_if_any(self, name: str) -> bytes | None: ...


class AuditKeyNotBound(RuntimeError):
    """A programming error: the engine was not opened by ``open_runtime`` nor given a key."""


class AuditKeyMismatch(ConfigError):
    """This home's audit key is not the one the database's audit chain was started with."""

    def __init__(self) -> None:
        super().__init__(
            "the audit key differs from the one this database's audit chain uses; every home "
            "sharing the database needs the same audit_key (HOME/keys/audit_key, "
            "CLUSTER_EVAL_AUDIT_KEY or the Prefect Secret block cluster-eval-audit-key)")


_keys: WeakKeyDictionary[Engine, bytes | KeySource] = WeakKeyDictionary()


def bind_audit_key(engine: Engine, key: bytes | KeySource) -> None:
    """Give an engine its audit key (or where to find it; created on the first append)."""
    _keys[engine] = key


def _audit_key(engine: Engine, create: bool) -> bytes | None:
    source = _keys.get(engine)
    if source is None:
        raise AuditKeyNotBound("no audit key is bound to this engine: open it with open_runtime "
                               "or call tasks.core.audit.bind_audit_key")
    if isinstance(source, bytes):
        return source
    if create:
        key, _ = source.key_or_create(AUDIT_KEY)
        _keys[engine] = key
        return key
    return source.key_if_any(AUDIT_KEY)


def key_id(key: bytes) -> str:
    """The key's public id: HMAC-SHA256 of a fixed label under it (hex)."""
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()


def _seal(key: bytes, keyed_from: int) -> str:
    return hmac.new(key, f"cluster-eval audit chain keyed from {keyed_from}".encode("ascii"),
                    hashlib.sha256).hexdigest()


def _payload(seq: int, cluster_id: str, at: str, event: str, details: str,
             flow_run_id: str | None, prev_hash: str) -> bytes:
    return json.dumps([seq, cluster_id, at, event, details, flow_run_id, prev_hash],
                      separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _digest(seq: int, cluster_id: str, at: str, event: str, details: str,
            flow_run_id: str | None, prev_hash: str) -> str:
    """The plain SHA-256 of an entry (entries written before the chain was keyed)."""
    return hashlib.sha256(_payload(seq, cluster_id, at, event, details, flow_run_id, prev_hash)).hexdigest()


def _keyed_digest(key: bytes, seq: int, cluster_id: str, at: str, event: str, details: str,
                  flow_run_id: str | None, prev_hash: str) -> str:
    payload = _payload(seq, cluster_id, at, event, details, flow_run_id, prev_hash)
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def append_audit(conn: Connection, cluster_id: str, event: str,
                 details: Mapping[str, AuditValue], flow_run_id: str | None = None,
                 at: datetime | None = None) -> str:
    """Append one event inside the caller's transaction; return its hash."""
    key = _audit_key(conn.engine, create=True)
    assert key is not None  # noqa: S101 - create=True always returns a key
    _lock_chain(conn)
    chain = conn.execute(query("audit_chain_get")).first()
    last = conn.execute(query("audit_last")).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
    kid = key_id(key)
    if chain is None:
        conn.execute(query("audit_chain_insert"),
                     {"key_id": kid, "keyed_from": seq, "seal": _seal(key, seq)})
    elif not hmac.compare_digest(chain.key_id, kid):
        raise AuditKeyMismatch
    when = (at or datetime.now(UTC)).isoformat()
    body = json.dumps(dict(details), sort_keys=True, separators=(",", ":"), default=str)
    digest = _keyed_digest(key, seq, cluster_id, when, event, body, flow_run_id, prev_hash)
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


# --- anchors outside the database -----------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """An anchored head of the chain: the key's id, an entry's seq and hash, when anchored."""

    key_id: str
    seq: int
    hash: str
    at: str

    def as_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "seq": self.seq, "hash": self.hash, "at": self.at}

    @classmethod
    def from_json(cls, value: object) -> Anchor | None:
        """The anchor a JSON object holds, or None when it is not one."""
        if not isinstance(value, dict):
            return None
        kid, seq, digest, at = (value.get(k) for k in ("key_id", "seq", "hash", "at"))
        if not (isinstance(kid, str) and isinstance(seq, int) and isinstance(digest, str)
                and isinstance(at, str)) or isinstance(seq, bool):
            return None
        return cls(kid, seq, digest, at)


def variable_name(kid: str) -> str:
    """The Prefect Variable that anchors the chain of this key id."""
    return f"{VARIABLE_PREFIX}{kid[:16]}"


def read_head_file(home: Home) -> tuple[bool, Anchor | None]:
    """Whether the head file exists, and the anchor it holds (None when missing or not valid)."""
    path = home.root / HEAD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False, None
    try:
        return True, Anchor.from_json(json.loads(text))
    except ValueError:
        return True, None


def write_head_file(home: Home, anchor: Anchor) -> None:
    """Write the head file atomically, 0600 in a 0700 folder."""
    path = home.root / HEAD_FILE
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path.parent, DIR_MODE)
    write_private(path, json.dumps(anchor.as_json(), sort_keys=True).encode("ascii"))


def read_variable(kid: str) -> Anchor | None:
    """The Prefect Variable anchor, or None when there is none or no Prefect API answers."""
    from prefect.variables import Variable

    try:
        value = Variable.get(variable_name(kid), _sync=True)  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - no Prefect API: no anchor there
        return None
    return Anchor.from_json(value)


def write_variable(anchor: Anchor) -> None:
    """Move the Prefect Variable anchor; silently skipped when no Prefect API answers."""
    from prefect.variables import Variable

    try:
        Variable.set(variable_name(anchor.key_id), anchor.as_json(),  # type: ignore[call-arg]
                     overwrite=True, _sync=True)
    except Exception:  # noqa: BLE001,S110 - no Prefect server: the head file still anchors
        pass


def _holds(conn: Connection, kid: str, anchor: Anchor, head_seq: int) -> bool:
    if anchor.key_id != kid or anchor.seq > head_seq:
        return False
    found = conn.execute(query("audit_entry_hash"), {"seq": anchor.seq}).first()
    return found is not None and hmac.compare_digest(found.hash, anchor.hash)


def anchor_head(engine: Engine, home: Home, prefect: bool = False) -> str | None:
    """Move the anchors forward to the database's head; the reason when they were not moved.

    An anchor moves only when the chain still holds the entry it anchors, with the same hash
    (otherwise ``verify_audit`` reports it); it never moves backwards. A missing head file is
    written anew unless the Prefect Variable anchors an entry the chain no longer holds.
    """
    with engine.begin() as conn:
        if _missing_table(conn):
            return "the audit tables are missing"
        if conn.dialect.name == "postgresql" and not conn.execute(
                query("audit_try_lock"), {"key": AUDIT_LOCK_KEY}).scalar_one():
            return None  # a writer is appending: the next run's end anchors its entries
        chain = conn.execute(query("audit_chain_get")).first()
        last = conn.execute(query("audit_last")).first()
        if chain is None or last is None or last.seq < chain.keyed_from:
            return None  # nothing keyed to anchor yet
        exists, on_file = read_head_file(home)
        if exists and on_file is None:
            return "the head file is not a valid anchor"
        variable = read_variable(chain.key_id) if prefect else None
        if any(a is not None and not _holds(conn, chain.key_id, a, last.seq) for a in (on_file, variable)):
            return "an anchor names an entry the audit log no longer holds"
        head = Anchor(chain.key_id, last.seq, last.hash, datetime.now(UTC).isoformat())
        if on_file is None or head.seq > on_file.seq:
            write_head_file(home, head)
        if prefect and (variable is None or head.seq > variable.seq):
            write_variable(head)
    return None


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditCheck:
    """Outcome of verifying the chain and its anchors."""

    entries: int
    first_broken_seq: int | None
    reason: str | None
    unkeyed_entries: int = 0
    anchors: Mapping[str, int | None] = field(
        default_factory=lambda: {"file": None, "prefect_variable": None})

    @property
    def ok(self) -> bool:
        """Whether every entry links and hashes as written and every anchor is still held."""
        return self.reason is None

    def as_json(self) -> dict[str, Any]:
        """The ``audit verify --json`` object."""
        return {"ok": self.ok, "entries": self.entries,
                "first_broken_seq": self.first_broken_seq, "reason": self.reason,
                "unkeyed_entries": self.unkeyed_entries, "anchors": dict(self.anchors)}


def _missing_table(conn: Connection) -> str | None:
    tables = inspect(conn)
    if not tables.has_table("audit_log"):
        return "the audit log table is missing (dropped?)"
    if not tables.has_table("audit_chain"):
        return "the audit chain table is missing (dropped?)"
    return None


@dataclass
class _Walk:
    entries: int = 0
    broken: int | None = None
    reason: str | None = None
    head_seq: int = 0
    hashes: dict[int, str] = field(default_factory=dict)


def _walk(conn: Connection, key: bytes | None, keyed_from: int | None, watch: set[int]) -> _Walk:
    """Recompute every link and hash; stop at the first entry that does not hold."""
    walk, prev_hash = _Walk(), GENESIS
    for row in conn.execute(query("audit_all")):
        walk.entries += 1
        expected = walk.head_seq + 1
        if row.seq != expected:
            walk.broken, walk.reason = expected, f"entry {expected} is missing"
            return walk
        fields = (row.seq, row.cluster_id, row.at, row.event, row.details, row.flow_run_id, row.prev_hash)
        keyed = keyed_from is not None and row.seq >= keyed_from and key is not None
        digest = _keyed_digest(key, *fields) if keyed and key else _digest(*fields)
        if row.prev_hash != prev_hash or not hmac.compare_digest(digest, row.hash):
            walk.broken, walk.reason = row.seq, f"entry {row.seq} was altered after it was written"
            return walk
        if row.seq in watch:
            walk.hashes[row.seq] = row.hash
        prev_hash, walk.head_seq = row.hash, row.seq
    return walk


def _record_problem(chain: Row[Any] | None, key: bytes | None) -> str | None:
    if chain is None:
        return None
    if key is None:
        return (f"the audit key is missing (expected HOME/keys/{AUDIT_KEY}, CLUSTER_EVAL_AUDIT_KEY "
                "or the Prefect Secret block cluster-eval-audit-key)")
    if not hmac.compare_digest(chain.key_id, key_id(key)):
        return str(AuditKeyMismatch())
    if not hmac.compare_digest(chain.seal, _seal(key, chain.keyed_from)):
        return "the audit chain record was altered (where its keyed entries begin)"
    return None


def _anchor_problem(label: str, anchor: Anchor, kid: str, walk: _Walk) -> tuple[int | None, str] | None:
    if anchor.key_id != kid:
        return None, f"the {label} anchors a chain under another audit key"
    if anchor.seq > walk.head_seq:
        first = walk.head_seq + 1
        cut = f"entry {first} was" if first == anchor.seq else f"entries {first}–{anchor.seq} were"
        return first, f"{cut} cut from the end: the {label} anchors entry {anchor.seq}"
    if not hmac.compare_digest(walk.hashes.get(anchor.seq, ""), anchor.hash):
        return anchor.seq, (f"entry {anchor.seq} is not the one the {label} anchors: "
                            "entries were cut from the end and replaced")
    return None


@dataclass(frozen=True)
class _Anchors:
    file_exists: bool = False
    file: Anchor | None = None
    variable: Anchor | None = None
    checked_file: bool = False

    def labelled(self, kid: str) -> list[tuple[str, Anchor]]:
        found = [(f"head file {HEAD_FILE.as_posix()}", self.file),
                 (f"Prefect variable {variable_name(kid)}", self.variable)]
        return [(label, anchor) for label, anchor in found if anchor is not None]


def _read_anchors(home: Home | None, kid: str | None, prefect: bool) -> _Anchors:
    exists, on_file = read_head_file(home) if home is not None else (False, None)
    variable = read_variable(kid) if prefect and kid else None
    return _Anchors(exists, on_file, variable, home is not None)


def _anchors_problem(chain: Row[Any] | None, anchors: _Anchors, walk: _Walk) -> tuple[int | None, str] | None:
    if anchors.file_exists and anchors.file is None:
        return None, f"the head anchor {HEAD_FILE.as_posix()} is not a valid anchor"
    if chain is None:
        held = anchors.file is not None or anchors.variable is not None
        return (None, "the audit chain record is missing (deleted?)") if held else None
    for label, anchor in anchors.labelled(chain.key_id):
        problem = _anchor_problem(label, anchor, chain.key_id, walk)
        if problem:
            return problem
    if anchors.checked_file and not anchors.file_exists and walk.head_seq >= chain.keyed_from:
        return None, f"the head anchor {HEAD_FILE.as_posix()} is missing"
    return None


def verify_audit(conn: Connection, home: Home | None = None, prefect: bool = False) -> AuditCheck:
    """Check tables, key, every link and hash, then the anchors; name the first failure.

    Without ``home`` the head file is not checked; without ``prefect`` the Prefect Variable is not.
    """
    missing = _missing_table(conn)
    if missing:
        return AuditCheck(0, None, missing)
    chain = conn.execute(query("audit_chain_get")).first()
    key = _audit_key(conn.engine, create=False) if chain is not None else None
    keyed_from = chain.keyed_from if chain is not None else None
    anchors = _read_anchors(home, chain.key_id if chain is not None else None, prefect)
    seen = {"file": anchors.file.seq if anchors.file else None,
            "prefect_variable": anchors.variable.seq if anchors.variable else None}
    problem = _record_problem(chain, key)
    if problem:
        return AuditCheck(0, None, problem, anchors=seen)
    watch = {a.seq for a in (anchors.file, anchors.variable) if a is not None}
    walk = _walk(conn, key, keyed_from, watch)
    unkeyed = walk.entries if keyed_from is None else min(walk.entries, keyed_from - 1)
    if walk.reason is not None:
        return AuditCheck(walk.entries, walk.broken, walk.reason, unkeyed, seen)
    broken = _anchors_problem(chain, anchors, walk)
    if broken:
        return AuditCheck(walk.entries, broken[0], broken[1], unkeyed, seen)
    return AuditCheck(walk.entries, None, None, unkeyed, seen)


def check_audit_log(engine: Engine, home: Home | None = None, prefect: bool = False) -> AuditCheck:
    """Verify the whole chain and its anchors on a connection of its own."""
    with engine.connect() as conn:
        return verify_audit(conn, home, prefect)
