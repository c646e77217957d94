"""Open the encrypted extract in memory and refuse anything unsafe (spec extract-v1 §1, §4).

The extract arrives as ONE file: a WinZip-AES-256 ZIP, or an age file (passphrase or
X25519) whose plaintext is a ZIP. This module decides the format from the content's
magic bytes, decrypts it, applies the archive safety checks and returns the member
files as bytes. Nothing is ever written to disk: no temporary files, no extraction.

Checks, in order (all before any member content is returned, none parses table data):

1. Format: ZIP (``PK\\x03\\x04`` / empty ``PK\\x05\\x06``), binary age
   (``age-encryption.org/v1``) or ASCII-armored age; anything else is refused.
2. age: the header's recipient stanzas decide between passphrase (scrypt) and
   X25519 identity; the plaintext must itself be a ZIP.
3. Directory (headers only, nothing decrypted yet): entry count; member paths
   (no ``..``, absolute, drive-letter, backslash or control characters); links and
   other special files; duplicate names (exact, and base names case-insensitively);
   nested archives by extension; encryption (see below); compression method
   (Stored or Deflate only: bzip2/LZMA can expand far more per read chunk, so they
   cannot be bounded while streaming); the sizes and ratios the headers claim.
4. Streaming: every member is decompressed in 64 KiB chunks to the real end of its
   stream (not just to the size its header claims); the running total and each
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
one-sentence message that states what is wrong and what to do. Messages never contain
passphrases or member content; member names appear only once they passed the path checks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import io
import lzma
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
import pyzipper

from tasks.core.errors import InputRejected, SecretMissing

__all__ = [
    "AGE_IDENTITY_ENV",
    "PASSPHRASE_ENV",
    "ArchiveLimits",
    "Extract",
    "decrypt_extract",
    "sha256_bytes",
    "verify_sidecar",
]

PASSPHRASE_ENV = "CLUSTER_EVAL_EXTRACT_PASSPHRASE"  # noqa: S105 - a variable name
AGE_IDENTITY_ENV = "CLUSTER_EVAL_AGE_IDENTITY"

CHUNK_SIZE = 64 * 1024
_MIB = 1024 * 1024

_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EMPTY_MAGIC = b"PK\x05\x06"
_AGE_MAGIC = b"age-encryption.org/v1\n"
_AGE_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
_AGE_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"

_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_CENTRAL_DIR_ENCRYPTED = 0x2000
_ALLOWED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_AES_256 = 3
_AES_BITS = {1: 128, 2: 192}

_NESTED_SUFFIXES = (
    ".zip", ".age", ".7z", ".rar", ".gz", ".tgz", ".tar", ".bz2", ".tbz2", ".xz", ".txz",
    ".zst", ".lz", ".lzma", ".cab",
)
_NESTED_MAGICS = (
    b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08",  # zip
    b"\x1f\x8b",  # gzip
    b"7z\xbc\xaf\x27\x1c",  # 7z
    b"Rar!\x1a\x07",  # rar
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"age-encryption.org/",  # age
    _AGE_ARMOR_BEGIN.encode(),
)
_BZIP2_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")
_TAR_MAGIC_OFFSET = 257
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JUNK_BASENAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_AGE_KEY_LINE = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$")

# Everything a damaged ZIP can make zipfile/pyzipper/zlib raise while reading.
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    pyzipper.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,  # includes UnicodeDecodeError (names) and binascii.Error
    struct.error,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits of spec §4; the ratio limit applies once a member exceeds ``ratio_floor_bytes``
    (a few kilobytes cannot be a bomb, and tiny files compress erratically)."""

    max_members: int = 50
    max_total_bytes: int = 500 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Extract:
    """The decrypted, checked extract, held in memory only."""

    sha256: str  # of the encrypted file bytes
    encryption: str  # "aes-zip" | "age"
    members: dict[str, bytes] = field(repr=False)  # base name -> plaintext bytes


