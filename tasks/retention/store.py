"""SQL over tables the rules name: identifiers from a strict whitelist, values bound."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import TextClause

from tasks.core.db import query
from tasks.core.errors import ConfigError
from tasks.retention.rules import IDENTIFIER, RULES_FILE


@cache
def _table_query(name: str, table: str) -> TextClause:
    # Identifiers come only from the packaged rules table or the database catalogue, checked
    # against a strict pattern; values are always bind parameters.
    if not IDENTIFIER.match(table):
        raise ConfigError(f"table name {table!r} is not allowed")
    return text(query(name).text.format(table=table))


@cache
def _columns_query(name: str, table: str, columns: tuple[str, ...]) -> TextClause:
    # As _table_query, for a statement over some columns of one table.
    if not columns or not all(IDENTIFIER.match(n) for n in (table, *columns)):
        raise ConfigError(f"columns of table {table!r} are not allowed")
    return text(
        query(name).text.format(
            table=table,
            assignments=", ".join(f"{c} = NULL" for c in columns),
            any_set=" OR ".join(f"{c} IS NOT NULL" for c in columns),
        )
    )


def database_tables(conn: Connection) -> dict[str, tuple[str, ...]]:
    """Every table of the analysis database with its column names."""
    inspector = inspect(conn)
    return {
        name: tuple(c["name"] for c in inspector.get_columns(name))
        for name in inspector.get_table_names()
    }


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


def count_set(conn: Connection, table: str, columns: tuple[str, ...], cluster_id: str) -> int:
    """Rows of this cluster in one table where any of these columns is set (not NULL)."""
    return int(
        conn.execute(
            _columns_query("retention_count_set", table, columns), {"cluster_id": cluster_id}
        ).scalar_one()
    )


def null_columns(conn: Connection, table: str, columns: tuple[str, ...], cluster_id: str) -> int:
    """Set these columns to NULL in every row of this cluster that has any of them (caller's transaction)."""
    result = conn.execute(
        _columns_query("retention_null_columns", table, columns), {"cluster_id": cluster_id}
    )
    return result.rowcount or 0
