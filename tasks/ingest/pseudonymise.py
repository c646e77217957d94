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
* the contact columns of ``families`` become the contact frame (``family_pid`` and the
  ``ContactRecord`` fields, one row per family, kept in memory only until
  ``tasks.ingest.load`` seals them with ``tasks.core.contacts.seal_contact_frame``) and leave
  the table;
* validation failures keep only pseudonymised row keys.

Each distinct source id of a kind is hashed once for all tables (``family_id`` appears in
families, children and episodes), from the HMAC's inner and outer SHA-256 states computed once
per kind (RFC 2104, the same digest as ``hmac.new``), and joined back as a column.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

import polars as pl

from schemas.codes import FAMILIES
from schemas.columns import ROW_KEY, RULES, columns_for, pseudonym_column, pseudonym_kind
from tasks.core.contacts import CONTACT_FRAME_COLUMNS

PSEUDONYM_HEX = 32
_DOMAIN = b"cluster-eval/pid/v1"
_SEP = b"\x1f"
_BLOCK = 64  # SHA-256 block size: the HMAC key pads to it
_HASH_CHUNK = 1 << 18  # ids turned into Python objects at a time while hashing

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
    """Validated tables with pseudonymised keys, contact details split off (memory only).

    ``contacts`` is the contact frame: ``family_pid`` then the ``ContactRecord`` fields, one row
    per family, ``do_not_contact`` never missing (a missing answer reads as True).
    """

    tables: dict[str, pl.DataFrame] = field(repr=False)
    contacts: pl.DataFrame = field(repr=False)
    failures: pl.DataFrame = field(repr=False)


