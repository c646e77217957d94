"""Keyed pseudonyms for source identifiers, and the split of contact details from families.

A pseudonym is the first 32 hex characters (128 bits) of

    HMAC-SHA-256(pseudonym_key, "cluster-eval/pid/v1" 0x1F cluster 0x1F kind 0x1F source_id)

where ``kind`` is ``family``, ``child``, ``episode`` or ``referral``. The key is secret
``pseudonym_key`` (tasks.core.secrets), never the contact-store key. The same source id of the same
kind in the same cluster always gives the same pseudonym, so a later extract links to an
earlier one; without the key a pseudonym cannot be reversed or recomputed from a guessed id.

Which column is pseudonymised, sent to the contact store or dropped is declared per column in
``schemas.columns``; this module applies those rules to the validated tables:

* every id column (``family_id`` ...) becomes its ``*_pid`` column, foreign keys included;
* the contact columns of ``families`` become one ``ContactRecord`` per family (kept in memory
  only until ``tasks.ingest.load`` encrypts them) and leave the table;
* validation failures keep only pseudonymised row keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from schemas.codes import FAMILIES
from schemas.columns import ROW_KEY, RULES, columns_for, pseudonym_column, pseudonym_kind
from tasks.core.contacts import ContactRecord

PSEUDONYM_HEX = 32
_DOMAIN = b"cluster-eval/pid/v1"
_SEP = b"\x1f"

# Source id column -> (kind in the HMAC message, pseudonymised column name), e.g.
# family_id -> (family, family_pid): every column the rules table pseudonymises.
ID_COLUMNS: dict[str, tuple[str, str]] = {
    r.column: (pseudonym_kind(r.column), pseudonym_column(r.column))
    for r in RULES if r.action == "pseudonymise"
}
CONTACT_FIELDS: tuple[str, ...] = columns_for(FAMILIES, "contact_store")
FAILURE_COLUMNS = ("table", "row_key", "column", "rule", "reason")


@dataclass(frozen=True)
class PseudonymisedTables:
    """Validated tables with pseudonymised keys, contact details split off (memory only)."""

    tables: dict[str, pl.DataFrame] = field(repr=False)
    contacts: dict[str, ContactRecord] = field(repr=False)
    failures: pl.DataFrame = field(repr=False)


def pseudonym(key: bytes, cluster: str, kind: str, source_id: str) -> str:
    """The pseudonym of one source id of a kind (family, child, episode, referral)."""
    message = _SEP.join((_DOMAIN, cluster.encode(), kind.encode(), source_id.encode("utf-8")))
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def pseudonymise_series(values: pl.Series, key: bytes, cluster: str, kind: str) -> pl.Series:
    """Replace every source id in a string column by its pseudonym (missing stays missing)."""
    unique = values.drop_nulls().unique()
    prefix = hmac.new(key, _SEP.join((_DOMAIN, cluster.encode(), kind.encode(), b"")),
                      hashlib.sha256)
    digests = []
    for source_id in unique.to_list():
        mac = prefix.copy()
        mac.update(source_id.encode("utf-8"))
        digests.append(mac.hexdigest()[:PSEUDONYM_HEX])
    return values.replace_strict(unique, pl.Series(digests, dtype=pl.String),
                                 default=None, return_dtype=pl.String)


def pseudonymise_ids(df: pl.DataFrame, key: bytes, cluster: str) -> pl.DataFrame:
    """Replace every id column of a table by its ``*_pid`` column, in place of the original."""
    replaced = []
    for column in df.columns:
        if column in ID_COLUMNS:
            kind, pid = ID_COLUMNS[column]
            series = pseudonymise_series(df.get_column(column), key, cluster, kind)
            replaced.append(series.alias(pid))
        else:
            replaced.append(df.get_column(column))
    return pl.DataFrame(replaced) if replaced else df


def pseudonymise_failures(failures: pl.DataFrame, key: bytes, cluster: str) -> pl.DataFrame:
    """Failures with each row key replaced by the pseudonym of its table's id kind.

    A row key of the form ``row <n>`` (the row had no usable id; ``n`` is its row number in
    the file) carries no personal data and is kept.
    """
    parts = []
    for (table,), frame in failures.group_by("table", maintain_order=True):
        keys = frame.get_column("row_key").cast(pl.String)
        kind = ID_COLUMNS[ROW_KEY[str(table)]][0]
        by_number = pl.Series([f"row {n}" for n in frame.get_column("row").to_list()])
        hidden = pseudonymise_series(keys, key, cluster, kind)
        row_key = pl.select(pl.when(keys == by_number).then(keys).otherwise(hidden)).to_series()
        parts.append(frame.with_columns(row_key.alias("row_key")))
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(FAILURE_COLUMNS, pl.String))
    return pl.concat(parts).select(FAILURE_COLUMNS)


def _flag(value: bool | None) -> bool:
    # A missing do-not-contact answer is read as "do not contact": the safe reading.
    return True if value is None else bool(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _contact_record(row: Mapping[str, Any], fields: Iterable[str]) -> ContactRecord:
    values: dict[str, Any] = {name: _text(row[name]) for name in fields}
    values["do_not_contact"] = _flag(row["do_not_contact"])
    return ContactRecord(**values)


def split_contacts(families: pl.DataFrame, contact_fields: tuple[str, ...] = CONTACT_FIELDS
                   ) -> tuple[pl.DataFrame, dict[str, ContactRecord]]:
    """Take the contact columns out of a pseudonymised families table, one record per family."""
    fields = ContactRecord.__dataclass_fields__
    if set(contact_fields) != set(fields):
        raise ValueError("the contact_store columns of schemas.columns must match ContactRecord")
    records = {
        row["family_pid"]: _contact_record(row, fields)
        for row in families.select("family_pid", *contact_fields).iter_rows(named=True)
    }
    return families.drop(contact_fields), records


def pseudonymise_tables(tables: Mapping[str, pl.DataFrame], failures: pl.DataFrame, key: bytes,
                        cluster: str, contact_fields: tuple[str, ...] = CONTACT_FIELDS
                        ) -> PseudonymisedTables:
    """Pseudonymise every id of the validated tables and failures; split off contact details."""
    out = {table: pseudonymise_ids(df, key, cluster) for table, df in tables.items()}
    out[FAMILIES], contacts = split_contacts(out[FAMILIES], contact_fields)
    return PseudonymisedTables(tables=out, contacts=contacts,
                               failures=pseudonymise_failures(failures, key, cluster))