# --------------------------------------------------------------------------- helpers


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _size(n: int) -> str:
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MB"
    return f"{n:,} bytes"


def _ratio(limits: ArchiveLimits) -> str:
    return f"{limits.max_ratio:g}:1"


def _corrupt(file: str, what: str = "archive") -> InputRejected:
    return InputRejected(
        f"{what} is corrupt or truncated; ask the sender to export the extract and send it again",
        file=file,
    )


def _too_many(file: str, limits: ArchiveLimits, what: str = "archive") -> InputRejected:
    return InputRejected(
        f"{what} has more than {limits.max_members} members, which is not allowed; "
        "send at most one CSV per table or one XLSX workbook",
        file=file,
    )


def _too_big(file: str, limits: ArchiveLimits, what: str = "archive") -> InputRejected:
    return InputRejected(
        f"{what} expands to more than {_size(limits.max_total_bytes)}, which is over the limit; "
        "send only the tables the specification asks for",
        file=file,
    )


def _ratio_too_high(file: str, limits: ArchiveLimits, what: str) -> InputRejected:
    return InputRejected(
        f"{what} is compressed more than {_ratio(limits)}, which looks like a zip bomb; "
        "re-export the extract without it",
        file=file,
    )


def _ratio_exceeded(output: int, compressed: int, limits: ArchiveLimits) -> bool:
    return output > limits.ratio_floor_bytes and output > limits.max_ratio * max(compressed, 1)