def pseudonym(key: bytes, cluster: str, kind: str, source_id: str) -> str:
    """The pseudonym of one source id of a kind (family, child, episode, referral)."""
    message = _SEP.join((_DOMAIN, cluster.encode(), kind.encode(), source_id.encode("utf-8")))
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def _hasher(key: bytes, cluster: str, kind: str) -> Callable[[bytes], str]:
    """HMAC-SHA-256 of (prefix of the kind) + source id, from precomputed inner/outer states."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    inner.update(_SEP.join((_DOMAIN, cluster.encode(), kind.encode(), b"")))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
    inner_copy, outer_copy = inner.copy, outer.copy

    def digest(source_id: bytes) -> str:
        mac = inner_copy()
        mac.update(source_id)
        out = outer_copy()
        out.update(mac.digest())
        return out.hexdigest()[:PSEUDONYM_HEX]

    return digest


def pseudonym_map(values: pl.Series, key: bytes, cluster: str, kind: str) -> pl.DataFrame:
    """Each distinct source id of ``values`` (``source``) and its pseudonym (``pid``)."""
    unique = values.drop_nulls().unique().cast(pl.String)
    digest = _hasher(key, cluster, kind)
    ids = unique.cast(pl.Binary)
    parts = [pl.Series(list(map(digest, ids.slice(start, _HASH_CHUNK).to_list())), dtype=pl.String)
             for start in range(0, len(ids), _HASH_CHUNK)]  # few Python objects at a time
    pids = pl.concat(parts) if parts else pl.Series([], dtype=pl.String)
    return pl.DataFrame({"source": unique, "pid": pids})


def _apply(values: pl.Series, mapping: pl.DataFrame) -> pl.Series:
    """The pseudonyms of ``values`` (missing stays missing), in the same order."""
    looked_up = values.cast(pl.String).to_frame("source").join(
        mapping, on="source", how="left", maintain_order="left")
    return looked_up.get_column("pid")


def pseudonymise_series(values: pl.Series, key: bytes, cluster: str, kind: str) -> pl.Series:
    """Replace every source id in a string column by its pseudonym (missing stays missing)."""
    return _apply(values, pseudonym_map(values, key, cluster, kind)).alias(values.name)


def pseudonymise_ids(df: pl.DataFrame, key: bytes, cluster: str,
                     maps: Mapping[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """Replace every id column of a table by its ``*_pid`` column, in place of the original.

    ``maps`` (kind -> ``pseudonym_map``) saves hashing ids again that other tables share.
    """
    replaced = []
    for column in df.columns:
        if column in ID_COLUMNS:
            kind, pid = ID_COLUMNS[column]
            series = df.get_column(column)
            mapping = maps[kind] if maps and kind in maps else pseudonym_map(series, key, cluster,
                                                                             kind)
            replaced.append(_apply(series, mapping).alias(pid))
        else:
            replaced.append(df.get_column(column))
    return pl.DataFrame(replaced) if replaced else df


def pseudonym_maps(tables: Mapping[str, pl.DataFrame], key: bytes, cluster: str
                   ) -> dict[str, pl.DataFrame]:
    """One ``pseudonym_map`` per kind over every id column of that kind in all tables."""
    by_kind: dict[str, list[pl.Series]] = {}
    for df in tables.values():
        for column in df.columns:
            if column in ID_COLUMNS:
                series = df.get_column(column).cast(pl.String).drop_nulls().unique()
                by_kind.setdefault(ID_COLUMNS[column][0], []).append(series.alias("source"))
    return {kind: pseudonym_map(pl.concat(parts), key, cluster, kind)
            for kind, parts in by_kind.items()}


def pseudonymise_failures(failures: pl.DataFrame, key: bytes, cluster: str) -> pl.DataFrame:
    """Failures with each row key replaced by the pseudonym of its table's id kind.

    A row key of the form ``row <n>`` (the row had no usable id; ``n`` is its row number in
    the file) carries no personal data and is kept.
    """
    parts = []
    for (table,), frame in failures.group_by("table", maintain_order=True):
        keys = frame.get_column("row_key").cast(pl.String)
        kind = ID_COLUMNS[ROW_KEY[str(table)]][0]
        by_number = frame.select(pl.format("row {}", pl.col("row"))).to_series()
        hidden = pseudonymise_series(keys, key, cluster, kind)
        row_key = pl.select(pl.when(keys == by_number).then(keys).otherwise(hidden)).to_series()
        parts.append(frame.with_columns(row_key.alias("row_key")))
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(FAILURE_COLUMNS, pl.String))
    return pl.concat(parts).select(FAILURE_COLUMNS)


def split_contacts(families: pl.DataFrame, contact_fields: tuple[str, ...] = CONTACT_FIELDS
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Take the contact columns out of a pseudonymised families table: (rest, contact frame).

    A missing do-not-contact answer is read as "do not contact" (True): the safe reading.
    """
    fields = CONTACT_FRAME_COLUMNS[1:]
    if set(contact_fields) != set(fields):
        raise ValueError("the contact_store columns of schemas.columns must match ContactRecord")
    contacts = families.select(
        pl.col("family_pid"),
        *(pl.col(name).cast(pl.String) for name in fields if name != "do_not_contact"),
        pl.col("do_not_contact").cast(pl.Boolean).fill_null(True),
    ).select(CONTACT_FRAME_COLUMNS)
    return families.drop(contact_fields), contacts


def pseudonymise_tables(tables: Mapping[str, pl.DataFrame], failures: pl.DataFrame, key: bytes,
                        cluster: str, contact_fields: tuple[str, ...] = CONTACT_FIELDS, *,
                        consume: bool = False) -> PseudonymisedTables:
    """Pseudonymise every id of the validated tables and failures; split off contact details.

    ``consume=True`` (the pipeline) takes each table out of ``tables`` (then a mutable mapping)
    once pseudonymised, so its source id columns are freed as it goes.
    """
    maps = pseudonym_maps(tables, key, cluster)
    out = {}
    for table in list(tables):
        if consume:
            assert isinstance(tables, MutableMapping)
            df = tables.pop(table)
        else:
            df = tables[table]
        out[table] = pseudonymise_ids(df, key, cluster, maps)
        del df
    del maps
    out[FAMILIES], contacts = split_contacts(out[FAMILIES], contact_fields)
    return PseudonymisedTables(tables=out, contacts=contacts,
                               failures=pseudonymise_failures(failures, key, cluster))
