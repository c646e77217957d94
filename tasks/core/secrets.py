"""Secrets and keys: environment, a 0600 key file, or a Prefect Secret block — never arguments.

Lookup order for a secret NAME: environment variable ``CLUSTER_EVAL_<NAME>``, key file
``CLUSTER_EVAL_HOME/keys/<name>`` (must be mode 0600), Prefect Secret block
``cluster-eval-<name>`` (only when a Prefect API is configured).
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from tasks.core.archive import AGE_IDENTITY_ENV
from tasks.core.errors import ConfigError
from tasks.core.home import Home, create_private_exclusive

KEY_BYTES = 32
PSEUDONYM_KEY = "pseudonym_key"
CONTACT_KEY = "contact_key"
EXTRACT_PASSPHRASE = "extract_passphrase"  # noqa: S105 - a secret name, not a secret
SMTP_PASSWORD = "smtp_password"  # noqa: S105
PACK_PASSPHRASE = "pack_passphrase"  # noqa: S105
PARTICIPANT_KEY = "participant_key"  # names of the qualitative register (qualitative-v1.md §1)
TRANSCRIPT_KEY = "transcript_key"  # de-identified transcript turns (qualitative-v1.md §3)
AUDIT_KEY = "audit_key"  # HMAC key of the audit chain; outlives the final retention sweep


def _env_name(name: str) -> str:
    return f"CLUSTER_EVAL_{name.upper()}"


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"key file {path} has mode {mode:o}; run: chmod 600 {path}")
    return path.read_bytes().strip()


def _prefect_secret(name: str, environ: Mapping[str, str]) -> str | None:
    if not environ.get("PREFECT_API_URL"):
        return None
    try:
        from prefect.blocks.system import Secret

        # Called outside an event loop, load() returns the block itself; Prefect's async_dispatch
        # types the result as "block or coroutine", so narrow it here.
        block = cast("Secret[str]", Secret.load(f"cluster-eval-{name.replace('_', '-')}"))
        return str(block.get())
    except (ValueError, RuntimeError, OSError):
        return None


def get_secret(name: str, home: Home, environ: Mapping[str, str]) -> str | None:
    """Return a secret string from env, 0600 key file or Prefect Secret block, else None.

    ``environ`` is the snapshot taken where the process starts (``Secrets``), never read here.
    """
    value = environ.get(_env_name(name))
    if value:
        return value
    path = home.keys / name
    if path.is_file():
        return _read_key_file(path).decode("utf-8")
    return _prefect_secret(name, environ)


def load_or_create_key(name: str, home: Home, environ: Mapping[str, str]) -> tuple[bytes, bool]:
    """Return a 256-bit key (base64 in env/file/block) and whether it was just created."""
    existing = get_secret(name, home, environ)
    if existing:
        try:
            key = base64.urlsafe_b64decode(existing.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ConfigError(f"secret {name} is not a base64 key of {KEY_BYTES} bytes") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"secret {name} is not a base64 key of {KEY_BYTES} bytes")
        return key, False
    key = secrets.token_bytes(KEY_BYTES)
    if create_private_exclusive(home.keys / name, base64.urlsafe_b64encode(key)):
        return key, True
    return load_or_create_key(name, home, environ)[0], False  # a concurrent run created it


def require_key(name: str, home: Home, environ: Mapping[str, str]) -> bytes:
    """Return an existing key, or raise ConfigError when it is missing (never create)."""
    existing = get_secret(name, home, environ)
    if not existing:
        raise ConfigError(
            f"key {name} is missing (expected {home.keys / name} or {_env_name(name)}); "
            "it may have been destroyed by the retention schedule"
        )
    key, _ = load_or_create_key(name, home, environ)
    return key



def secret_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables secrets are looked up in, copied once where the process starts."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith("CLUSTER_EVAL_") or k == "PREFECT_API_URL"}


@dataclass(frozen=True)
class Secrets:
    """Secret lookup for one process: a snapshot of its environment, the key folder, Prefect blocks.

    Built once by ``open_runtime``; nothing else reads the environment for a secret.
    """

    home: Home
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> str | None:
        """A secret string, or None when it is nowhere to be found."""
        return get_secret(name, self.home, self.environ)

    def exists(self, name: str) -> bool:
        """Whether the secret can be found (env, key file or Prefect block)."""
        return bool(self.get(name))

    def key(self, name: str) -> bytes:
        """An existing 256-bit key, or a one-line ConfigError (never creates one)."""
        return require_key(name, self.home, self.environ)

    def key_if_any(self, name: str) -> bytes | None:
        """An existing key, or None when it does not exist (yet)."""
        return self.key(name) if self.exists(name) else None

    def key_or_create(self, name: str) -> tuple[bytes, bool]:
        """A 256-bit key, created 0600 on first use; and whether this call created it."""
        return load_or_create_key(name, self.home, self.environ)

    def passphrase_or_create(self, name: str) -> tuple[str, bool]:
        """A passphrase secret, or a new random one in a 0600 key file; and whether it was created."""
        existing = self.get(name)
        if existing:
            return existing, False
        passphrase = secrets.token_urlsafe(24)
        if create_private_exclusive(self.home.keys / name, passphrase.encode("ascii")):
            return passphrase, True
        return self.passphrase_or_create(name)[0], False  # a concurrent run created it

    def age_identity(self) -> str | None:
        """The age identity file named by CLUSTER_EVAL_AGE_IDENTITY, read; None when unset."""
        named = self.environ.get(AGE_IDENTITY_ENV)
        if not named:
            return None
        path = Path(named)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigError(
                f"age identity file {path} (from {AGE_IDENTITY_ENV}) cannot be read; "
                "point it at the evaluation team's age identity file"
            ) from None
