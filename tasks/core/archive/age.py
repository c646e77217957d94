"""Decrypt an age file (passphrase or X25519 identity) in memory."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

import pyrage

from tasks.core.archive.limits import AGE_ARMOR_BEGIN, AGE_IDENTITY_ENV, AGE_MAGIC, PASSPHRASE_ENV, corrupt
from tasks.core.errors import InputRejected, SecretMissing

_AGE_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
_AGE_KEY_LINE = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$")


def decrypt_age(data: bytes, file: str, passphrase: str | None, identity: str | None) -> bytes:
    """The plaintext of a binary or armored age file, decrypted as its recipient stanzas say."""
    binary = data if data.startswith(AGE_MAGIC) else _dearmor(data, file)
    types = _age_stanza_types(binary, file)
    if "scrypt" in types:
        if not passphrase:
            raise SecretMissing(
                "no passphrase was given for this passphrase-encrypted age file; set the "
                f"environment variable {PASSPHRASE_ENV} to the passphrase sent separately",
                file=file,
            )
        wrong = InputRejected(
            f"wrong passphrase: the age file cannot be decrypted with {PASSPHRASE_ENV}; "
            "check the passphrase the sender gave separately",
            file=file,
        )
        return _pyrage_call(lambda: pyrage.passphrase.decrypt(binary, passphrase), wrong, file)
    if "X25519" in types:
        if not identity:
            raise SecretMissing(
                "no age identity was given for this age file encrypted to a public key; "
                f"set {AGE_IDENTITY_ENV} to the evaluation team's age identity file",
                file=file,
            )
        ids = _identities(identity, file)
        wrong = InputRejected(
            f"wrong age identity: no key in {AGE_IDENTITY_ENV} can decrypt this file; "
            "check that the sender encrypted it to the evaluation team's public key",
            file=file,
        )
        return _pyrage_call(lambda: pyrage.decrypt(binary, ids), wrong, file)
    raise InputRejected(
        "age file is encrypted to an unsupported recipient type; ask the sender to use a "
        "passphrase or the evaluation team's X25519 public key",
        file=file,
    )


def _dearmor(data: bytes, file: str) -> bytes:
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise corrupt(file, "age file") from None
    lines = [line.strip() for line in text.splitlines()]
    if len(lines) < 2 or lines[0] != AGE_ARMOR_BEGIN or lines[-1] != _AGE_ARMOR_END:
        raise corrupt(file, "age file")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise corrupt(file, "age file") from None


def _age_stanza_types(binary: bytes, file: str) -> list[str]:
    """Recipient stanza types from a binary age header (``scrypt``, ``X25519``, ...)."""
    end = binary.find(b"\n---")
    if not binary.startswith(AGE_MAGIC) or end < 0:
        raise corrupt(file, "age file")
    types = []
    for line in binary[len(AGE_MAGIC):end].split(b"\n"):
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            types.append(parts[0].decode("ascii", "replace"))
    if not types:
        raise corrupt(file, "age file")
    return types


def _identities(identity: str, file: str) -> list[pyrage.x25519.Identity]:
    keys = [line.strip() for line in identity.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    bad = InputRejected(
        f"age identity in {AGE_IDENTITY_ENV} is not valid (it needs an AGE-SECRET-KEY-1... "
        "line); point it at the evaluation team's age identity file",
        file=file,
    )
    parsed = []
    for key in keys:
        if not _AGE_KEY_LINE.match(key.upper()):
            continue
        try:
            parsed.append(pyrage.x25519.Identity.from_str(key))
        except Exception:  # pyrage.IdentityError; never echo the key
            raise bad from None
    if not parsed:
        raise bad
    return parsed


def _pyrage_call(call: Callable[[], bytes], wrong: InputRejected, file: str) -> bytes:
    """Run a pyrage decryption and turn its errors into one clear refusal."""
    try:
        return call()
    except pyrage.DecryptError as err:
        # pyrage has one exception type; its (English) text tells key failure from damage.
        reason = str(err).lower()
        if "no matching keys" in reason or "decryption failed" in reason:
            raise wrong from None
        if "excessive work" in reason:
            raise InputRejected(
                "age passphrase work factor is too high to decrypt in reasonable time; ask the "
                "sender to re-encrypt with the default age settings",
                file=file,
            ) from None
        raise corrupt(file, "age file") from None
    except Exception:  # anything else pyrage may raise on damaged input
        raise corrupt(file, "age file") from None
