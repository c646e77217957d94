"""Open the encrypted extract in memory and refuse anything unsafe (spec extract-v1 §1, §4).

The extract arrives as ONE file: a WinZip-AES-256 ZIP, or an age file (passphrase or
X25519) whose plaintext is a ZIP. This package decides the format from the content's
magic bytes, decrypts it, applies the archive safety checks and returns the member
files as bytes. Nothing is ever written to disk: no temporary files, no extraction.

Checks, in order (all before any member content is returned, none parses table data):

1. Format: ZIP (``PK\\x03\\x04`` / empty ``PK\\x05\\x06``), binary age
   (``age-encryption.org/v1``) or ASCII-armored age; anything else is refused.
2. age (``age``): the header's recipient stanzas decide between passphrase (scrypt) and
   X25519 identity; the plaintext must itself be a ZIP.
3. Directory (``entries``, headers only, nothing decrypted yet): entry count; member paths
   (no ``..``, absolute, drive-letter, backslash or control characters); links and
   other special files; duplicate names (exact, and base names case-insensitively);
   nested archives by extension; encryption (see below); compression method
   (Stored or Deflate only: bzip2/LZMA can expand far more per read chunk, so they
   cannot be bounded while streaming); the sizes and ratios the headers claim.
4. Streaming (``zipread``): every member is decompressed in 64 KiB chunks to the real end
   of its stream (not just to the size its header claims); the running total and each
   member's ratio are checked after every chunk, so a lying header cannot get past
   the limits, and a member whose real size differs from its header is refused as
   corrupt (WinZip AE-2 has no CRC, so that is the only way to notice truncation).
5. Content: members that start with an archive magic are refused as nested
   archives, except ``.xlsx`` (a ZIP by design), whose own parts get the member
   count, size and ratio checks again, streamed the same way.

Encryption rules:

* ZIP delivery: every file member must be WinZip AES with strength 3 (AES-256).
  Unencrypted (fully or partly), legacy ZipCrypto, AES-128/192 and PKWARE "strong
  encryption" are refused.
* age delivery: the inner ZIP is normally unencrypted. An AES-256 ZIP inside age is
  also accepted and is opened with the same ``passphrase``
  (CLUSTER_EVAL_EXTRACT_PASSPHRASE). ZipCrypto and AES-128/192 are refused there too.

OS clutter (``__MACOSX/...``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) must pass
the directory checks but is never decrypted and is left out of ``Extract.members``.
``Extract.members`` is keyed by base name; sub-folders are allowed.

Every refusal is an :class:`~tasks.core.errors.InputRejected` with ``file=file_name`` and a
one-sentence message that states what is wrong and what to do (``limits`` holds the shared
ones). Messages never contain passphrases or member content; member names appear only once
they passed the path checks. ``sidecar`` checks the optional ``.sha256`` file; ``writer``
makes the one ZIP form this project writes (AES-256).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tasks.core.archive.age import decrypt_age
from tasks.core.archive.limits import (
    AGE_ARMOR_BEGIN,
    AGE_IDENTITY_ENV,
    AGE_MAGIC,
    PASSPHRASE_ENV,
    ZIP_EMPTY_MAGIC,
    ZIP_MAGIC,
    ArchiveLimits,
)
from tasks.core.archive.sidecar import verify_sidecar
from tasks.core.archive.writer import aes_zip_bytes
from tasks.core.archive.zipread import read_zip
from tasks.core.errors import InputRejected

__all__ = [
    "AGE_IDENTITY_ENV",
    "PASSPHRASE_ENV",
    "ArchiveLimits",
    "Extract",
    "aes_zip_bytes",
    "decrypt_extract",
    "sha256_bytes",
    "verify_sidecar",
]


@dataclass(frozen=True)
class Extract:
    """The decrypted, checked extract, held in memory only."""

    sha256: str  # of the encrypted file bytes
    encryption: str  # "aes-zip" | "age"
    members: dict[str, bytes] = field(repr=False)  # base name -> plaintext bytes


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def decrypt_extract(
    data: bytes,
    file_name: str,
    *,
    passphrase: str | None,
    identity: str | None,
    limits: ArchiveLimits = ArchiveLimits(),  # noqa: B008 - frozen, immutable default
) -> Extract:
    """Decrypt ``data`` (the encrypted file's bytes) in memory and apply the archive checks."""
    digest = sha256_bytes(data)
    head = data[:64]
    if head.startswith((ZIP_MAGIC, ZIP_EMPTY_MAGIC)):
        members = read_zip(data, file_name, passphrase, limits, require_encryption=True)
        return Extract(sha256=digest, encryption="aes-zip", members=members)
    if head.startswith(AGE_MAGIC) or head.lstrip().startswith(AGE_ARMOR_BEGIN.encode()):
        plaintext = decrypt_age(data, file_name, passphrase, identity)
        if not plaintext.startswith((ZIP_MAGIC, ZIP_EMPTY_MAGIC)):
            raise InputRejected(
                "decrypted age content is not a ZIP archive; the age file must contain "
                "a ZIP of the CSV or XLSX files",
                file=file_name,
            )
        members = read_zip(plaintext, file_name, passphrase, limits, require_encryption=False)
        return Extract(sha256=digest, encryption="age", members=members)
    raise InputRejected(
        "not an AES-256 ZIP or age file (its content has neither a ZIP nor an age header); "
        "send the extract as a password-protected AES-256 ZIP or an age file",
        file=file_name,
    )
