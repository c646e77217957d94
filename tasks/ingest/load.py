"""Load one extract into the analysis store in ONE transaction, set-wise.

Rows go in sorted by primary key (pseudonyms are random hex: sorted, each B-tree insert is an
append next to the previous one) with executemany at the driver level (SQLite) or ``COPY ... FROM
STDIN`` of polars-written CSV (PostgreSQL), both inside the same transaction. The analysis tables'
INSERT and COPY statements are generated from ``schemas.columns.ANALYSIS_COLUMNS`` (itself derived
from the rules table), so a column change is one edit there: only those fixed, checked identifiers
are formatted into SQL, every value is a bind parameter or COPY data. Every other statement is a
named query in ``sql/queries``.

Inside the transaction, in order: claim the extract (its row in ``extracts``; the primary key
(cluster_id, sha256) makes a second, concurrent ingest of the same file fail here, which is
reported as a duplicate); delete, set-wise, the rows a later extract replaces (this extract's keys
go into the temporary table ``ingest_keys``; one DELETE per table removes the re-sent rows and
every row below a re-sent family or episode, children first); insert the analysis tables, the
contact store's ciphertexts, the quarantined rows' keys and reasons, the raw file's retention
entry and the audit event; finally move the still-encrypted file into ``HOME/raw``. Any error rolls
everything back and puts the file back where it was.

On SQLite the load connection runs with ``PRAGMA foreign_keys=OFF`` (set before BEGIN, since it
cannot change inside a transaction) and a page cache sized from the extract: per-row foreign-key
lookups are what made the load slow. Integrity is then proved set-wise before commit: one
anti-join per foreign key over the cluster's rows (``ingest_orphans``); any orphan raises and
the whole load rolls back. Both pragmas are restored after the load, failed or not, and a
connection whose pragmas cannot be restored is invalidated, so every other connection (withdrawal,
retention: they rely on ON DELETE CASCADE) keeps foreign keys on. PostgreSQL keeps its foreign-key
triggers (switching them off needs a superuser or table locks).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from shutil import copyfileobj
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS
from schemas.columns import ANALYSIS_COLUMNS, EPISODE_ISSUES, EPISODE_SERVICES
from tasks.core.audit import AuditValue, append_audit
from tasks.core.contacts import SEALED_COLUMNS, ContactRecord, contact_frame, seal_contact_frame
from tasks.core.db import query
from tasks.core.errors import UserFacingError
from tasks.ingest.transform import AnalysisTables

RAW_EXTRACT = "raw_extract"
RAW_FILE_MODE = 0o600  # the kept encrypted extract and its sidecar: owner only
INGESTED = "ingested"
BATCH_ROWS = 50_000
CONTACTS = "contacts"
# The load connection's SQLite page cache: about this many bytes per row loaded, within bounds
# (the default 2 MiB makes every random index insert a read at a million families).
CACHE_BYTES_PER_ROW = 160
CACHE_MIN_KIB = 2_048
CACHE_MAX_KIB = 512 * 1024

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
# Columns an analysis row gets from the load itself rather than from the extract.
LOAD_COLUMNS: dict[str, tuple[str, ...]] = {
    table: ("cluster_id", "extract_sha256") if table == FAMILIES else ("cluster_id",)
    for table in ANALYSIS_COLUMNS
}


@dataclass(frozen=True)
class Insert:
    """A plain INSERT of named columns into one analysis table.

    Only the whitelisted identifiers of ``ANALYSIS_COLUMNS`` and ``LOAD_COLUMNS`` (bare lower-case
    names) are accepted, since they are formatted into the SQL; values are bind parameters.
    """

    table: str
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        allowed = {*LOAD_COLUMNS.get(self.table, ()), *ANALYSIS_COLUMNS.get(self.table, ())}
        for name in (self.table, *self.columns):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")
        if self.table not in ANALYSIS_COLUMNS or not allowed.issuperset(self.columns):
            raise ValueError(f"not an analysis table and its columns: {self.table}")

    @cached_property
    def statement(self) -> TextClause:
        """``INSERT INTO table (columns) VALUES (:columns)``, every value a bind parameter."""
        binds = ", ".join(f":{c}" for c in self.columns)
        return text(f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({binds})")

    @property
    def copy(self) -> str:
        """The equivalent ``COPY table (columns) FROM STDIN``."""
        return f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN"


# Analysis table -> its insert, in load order (parents first).
INSERTS: dict[str, Insert] = {
    table: Insert(table, (*LOAD_COLUMNS[table], *columns))
    for table, columns in ANALYSIS_COLUMNS.items()
}
# Each analysis table's primary key after cluster_id: the order its rows are inserted in.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    FAMILIES: ("family_pid",),
    CHILDREN: ("child_pid",),
    EPISODES: ("episode_pid",),
    EPISODE_ISSUES: ("episode_pid", "issue"),
    EPISODE_SERVICES: ("episode_pid", "service"),
    GOALS: ("episode_pid", "goal_number"),
    SPECIALIST_REFERRALS: ("referral_pid",),
}
# Tables whose re-sent keys replace stored rows (the key kind in ingest_keys is the table name).
REPLACEABLE: tuple[str, ...] = (FAMILIES, CHILDREN, EPISODES, SPECIALIST_REFERRALS)
# Replacement, set-wise and children first, so nothing relies on ON DELETE CASCADE (off on the
# SQLite load connection): first the episodes to delete (re-sent, or of a re-sent family), then
# every row below them, then the re-sent children, episodes and families. Every foreign key of the
# schema that points at families or episodes has its delete here (tests/test_load_scale.py).
REPLACE_EPISODES: tuple[str, ...] = (
    "ingest_replaced_episodes_by_key", "ingest_replaced_episodes_by_family")
REPLACE_DELETES: tuple[str, ...] = (
    "ingest_replace_goals_by_episode", "ingest_replace_episode_issues_by_episode",
    "ingest_replace_episode_services_by_episode", "ingest_replace_specialist_referrals_by_episode",
    "ingest_replace_specialist_referrals_by_key", "ingest_replace_episodes",
    "ingest_replace_children_by_key", "ingest_replace_children_by_family",
    "ingest_replace_families",
)


class AlreadyIngested(Exception):
    """The extract's (cluster, sha256) is already in ``extracts``."""


