"""The contact store: each family's contact details as one AES-256-GCM ciphertext.

The key (secret ``contact_key``) is not the pseudonymisation key; destroying it
crypto-shreds every copy, backups included. Plaintext exists only in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

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


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (which key encrypted a record)."""
    return hashlib.sha256(b"cluster-eval contact key id:" + key).hexdigest()[:16]


def _aad(cluster_id: str, family_pid: str) -> bytes:
    # Binds each ciphertext to its row, so records cannot be swapped between families.
    return f"{cluster_id}:{family_pid}".encode()


def encrypt_contact(key: bytes, cluster_id: str, family_pid: str, record: ContactRecord) -> tuple[str, str]:
    """Encrypt one record; return (nonce, ciphertext) as base64 text."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps({f: getattr(record, f) for f in _FIELDS}, separators=(",", ":")).encode("utf-8")
    sealed = AESGCM(key).encrypt(nonce, plaintext, _aad(cluster_id, family_pid))
    return base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()


def decrypt_contact(key: bytes, cluster_id: str, family_pid: str, nonce: str, ciphertext: str) -> ContactRecord:
    """Decrypt one record, or raise ConfigError if the key is not the one that sealed it."""
    try:
        plaintext = AESGCM(key).decrypt(
            base64.b64decode(nonce), base64.b64decode(ciphertext), _aad(cluster_id, family_pid)
        )
    except InvalidTag:
        raise ConfigError("a contact record cannot be decrypted with the current contact key") from None
    return ContactRecord(**json.loads(plaintext))


def seal_contacts(key: bytes, cluster_id: str, extract_sha256: str,
                  records: Mapping[str, ContactRecord]) -> list[dict[str, str]]:
    """The ``contacts`` rows (ciphertext only) for the given families (stored by the ingest load)."""
    kid = key_id(key)
    params = []
    for family_pid, record in records.items():
        nonce, sealed = encrypt_contact(key, cluster_id, family_pid, record)
        params.append({"cluster_id": cluster_id, "family_pid": family_pid, "key_id": kid,
                       "nonce": nonce, "ciphertext": sealed, "extract_sha256": extract_sha256})
    return params


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
