"""The analysis database: engine, versioned migrations from ``sql/migrations``, named queries.

Migrations are ``sql/migrations/NNNN_name.sql`` files applied in order, each once, recorded in
``schema_version``; a file may hold several statements separated by ``;`` at a line end.
Queries are ``sql/queries/<name>.sql``, one statement each, run with bind parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.sql.elements import TextClause

from tasks.core.errors import ConfigError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (see make_engine).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Temporary tables, sort spills and VACUUM's copy stay in memory, never in /var/tmp or /tmp.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Take the write lock at BEGIN, so two writers queue instead of failing mid-transaction.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    """Create an engine for SQLite or PostgreSQL and check it answers; ConfigError if not."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {safe_url(url)} is not usable: {exc}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    supported = {"sqlite": ("pysqlite", ""), "postgresql": ("psycopg", "psycopg2", "")}
    if driver not in supported.get(backend, ()):
        raise ConfigError(f"database URL {safe_url(url)} is not usable: only sqlite:/// and "
                          "postgresql+psycopg:// URLs are supported")
    if backend == "postgresql" and driver != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(parsed, future=True, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise ConfigError(f"database URL {safe_url(url)} is not usable: {exc}") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(f"database {safe_url(url)} is unreachable: {reason}") from None
    return engine


def _migrations() -> list[tuple[int, str, str]]:
    folder = files("sql") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def split_statements(script: str) -> list[str]:
    """Split a migration script at semicolons that end a line; drop comment-only chunks."""
    chunks = re.split(r";\s*$", script, flags=re.MULTILINE)
    statements = []
    for chunk in chunks:
        body = "\n".join(
            line for line in chunk.splitlines() if not line.strip().startswith("--")
        ).strip()
        if body:
            statements.append(body)
    return statements


# Key of the PostgreSQL advisory lock that makes migrations one process at a time ("clev" in hex).
MIGRATION_LOCK_KEY = 0x636C6576


def migrate(engine: Engine) -> list[str]:
    """Apply every migration not yet recorded in schema_version, each in its own transaction.

    Processes starting at once on a new database (several workers) take turns: on PostgreSQL a
    session advisory lock is held for the whole run, since two concurrent ``CREATE TABLE IF NOT
    EXISTS`` of one table collide there; on SQLite every transaction starts with ``BEGIN
    IMMEDIATE`` (``make_engine``), so the check of schema_version happens under the write lock.
    """
    applied: list[str] = []
    with engine.connect() as conn:
        locked = conn.dialect.name == "postgresql"
        if locked:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()  # the lock belongs to the session and outlives this transaction
        try:
            with conn.begin():
                conn.execute(text(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                ))
            for version, name, script in _migrations():
                with conn.begin():
                    done = conn.execute(
                        text("SELECT 1 FROM schema_version WHERE version = :v"), {"v": version}
                    ).first()
                    if done:
                        continue
                    for statement in split_statements(script):
                        conn.exec_driver_sql(statement)
                    conn.execute(
                        text("INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)"),
                        {"v": version, "n": name, "t": datetime.now(UTC).isoformat()},
                    )
                    applied.append(name)
        finally:
            if locked and not conn.invalidated:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    return applied


@cache
def query(name: str) -> TextClause:
    """Load ``sql/queries/<name>.sql`` as a bindable statement."""
    return text((files("sql") / "queries" / f"{name}.sql").read_text(encoding="utf-8"))


def rows(conn: Connection, name: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a named query and return its rows as dicts."""
    return [dict(row._mapping) for row in conn.execute(query(name), dict(params or {}))]


def compact_database(engine: Engine) -> dict[str, Any]:
    """Make deleted rows unrecoverable from the database files (SQLite: checkpoint, VACUUM, truncate WAL)."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("VACUUM")
            busy, _frames, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        finally:
            raw.close()
        return {"backend": "sqlite", "vacuumed": True, "wal_truncated": busy == 0}
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM")
    return {"backend": engine.dialect.name, "vacuumed": True, "wal_truncated": None}