class _Budget:
    """Running total of decompressed bytes across an archive."""

    def __init__(self, limit: int, on_exceed: InputRejected) -> None:
        self.limit, self.total, self._error = limit, 0, on_exceed

    def add(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise self._error


# --------------------------------------------------------------------------- sidecar


def verify_sidecar(path: Path, sha256: str) -> None:
    """If ``<path>.sha256`` exists it must hold ``sha256`` (sha256sum or BSD tag format)."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    with sidecar.open("rb") as fh:
        raw = fh.read(64 * 1024 + 1)
    bad_format = InputRejected(
        f"checksum file {sidecar.name} is not in sha256sum format; "
        "send it as produced by 'sha256sum' or leave it out",
        file=path.name,
    )
    if len(raw) > 64 * 1024:
        raise bad_format
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_format from None
    entries: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        bsd = re.fullmatch(r"SHA256 \((.*)\) = ([0-9A-Fa-f]{64})", line)
        gnu = re.fullmatch(r"\\?([0-9A-Fa-f]{64})(?:\s+\*?(.*))?", line)
        if bsd:
            entries.append((bsd.group(2).lower(), bsd.group(1)))
        elif gnu:
            entries.append((gnu.group(1).lower(), gnu.group(2)))
        else:
            raise bad_format
    if not entries:
        raise bad_format
    named = [digest for digest, name in entries if name is not None and
             Path(name.replace("\\", "/")).name == path.name]
    if named:
        expected = named[0]
    elif len(entries) == 1:
        expected = entries[0][0]  # one checksum, maybe taken before the file was renamed
    else:
        raise InputRejected(
            f"checksum file {sidecar.name} has no line for this archive; "
            "send a checksum file that names it",
            file=path.name,
        )
    if expected != sha256.lower():
        raise InputRejected(
            f"checksum mismatch: the archive's SHA-256 does not match {sidecar.name}, so it "
            "was damaged or altered in transit; ask the sender to send both files again",
            file=path.name,
        )


# --------------------------------------------------------------------------- entry point


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
    if head.startswith((_ZIP_MAGIC, _ZIP_EMPTY_MAGIC)):
        members = _read_zip(data, file_name, passphrase, limits, require_encryption=True)
        return Extract(sha256=digest, encryption="aes-zip", members=members)
    if head.startswith(_AGE_MAGIC) or head.lstrip().startswith(_AGE_ARMOR_BEGIN.encode()):
        plaintext = _decrypt_age(data, file_name, passphrase, identity)
        if not plaintext.startswith((_ZIP_MAGIC, _ZIP_EMPTY_MAGIC)):
            raise InputRejected(
                "decrypted age content is not a ZIP archive; the age file must contain "
                "a ZIP of the CSV or XLSX files",
                file=file_name,
            )
        members = _read_zip(plaintext, file_name, passphrase, limits, require_encryption=False)
        return Extract(sha256=digest, encryption="age", members=members)
    raise InputRejected(
        "not an AES-256 ZIP or age file (its content has neither a ZIP nor an age header); "
        "send the extract as a password-protected AES-256 ZIP or an age-encrypted file",
        file=file_name,
    )


# --------------------------------------------------------------------------- age


def _dearmor(data: bytes, file: str) -> bytes:
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _corrupt(file, "age file") from None
    lines = [line.strip() for line in text.splitlines()]
    if len(lines) < 2 or lines[0] != _AGE_ARMOR_BEGIN or lines[-1] != _AGE_ARMOR_END:
        raise _corrupt(file, "age file")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise _corrupt(file, "age file") from None


def _age_stanza_types(binary: bytes, file: str) -> list[str]:
    """Recipient stanza types from a binary age header (``scrypt``, ``X25519``, ...)."""
    end = binary.find(b"\n---")
    if not binary.startswith(_AGE_MAGIC) or end < 0:
        raise _corrupt(file, "age file")
    types = []
    for line in binary[len(_AGE_MAGIC):end].split(b"\n"):
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            types.append(parts[0].decode("ascii", "replace"))
    if not types:
        raise _corrupt(file, "age file")
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


def _decrypt_age(data: bytes, file: str, passphrase: str | None, identity: str | None) -> bytes:
    binary = data if data.startswith(_AGE_MAGIC) else _dearmor(data, file)
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
        raise _corrupt(file, "age file") from None
    except Exception:  # anything else pyrage may raise on damaged input
        raise _corrupt(file, "age file") from None


# --------------------------------------------------------------------------- zip


def _check_path(name: str, file: str) -> None:
    parts = name.rstrip("/").split("/")
    if (
        not name
        or "\\" in name
        or _CONTROL.search(name)
        or name.startswith("/")
        or _DRIVE.match(name)
        or ".." in parts
    ):
        raise InputRejected(
            "archive has a member with an unsafe path (absolute, '..', backslash or control "
            "characters); re-export it with plain relative file names",
            file=file,
        )


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].lower()
    return name.startswith("__MACOSX/") or base in _JUNK_BASENAMES or base.startswith("._")


def _check_entries(
    infos: list[zipfile.ZipInfo], file: str, limits: ArchiveLimits, *, require_encryption: bool
) -> list[zipfile.ZipInfo]:
    """Directory-only checks; returns the file members (directories dropped)."""
    if len(infos) > limits.max_members:
        raise _too_many(file, limits)
    for info in infos:  # paths first: later messages may name members
        _check_path(info.orig_filename, file)  # a NUL (truncated name) is a control char
    files: list[zipfile.ZipInfo] = []
    seen: set[str] = set()
    seen_base: set[str] = set()
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InputRejected(
                f"archive member {name} is a symbolic link or special file, which is not "
                "allowed; re-export the extract with ordinary files only",
                file=file,
            )
        if name in seen:
            raise InputRejected(
                f"archive has two members named {name}; re-export it with each file once",
                file=file,
            )
        seen.add(name)
        if info.is_dir() or (kind == stat.S_IFDIR and info.file_size == 0):
            if info.file_size:
                raise _corrupt(file)
            continue
        base = name.rsplit("/", 1)[-1]
        if not _is_junk(name):
            if base.lower() in seen_base:
                raise InputRejected(
                    f"archive has more than one member named {base} (in different folders or "
                    "letter case); keep one file per table",
                    file=file,
                )
            seen_base.add(base.lower())
            if base.lower().endswith(_NESTED_SUFFIXES):
                raise _nested(name, file)
        files.append(info)

    for info in files:
        flags = info.flag_bits
        aes_version = getattr(info, "wz_aes_version", None)
        if flags & (_FLAG_STRONG_ENCRYPTION | _FLAG_CENTRAL_DIR_ENCRYPTED):
            raise InputRejected(
                "archive uses PKWARE strong encryption, which is not supported; "
                "re-send as AES-256 ZIP or age",
                file=file,
            )
        if flags & _FLAG_ENCRYPTED and aes_version is None:
            raise InputRejected(
                "archive uses legacy ZipCrypto, which is broken; re-send as AES-256 ZIP or age",
                file=file,
            )
        if aes_version is not None:
            if not flags & _FLAG_ENCRYPTED or aes_version not in (1, 2) or (
                getattr(info, "wz_aes_vendor_id", None) != b"AE"
            ):
                raise _corrupt(file)
            strength = getattr(info, "wz_aes_strength", None)
            if strength != _AES_256:
                if strength not in _AES_BITS:
                    raise _corrupt(file)
                raise InputRejected(
                    f"archive uses AES-{_AES_BITS[strength]} encryption, which is too weak; "
                    "re-send it encrypted with AES-256 (in 7-Zip: ZIP format, AES-256)",
                    file=file,
                )
    if require_encryption:
        plain = [info for info in files if not info.flag_bits & _FLAG_ENCRYPTED]
        if plain and len(plain) == len(files):
            raise InputRejected(
                "archive is not encrypted; only AES-256 ZIP or age are accepted, so re-send it "
                "as a password-protected AES-256 ZIP or an age file",
                file=file,
            )
        if plain:
            raise InputRejected(
                f"archive is only partly encrypted (member {plain[0].filename} is not "
                "encrypted); only AES-256 ZIP or age are accepted, so re-send it with every "
                "file encrypted",
                file=file,
            )
    for info in files:
        if info.compress_type not in _ALLOWED_COMPRESSION:
            raise InputRejected(
                f"archive member {info.filename} uses a compression method other than Deflate "
                "or Stored, which is not accepted; re-export the ZIP with Deflate",
                file=file,
            )
    _check_claimed_sizes(files, file, limits)
    return files


def _check_claimed_sizes(
    files: Iterable[zipfile.ZipInfo], file: str, limits: ArchiveLimits, what: str = "archive"
) -> None:
    """Refuse early when the headers already claim too much (streaming re-checks it)."""
    files = list(files)
    if sum(info.file_size for info in files) > limits.max_total_bytes:
        raise _too_big(file, limits, what)
    for info in files:
        if _ratio_exceeded(info.file_size, info.compress_size, limits):
            label = f"archive member {info.filename}" if what == "archive" else what
            raise _ratio_too_high(file, limits, label)


def _nested(name: str, file: str) -> InputRejected:
    return InputRejected(
        f"archive member {name} is itself an archive, and nested archives are not accepted; "
        "put the CSV or XLSX files directly in the extract",
        file=file,
    )


def _stream(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    pwd: bytes | None,
    budget: _Budget,
    limits: ArchiveLimits,
    ratio_error: InputRejected,
    *,
    keep: bool,
) -> bytes:
    """Decompress one member chunk by chunk, enforcing total size and ratio as it goes."""
    # zipfile/pyzipper silently stop at the size the header claims, and with WinZip AE-2
    # (no CRC) a header that understates the size would truncate the member unnoticed.
    # So decompress to the real end of the stream, bounded only by our own limits, and
    # compare with the claim afterwards.
    opened = copy.copy(info)
    opened.file_size = max(info.file_size, limits.max_total_bytes) + 1
    chunks: list[bytes] = []
    output = 0
    with zf.open(opened, pwd=pwd) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            output += len(chunk)
            budget.add(len(chunk))
            if _ratio_exceeded(output, info.compress_size, limits):
                raise ratio_error
            if keep:
                chunks.append(chunk)
    if output != info.file_size:
        raise zipfile.BadZipFile("size differs from the header")
    return b"".join(chunks)


def _is_nested_content(content: bytes) -> bool:
    return (
        content.startswith(_NESTED_MAGICS)
        or _BZIP2_MAGIC.match(content) is not None
        or content[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar"
    )


def _read_zip(
    data: bytes,
    file: str,
    passphrase: str | None,
    limits: ArchiveLimits,
    *,
    require_encryption: bool,
) -> dict[str, bytes]:
    try:
        zf = pyzipper.AESZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        raise _corrupt(file) from None
    with zf:
        files = _check_entries(zf.infolist(), file, limits, require_encryption=require_encryption)
        wanted = [info for info in files if not _is_junk(info.filename)]
        if not wanted:
            raise InputRejected(
                "archive contains no tables; send one CSV per table or one XLSX workbook",
                file=file,
            )
        if any(info.flag_bits & _FLAG_ENCRYPTED for info in wanted) and not passphrase:
            raise SecretMissing(
                "no passphrase was given for this encrypted archive; set the environment "
                f"variable {PASSPHRASE_ENV} to the passphrase sent separately",
                file=file,
            )
        pwd = passphrase.encode("utf-8") if passphrase else None
        budget = _Budget(limits.max_total_bytes, _too_big(file, limits))
        contents: dict[str, bytes] = {}
        for info in wanted:
            ratio_error = _ratio_too_high(file, limits, f"archive member {info.filename}")
            try:
                content = _stream(zf, info, pwd, budget, limits, ratio_error, keep=True)
            except InputRejected:
                raise
            except RuntimeError:  # pyzipper: "Bad password for file ..."
                raise InputRejected(
                    f"wrong passphrase: the archive cannot be decrypted with {PASSPHRASE_ENV}; "
                    "check the passphrase the sender gave separately",
                    file=file,
                ) from None
            except _ZIP_ERRORS:
                raise _corrupt(file) from None
            contents[info.filename] = content

    members: dict[str, bytes] = {}
    for name, content in contents.items():
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(".xlsx"):
            _check_xlsx(base, content, file, limits)
        elif _is_nested_content(content):
            raise _nested(name, file)
        members[base] = content
    return members


def _check_xlsx(name: str, content: bytes, file: str, limits: ArchiveLimits) -> None:
    """An .xlsx is a ZIP: apply member count, size and ratio limits to its parts, streamed."""
    what = f"workbook {name}"
    if not content.startswith(_ZIP_MAGIC):
        raise InputRejected(
            f"{what} is not a valid XLSX file (it may be password-protected or an old .xls); "
            "re-save it as an ordinary .xlsx workbook without a password",
            file=file,
        )
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as inner:
            parts = [info for info in inner.infolist() if not info.is_dir()]
            if len(inner.infolist()) > limits.max_members:
                raise _too_many(file, limits, what)
            for info in parts:
                if info.flag_bits & _FLAG_ENCRYPTED or info.compress_type not in (
                    _ALLOWED_COMPRESSION
                ):
                    raise InputRejected(
                        f"{what} uses encryption or compression that Excel does not write; "
                        "re-save it from Excel as an ordinary .xlsx workbook",
                        file=file,
                    )
            _check_claimed_sizes(parts, file, limits, what)
            budget = _Budget(limits.max_total_bytes, _too_big(file, limits, what))
            ratio_error = _ratio_too_high(file, limits, what)
            for info in parts:
                _stream(inner, info, None, budget, limits, ratio_error, keep=False)
    except InputRejected:
        raise
    except _ZIP_ERRORS:
        raise _corrupt(file, what) from None


def aes_zip_bytes(members: Mapping[str, bytes], passphrase: str) -> bytes:
    """Pack members into a WinZip AES-256 encrypted ZIP, in memory (the only form we write)."""
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(buffer, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(passphrase.encode("utf-8"))
        archive.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
