"""Archive limits, the format magics and the refusals that every archive check shares."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core.errors import InputRejected

PASSPHRASE_ENV = "CLUSTER_EVAL_EXTRACT_PASSPHRASE"  # noqa: S105 - a variable name
AGE_IDENTITY_ENV = "CLUSTER_EVAL_AGE_IDENTITY"

CHUNK_SIZE = 64 * 1024
_MIB = 1024 * 1024

ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
AGE_MAGIC = b"age-encryption.org/v1\n"
AGE_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits of spec §4; the ratio limit applies once a member exceeds ``ratio_floor_bytes``
    (a few kilobytes cannot be a bomb, and tiny files compress erratically)."""

    max_members: int = 50
    max_total_bytes: int = 500 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 64 * 1024


class Budget:
    """Running total of decompressed bytes across an archive."""

    def __init__(self, limit: int, on_exceed: InputRejected) -> None:
        self.limit, self.total, self._error = limit, 0, on_exceed

    def add(self, n: int) -> None:
        """Count ``n`` more bytes; raise the refusal once the total is over the limit."""
        self.total += n
        if self.total > self.limit:
            raise self._error


def ratio_exceeded(output: int, compressed: int, limits: ArchiveLimits) -> bool:
    """Whether ``output`` bytes from ``compressed`` bytes is over the ratio limit."""
    return output > limits.ratio_floor_bytes and output > limits.max_ratio * max(compressed, 1)


def _size(n: int) -> str:
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MB"
    return f"{n:,} bytes"


def _ratio(limits: ArchiveLimits) -> str:
    return f"{limits.max_ratio:g}:1"


def corrupt(file: str, what: str = "archive", remedy: str = "ask the sender to export the extract and send it again"
            ) -> InputRejected:
    """The refusal of a damaged archive (or age file, or workbook); ``remedy`` says what to do."""
    return InputRejected(f"{what} is corrupt or truncated; {remedy}", file=file)


def too_many(file: str, limits: ArchiveLimits, what: str = "archive") -> InputRejected:
    """The refusal of an archive with more members than allowed."""
    return InputRejected(
        f"{what} has more than {limits.max_members} members, which is not allowed; "
        "send at most one CSV per table or one XLSX workbook",
        file=file,
    )


def too_big(file: str, limits: ArchiveLimits, what: str = "archive") -> InputRejected:
    """The refusal of an archive that expands past the total size limit."""
    return InputRejected(
        f"{what} expands to more than {_size(limits.max_total_bytes)}, which is over the limit; "
        "send only the tables the specification asks for",
        file=file,
    )


def ratio_too_high(file: str, limits: ArchiveLimits, what: str) -> InputRejected:
    """The refusal of a member compressed past the ratio limit (a zip bomb)."""
    return InputRejected(
        f"{what} is compressed more than {_ratio(limits)}, which looks like a zip bomb; "
        "re-export the extract without it",
        file=file,
    )


def nested(name: str, file: str) -> InputRejected:
    """The refusal of a member that is itself an archive."""
    return InputRejected(
        f"archive member {name} is itself an archive, and nested archives are not accepted; "
        "put the CSV or XLSX files directly in the extract",
        file=file,
    )
