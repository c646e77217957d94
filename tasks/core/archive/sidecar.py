"""The optional ``<file>.sha256`` sidecar: the delivered archive must match its checksum."""

from __future__ import annotations

import re
from pathlib import Path

from tasks.core.errors import InputRejected

_MAX_SIDECAR_BYTES = 64 * 1024
_BSD_LINE = re.compile(r"SHA256 \((.*)\) = ([0-9A-Fa-f]{64})")
_GNU_LINE = re.compile(r"\\?([0-9A-Fa-f]{64})(?:\s+\*?(.*))?")


def verify_sidecar(path: Path, sha256: str) -> None:
    """If ``<path>.sha256`` exists it must hold ``sha256`` (sha256sum or BSD tag format)."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    bad_format = InputRejected(
        f"checksum file {sidecar.name} is not in sha256sum format; "
        "send it as produced by 'sha256sum' or leave it out",
        file=path.name,
    )
    entries = _checksum_entries(_read_text(sidecar, bad_format), bad_format)
    expected = _expected_digest(entries, path, sidecar)
    if expected != sha256.lower():
        raise InputRejected(
            f"checksum mismatch: the archive's SHA-256 does not match {sidecar.name}, so it "
            "was damaged or altered in transit; ask the sender to send both files again",
            file=path.name,
        )


def _read_text(sidecar: Path, bad_format: InputRejected) -> str:
    with sidecar.open("rb") as fh:
        raw = fh.read(_MAX_SIDECAR_BYTES + 1)
    if len(raw) > _MAX_SIDECAR_BYTES:
        raise bad_format
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_format from None


def _checksum_entries(text: str, bad_format: InputRejected) -> list[tuple[str, str | None]]:
    """(digest, file name if given) of every checksum line; comments and blank lines skipped."""
    entries: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        bsd = _BSD_LINE.fullmatch(line)
        gnu = _GNU_LINE.fullmatch(line)
        if bsd:
            entries.append((bsd.group(2).lower(), bsd.group(1)))
        elif gnu:
            entries.append((gnu.group(1).lower(), gnu.group(2)))
        else:
            raise bad_format
    if not entries:
        raise bad_format
    return entries


def _expected_digest(entries: list[tuple[str, str | None]], path: Path, sidecar: Path) -> str:
    named = [digest for digest, name in entries if name is not None and
             Path(name.replace("\\", "/")).name == path.name]
    if named:
        return named[0]
    if len(entries) == 1:
        return entries[0][0]  # one checksum, maybe taken before the file was renamed
    raise InputRejected(
        f"checksum file {sidecar.name} has no line for this archive; "
        "send a checksum file that names it",
        file=path.name,
    )
