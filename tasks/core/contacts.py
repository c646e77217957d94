"""The contact store: each family's contact details as one AES-256-GCM ciphertext.

The key (secret ``contact_key``) is not the pseudonymisation key; destroying it
crypto-shreds every copy, backups included. Plaintext exists only in memory.

A record's plaintext is ``json.dumps`` of its fields in ``ContactRecord`` order with
``separators=(",", ":")`` (ASCII, non-ASCII escaped); the nonce is 12 random bytes and the
associated data ``<cluster_id>:<family_pid>``. ``seal_contact_frame`` seals a whole ingest's
contact frame (one row per family, ``CONTACT_FRAME_COLUMNS``) in one vectorised pass in this
format, which ``decrypt_contact`` reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection

from tasks.core.db import query
from tasks.core.errors import ConfigError

NONCE_BYTES = 12


@dataclass(frozen=True)
class ContactRecord:
    """One family's contact details (personal data: never logged, never persisted in clear)."""

    lead_carer_name: str | None
    address_line_1: str | None
    address_line_2: str | None
    town: str | None
    postcode: str | None
    email: str | None
    phone: str | None
    preferred_contact: str | None
    do_not_contact: bool

    def __repr__(self) -> str:  # keep personal data out of tracebacks and logs
        return "ContactRecord(<redacted>)"

    __str__ = __repr__


_FIELDS = tuple(f.name for f in fields(ContactRecord))
CONTACT_FRAME_COLUMNS: tuple[str, ...] = ("family_pid", *_FIELDS)
SEALED_COLUMNS: tuple[str, ...] = ("cluster_id", "family_pid", "key_id", "nonce", "ciphertext",
                                   "extract_sha256")
# json.dumps (ensure_ascii) and polars' JSON writer agree on printable ASCII.
_NOT_PRINTABLE_ASCII = r"[^\x20-\x7e]"
_SEAL_SLICE = 1 << 16  # rows sealed at a time


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (which key encrypted a record)."""
    return hashlib.sha256(b"cluster-eval contact key id:" + key).hexdigest()[:16]


def _aad(cluster_id: str, family_pid: str) -> bytes:
    # Binds each ciphertext to its row, so records cannot be swapped between families.
    return f"{cluster_id}:{family_pid}".encode()


def decrypt_contact(key: bytes, cluster_id: str, family_pid: str, nonce: str, ciphertext: str) -> ContactRecord:
    """Decrypt one record, or raise ConfigError if the key is not the one that sealed it."""
    try:
        plaintext = AESGCM(key).decrypt(
            base64.b64decode(nonce), base64.b64decode(ciphertext), _aad(cluster_id, family_pid)
        )
    except InvalidTag:
        raise ConfigError("a contact record cannot be decrypted with the current contact key") from None
    return ContactRecord(**json.loads(plaintext))


def contact_frame(records: Mapping[str, ContactRecord]) -> pl.DataFrame:
    """The contact frame of some records (family_pid + ContactRecord fields, one row each)."""
    schema: dict[str, pl.DataType] = {name: pl.String() for name in CONTACT_FRAME_COLUMNS}
    schema["do_not_contact"] = pl.Boolean()
    rows = [(pid, *(getattr(record, f) for f in _FIELDS)) for pid, record in records.items()]
    return pl.DataFrame(rows, schema=schema, orient="row")


def _plaintexts(frame: pl.DataFrame) -> list[bytes]:
    """Each row's plaintext: ``json.dumps`` of the record, byte for byte (module docstring)."""
    encoded = frame.select(
        pl.struct(
            *(pl.col(f).cast(pl.String) for f in _FIELDS if f != "do_not_contact"),
            pl.col("do_not_contact").cast(pl.Boolean),
        ).struct.json_encode().alias("json")
    ).to_series()
    # Both writers escape quotes, backslashes and control characters alike; json.dumps also
    # escapes everything else outside printable ASCII (\u00eb, surrogate pairs, \u007f).
    odd = encoded.str.contains(_NOT_PRINTABLE_ASCII)
    if odd.any():
        subset = encoded.filter(odd)
        chars = subset.str.extract_all(_NOT_PRINTABLE_ASCII).explode().drop_nulls().unique()
        escapes = [json.dumps(c)[1:-1] for c in chars.to_list()]
        fixed = subset.str.replace_many(chars.to_list(), escapes)
        encoded = encoded.scatter(odd.arg_true(), fixed)
    return encoded.cast(pl.Binary).to_list()


def seal_contact_frame(key: bytes, cluster_id: str, extract_sha256: str,
                       frame: pl.DataFrame) -> pl.DataFrame:
    """The ``contacts`` rows (ciphertext only, ``SEALED_COLUMNS``) of a contact frame.

    ``frame`` has one row per family: ``family_pid`` and the ``ContactRecord`` fields
    (``do_not_contact`` Boolean, never missing). The format of the module docstring: one
    AESGCM object, a fresh random nonce per row, sealed a slice at a time (few Python objects).
    """
    seal = AESGCM(key).encrypt
    prefix = f"{cluster_id}:".encode()
    nonces: list[pl.Series] = []
    sealed: list[pl.Series] = []
    for part in frame.iter_slices(_SEAL_SLICE):
        pids = part.get_column("family_pid").cast(pl.String).cast(pl.Binary).to_list()
        random_bytes = os.urandom(NONCE_BYTES * part.height)
        part_nonces = [random_bytes[i:i + NONCE_BYTES]
                       for i in range(0, len(random_bytes), NONCE_BYTES)]
        texts = _plaintexts(part)
        sealed.append(pl.Series([seal(nonce, text, prefix + pid) for nonce, text, pid
                                 in zip(part_nonces, texts, pids, strict=True)], dtype=pl.Binary))
        nonces.append(pl.Series(part_nonces, dtype=pl.Binary))
    empty = pl.Series([], dtype=pl.Binary)
    return pl.DataFrame({
        "family_pid": frame.get_column("family_pid").cast(pl.String),
        "nonce": (pl.concat(nonces) if nonces else empty).bin.encode("base64"),
        "ciphertext": (pl.concat(sealed) if sealed else empty).bin.encode("base64"),
    }).select(
        pl.lit(cluster_id, dtype=pl.String).alias("cluster_id"),
        "family_pid",
        pl.lit(key_id(key), dtype=pl.String).alias("key_id"),
        "nonce",
        "ciphertext",
        pl.lit(extract_sha256, dtype=pl.String).alias("extract_sha256"),
    )


def load_contacts(conn: Connection, key: bytes, cluster_id: str,
                  family_pids: Iterable[str] | None = None) -> dict[str, ContactRecord]:
    """Decrypt the records of a cluster (optionally only some families), in memory."""
    wanted = None if family_pids is None else set(family_pids)
    out: dict[str, ContactRecord] = {}
    for row in conn.execute(query("contacts_select"), {"cluster_id": cluster_id}):
        if wanted is None or row.family_pid in wanted:
            out[row.family_pid] = decrypt_contact(key, cluster_id, row.family_pid, row.nonce, row.ciphertext)
    return out


def delete_contact(conn: Connection, cluster_id: str, family_pid: str) -> int:
    """Delete one family's record now (withdrawal); return rows deleted."""
    result = conn.execute(query("contacts_delete_family"), {"cluster_id": cluster_id, "family_pid": family_pid})
    return result.rowcount or 0