@dataclass(frozen=True)
class ExtractFile:
    """The encrypted file being ingested and where it is kept once accepted."""

    source: Path
    raw_path: Path
    sha256: str
    encryption: str

    @property
    def sidecar(self) -> Path:
        return self.source.with_name(self.source.name + ".sha256")


# A plain named insert whose bind parameters are its column names can be streamed with COPY.
_PLAIN_INSERT = re.compile(r"^INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(([:\w, ]+)\)$")


Statement = str | Insert  # the name of a query in sql/queries, or a generated insert


def _clause(statement: Statement) -> TextClause:
    return statement.statement if isinstance(statement, Insert) else query(statement)


def copy_statement(statement: Statement) -> tuple[str, list[str]] | None:
    """The ``COPY ... FROM STDIN`` equivalent of a plain INSERT and its columns, or None.

    Table and column names come only from generated inserts or the project's own
    ``sql/queries`` files and must be bare identifiers; anything else falls back to executemany.
    """
    if isinstance(statement, Insert):
        return statement.copy, list(statement.columns)
    match = _PLAIN_INSERT.match(query(statement).text.strip())
    if not match:
        return None
    table, columns, binds = match.groups()
    names = [c.strip() for c in columns.split(",")]
    if [b.strip().removeprefix(":") for b in binds.split(",")] != names:
        return None
    return f"COPY {table} ({', '.join(names)}) FROM STDIN", names


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _copy_frame(conn: Connection, sql: str, names: list[str], df: pl.DataFrame) -> None:
    """Stream a frame's columns as CSV into ``COPY ... FROM STDIN`` on the psycopg connection.

    polars writes the CSV (no Python object per value); a missing value is an unquoted empty
    field (NULL in COPY's CSV format) and an empty string a quoted one.
    """
    driver = conn.connection.driver_connection
    if driver is None:  # the connection was closed under us
        raise SQLAlchemyError("the database connection is closed")
    try:
        with driver.cursor() as cursor, cursor.copy(f"{sql} WITH (FORMAT csv)") as stream:
            for batch in df.select(names).iter_slices(BATCH_ROWS):
                stream.write(batch.write_csv(include_header=False).encode("utf-8"))
    except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy wraps it for executemany
        raise DBAPIError(sql, None, exc) from None


def _execute_frame(conn: Connection, statement: Statement, df: pl.DataFrame,
                   constants: Mapping[str, Any]) -> None:
    """Run one statement for every row of a frame (COPY, or executemany in batches).

    The statement is compiled once for the connection's dialect and run at the driver level
    with plain tuples or dicts, so a million rows do not pay SQLAlchemy's per-row overhead.
    """
    if df.is_empty():
        return
    df = df.with_columns(pl.lit(value).alias(name) for name, value in constants.items())
    copy = copy_statement(statement) if conn.dialect.name == "postgresql" else None
    if copy is not None:
        _copy_frame(conn, *copy, df)
        return
    compiled = _clause(statement).compile(dialect=conn.dialect)
    if conn.dialect.name == "sqlite":  # dates as ISO text, as SQLAlchemy's SQLite Date does
        df = df.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
    names = list(compiled.positiontup or compiled.binds)
    for batch in df.select(names).iter_slices(BATCH_ROWS):
        # Column by column, then zipped into rows: faster than DataFrame.rows() (row-wise).
        params: list[Any] = (list(zip(*(column.to_list() for column in batch.get_columns()), strict=True))
                             if compiled.positional else batch.to_dicts())
        conn.exec_driver_sql(compiled.string, params)


def sorted_rows(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """A table's rows in primary-key order (byte order: SQLite's BINARY, PostgreSQL's "C")."""
    return df.sort(list(PRIMARY_KEYS[table]))


def _stage_keys(conn: Connection, kind: str, keys: pl.Series) -> None:
    """Put this extract's keys of one kind into the temporary table ``ingest_keys``."""
    frame = keys.unique().sort().rename("pid").to_frame().with_columns(pl.lit(kind).alias("kind"))
    _execute_frame(conn, "ingest_keys_insert", frame, {})


@contextmanager
def _staged_keys(conn: Connection) -> Iterator[None]:
    """An empty temporary table ``ingest_keys`` for the caller's keys, emptied again afterwards."""
    conn.execute(query("ingest_keys_create"))
    conn.execute(query("ingest_keys_clear"))
    yield
    conn.execute(query("ingest_keys_clear"))


def _stored(conn: Connection, cluster: str) -> dict[str, bool]:
    """Which replaceable tables (and the contact store) hold rows of this cluster."""
    row = conn.execute(query("ingest_stored_counts"), {"cluster_id": cluster}).one()
    return {name: bool(found) for name, found in row._mapping.items()}


def replace_rows(conn: Connection, cluster: str, tables: Mapping[str, pl.DataFrame],
                 contact_pids: pl.Series) -> None:
    """Delete, set-wise, every stored row this extract replaces (see ``REPLACE_DELETES``)."""
    stored = _stored(conn, cluster)
    if not any(stored.values()):  # a cluster's first extract: nothing to replace
        return
    on_cluster = {"cluster_id": cluster}
    with _staged_keys(conn):
        for table in REPLACEABLE:
            if stored[table] or (table == FAMILIES and stored[EPISODES]):
                _stage_keys(conn, table, tables[table].get_column(PRIMARY_KEYS[table][0]))
        if stored[CONTACTS]:
            _stage_keys(conn, CONTACTS, contact_pids)
        for statement in (*REPLACE_EPISODES, *REPLACE_DELETES):
            conn.execute(query(statement), on_cluster)
        if stored[CONTACTS]:
            conn.execute(query("ingest_replace_contacts"), on_cluster)


class OrphanRows(UserFacingError):
    """The load would leave rows without their parent row; nothing was stored."""


def check_foreign_keys(conn: Connection, cluster: str) -> None:
    """Prove every foreign key of the cluster's analysis rows set-wise; OrphanRows if one fails."""
    found = [row.table_name for row in conn.execute(query("ingest_orphans"), {"cluster_id": cluster})
             if row.orphans]
    if found:
        raise OrphanRows(
            f"the load would leave rows of {', '.join(found)} without their parent row; nothing "
            "was stored and the file was left where it was; check the extract and run the ingest again")


def _cache_kib(rows: int) -> int:
    return max(CACHE_MIN_KIB, min(CACHE_MAX_KIB, rows * CACHE_BYTES_PER_ROW // 1024))


@contextmanager
def bulk_connection(engine: Engine, rows: int) -> Iterator[tuple[Connection, bool]]:
    """A connection for one bulk load, and whether the database enforces its foreign keys.

    SQLite: foreign keys off and a page cache sized for ``rows`` (both set before BEGIN, as
    ``PRAGMA foreign_keys`` is a no-op inside a transaction); the caller then proves the keys
    with ``check_foreign_keys`` before commit. Both pragmas are put back afterwards, failed or
    not; a connection on which they cannot be put back is invalidated (closed, never reused).
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn, True
            return
        driver = conn.connection.driver_connection
        if driver is None:
            raise SQLAlchemyError("the database connection is closed")
        saved_keys = driver.execute("PRAGMA foreign_keys").fetchone()[0]
        saved_cache = driver.execute("PRAGMA cache_size").fetchone()[0]
        try:
            # Numbers computed here, not values from the extract (PRAGMA takes no parameters).
            driver.execute(f"PRAGMA cache_size = {-_cache_kib(rows):d}")
            driver.execute("PRAGMA foreign_keys = OFF")
            enforced = driver.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            yield conn, enforced
        finally:
            _restore_pragmas(conn, int(saved_keys), int(saved_cache))


def _restore_pragmas(conn: Connection, foreign_keys: int, cache_size: int) -> None:
    driver = conn.connection.driver_connection
    try:
        if driver is None or driver.in_transaction:
            raise SQLAlchemyError("the load connection is still inside a transaction")
        driver.execute(f"PRAGMA foreign_keys = {foreign_keys:d}")
        driver.execute(f"PRAGMA cache_size = {cache_size:d}")
        restored = (driver.execute("PRAGMA foreign_keys").fetchone()[0],
                    driver.execute("PRAGMA cache_size").fetchone()[0])
        if restored != (foreign_keys, cache_size):
            raise SQLAlchemyError("the load connection's pragmas could not be restored")
    except Exception:
        conn.invalidate()  # never hand a connection with foreign keys off back to the pool


def sealed_contacts(key: bytes, cluster: str, extract_sha256: str,
                    contacts: pl.DataFrame | Mapping[str, ContactRecord]) -> pl.DataFrame:
    """The ``contacts`` rows (ciphertexts only) for a frame or a mapping of contact records."""
    frame = contacts if isinstance(contacts, pl.DataFrame) else contact_frame(contacts)
    return seal_contact_frame(key, cluster, extract_sha256, frame).select(SEALED_COLUMNS).sort("family_pid")


class MoveFailed(UserFacingError):
    """The extract could not be moved into the home; nothing was stored and the file is where it was."""


def move_private(source: Path, target: Path, mode: int = RAW_FILE_MODE) -> None:
    """Move a file to ``target`` with ``mode``, whole or not at all; raise OSError otherwise.

    On one filesystem this is one rename. Across filesystems the bytes are copied to a temporary file
    beside ``target`` (made ``mode``), synced and renamed into place, then the source is deleted: a
    failure at any step (a full disk) removes the temporary file and leaves the source untouched.
    """
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(source, target, mode)
        return
    try:
        target.chmod(mode)
    except OSError:
        os.rename(target, source)  # one filesystem: put it back as it came
        raise


def _copy_across(source: Path, target: Path, mode: int) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            os.fchmod(out.fileno(), mode)
            copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        source.unlink()
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def planned_moves(extract: ExtractFile) -> list[tuple[Path, Path]]:
    """Where the encrypted file (and its .sha256 sidecar, when present) go in HOME/raw."""
    moves = [(extract.source, extract.raw_path)]
    if extract.sidecar.is_file() and not extract.sidecar.is_symlink():
        moves.append((extract.sidecar, extract.raw_path.with_name(extract.raw_path.name + ".sha256")))
    return moves


Moved = tuple[Path, Path, int]  # (where it was, where it is, the mode it had)


def keep_raw_files(moves: list[tuple[Path, Path]], mode: int = RAW_FILE_MODE) -> list[Moved]:
    """Move the files into the home (HOME/raw, mode 0600); on failure put back what moved and raise OSError."""
    done: list[Moved] = []
    try:
        for source, target in moves:
            was = stat.S_IMODE(source.stat().st_mode)
            move_private(source, target, mode)
            done.append((source, target, was))
    except OSError:
        undo_moves(done)
        raise
    return done


def undo_moves(moves: list[Moved]) -> None:
    """Put moved files back where they came from, with the mode they had (after a rollback)."""
    for source, target, was in reversed(moves):
        if target.exists() and not source.exists():
            move_private(target, source, was)


def load_extract(engine: Engine, cluster: str, extract: ExtractFile, analysis: AnalysisTables,
                 contacts: pl.DataFrame | Mapping[str, ContactRecord], contact_key: bytes,
                 failures: pl.DataFrame, audit: Mapping[str, AuditValue],
                 flow_run_id: str | None = None) -> bool:
    """Load everything in one transaction; False when the extract was already ingested."""
    tables = analysis.tables
    sealed = sealed_contacts(contact_key, cluster, extract.sha256, contacts)
    rows = sum(df.height for df in tables.values()) + sealed.height
    moves: list[Moved] = []
    try:
        with bulk_connection(engine, rows) as (conn, enforced), conn.begin():
            try:
                conn.execute(query("ingest_insert_extract"), {
                    "cluster_id": cluster, "sha256": extract.sha256,
                    "file_name": extract.source.name, "encryption": extract.encryption,
                    "status": INGESTED, "received_at": _now(), "raw_path": str(extract.raw_path),
                })
            except IntegrityError:
                raise AlreadyIngested from None
            on_cluster = {"cluster_id": cluster}
            replace_rows(conn, cluster, tables, sealed.get_column("family_pid"))
            from_load = {**on_cluster, "extract_sha256": extract.sha256}
            for table, insert in INSERTS.items():  # one sorted copy at a time: memory
                constants = {name: from_load[name] for name in LOAD_COLUMNS[table]}
                _execute_frame(conn, insert, sorted_rows(table, tables[table]), constants)
            _execute_frame(conn, "contacts_insert", sealed, {})
            if not enforced:
                check_foreign_keys(conn, cluster)
            quarantined = failures.select(
                pl.col("table").alias("table_name"), "row_key",
                pl.col("column").alias("column_name"), "rule", "reason")
            _execute_frame(conn, "ingest_insert_quarantined_row", quarantined,
                           {**on_cluster, "source_sha256": extract.sha256})
            planned = planned_moves(extract)
            conn.execute(query("ingest_register_raw_file"), [
                {"cluster_id": cluster, "path": str(target), "category": RAW_EXTRACT,
                 "registered_at": _now()} for _, target in planned])
            append_audit(conn, cluster, "ingest", audit, flow_run_id)
            moves = keep_raw_files(planned)
    except AlreadyIngested:
        return False
    except OSError as exc:  # the move into HOME/raw failed: the transaction was rolled back
        undo_moves(moves)
        raise MoveFailed(
            f"the extract could not be moved into {extract.raw_path.parent} ({exc.strerror}); "
            "nothing was stored; free space in or check that folder and run the ingest again"
        ) from None
    except SQLAlchemyError as exc:
        undo_moves(moves)
        # The driver's message may quote row values: name the error class only.
        raise UserFacingError(
            f"the database refused the load ({type(exc).__name__}); nothing was stored and the "
            "file was left where it was; check the database and run the ingest again"
        ) from None
    except BaseException:
        undo_moves(moves)
        raise
    return True


def store_contacts(conn: Connection, key: bytes, cluster: str, extract_sha256: str,
                   records: pl.DataFrame | Mapping[str, ContactRecord]) -> int:
    """Seal the families' contact records and replace their stored ones in the caller's transaction."""
    sealed = sealed_contacts(key, cluster, extract_sha256, records)
    if _stored(conn, cluster)[CONTACTS]:
        with _staged_keys(conn):
            _stage_keys(conn, CONTACTS, sealed.get_column("family_pid"))
            conn.execute(query("ingest_replace_contacts"), {"cluster_id": cluster})
    _execute_frame(conn, "contacts_insert", sealed, {})
    return sealed.height


def extract_exists(conn: Connection, cluster: str, sha256: str) -> bool:
    """Whether this cluster already ingested an extract with this SHA-256."""
    found = conn.execute(query("ingest_extract_exists"), {"cluster_id": cluster, "sha256": sha256})
    return found.first() is not None


def stored_population(conn: Connection, cluster: str) -> tuple[int, int]:
    """(families, episodes) of the study population now in the store for a cluster."""
    row = conn.execute(query("ingest_population"), {"cluster_id": cluster}).one()
    return int(row.families), int(row.episodes)
