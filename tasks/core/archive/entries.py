"""Directory checks of a ZIP (headers only, nothing decrypted yet): step 3 of the package docstring."""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterable

from tasks.core.archive.limits import (
    ArchiveLimits,
    corrupt,
    nested,
    ratio_exceeded,
    ratio_too_high,
    too_big,
    too_many,
)
from tasks.core.errors import InputRejected

FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_CENTRAL_DIR_ENCRYPTED = 0x2000
ALLOWED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_AES_256 = 3
_AES_BITS = {1: 128, 2: 192}

_NESTED_SUFFIXES = (
    ".zip", ".age", ".7z", ".rar", ".gz", ".tgz", ".tar", ".bz2", ".tbz2", ".xz", ".txz",
    ".zst", ".lz", ".lzma", ".cab",
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JUNK_BASENAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def is_junk(name: str) -> bool:
    """Whether a member is OS clutter (``__MACOSX/``, ``.DS_Store``, ...), never decrypted."""
    base = name.rsplit("/", 1)[-1].lower()
    return name.startswith("__MACOSX/") or base in _JUNK_BASENAMES or base.startswith("._")


def check_entries(
    infos: list[zipfile.ZipInfo], file: str, limits: ArchiveLimits, *, require_encryption: bool
) -> list[zipfile.ZipInfo]:
    """Directory-only checks; returns the file members (directories dropped)."""
    if len(infos) > limits.max_members:
        raise too_many(file, limits)
    for info in infos:  # paths first: later messages may name members
        _check_path(info.orig_filename, file)  # a NUL (truncated name) is a control char
    files = _file_members(infos, file)
    for info in files:
        _check_encryption(info, file)
    if require_encryption:
        _check_all_encrypted(files, file)
    for info in files:
        if info.compress_type not in ALLOWED_COMPRESSION:
            raise InputRejected(
                f"archive member {info.filename} uses a compression method other than Deflate "
                "or Stored, which is not accepted; re-export the ZIP with Deflate",
                file=file,
            )
    check_claimed_sizes(files, file, limits)
    return files


def check_claimed_sizes(
    files: Iterable[zipfile.ZipInfo], file: str, limits: ArchiveLimits, what: str = "archive"
) -> None:
    """Refuse early when the headers already claim too much (streaming re-checks it)."""
    files = list(files)
    if sum(info.file_size for info in files) > limits.max_total_bytes:
        raise too_big(file, limits, what)
    for info in files:
        if ratio_exceeded(info.file_size, info.compress_size, limits):
            label = f"archive member {info.filename}" if what == "archive" else what
            raise ratio_too_high(file, limits, label)


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


def _file_members(infos: list[zipfile.ZipInfo], file: str) -> list[zipfile.ZipInfo]:
    """The file members: no links or special files, no duplicates, no archives by extension."""
    files: list[zipfile.ZipInfo] = []
    seen: set[str] = set()
    seen_base: set[str] = set()
    for info in infos:
        name = info.filename
        kind = stat.S_IFMT(info.external_attr >> 16)
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
                raise corrupt(file)
            continue
        if not is_junk(name):
            _check_table_name(name, seen_base, file)
        files.append(info)
    return files


def _check_table_name(name: str, seen_base: set[str], file: str) -> None:
    """One member per base name (any folder, any letter case), and not an archive by name."""
    base = name.rsplit("/", 1)[-1]
    if base.lower() in seen_base:
        raise InputRejected(
            f"archive has more than one member named {base} (in different folders or "
            "letter case); keep one file per table",
            file=file,
        )
    seen_base.add(base.lower())
    if base.lower().endswith(_NESTED_SUFFIXES):
        raise nested(name, file)


def _check_encryption(info: zipfile.ZipInfo, file: str) -> None:
    """Only WinZip AES-256 (or no encryption, judged by the caller): no ZipCrypto, strong or weak AES."""
    flags = info.flag_bits
    aes_version = getattr(info, "wz_aes_version", None)
    if flags & (_FLAG_STRONG_ENCRYPTION | _FLAG_CENTRAL_DIR_ENCRYPTED):
        raise InputRejected(
            "archive uses PKWARE strong encryption, which is not supported; "
            "re-send as AES-256 ZIP or age",
            file=file,
        )
    if flags & FLAG_ENCRYPTED and aes_version is None:
        raise InputRejected(
            "archive uses legacy ZipCrypto, which is broken; re-send as AES-256 ZIP or age",
            file=file,
        )
    if aes_version is None:
        return
    if not flags & FLAG_ENCRYPTED or aes_version not in (1, 2) or (
        getattr(info, "wz_aes_vendor_id", None) != b"AE"
    ):
        raise corrupt(file)
    strength = getattr(info, "wz_aes_strength", None)
    if strength != _AES_256:
        if strength not in _AES_BITS:
            raise corrupt(file)
        raise InputRejected(
            f"archive uses AES-{_AES_BITS[strength]} encryption, which is too weak; "
            "re-send it encrypted with AES-256 (in 7-Zip: ZIP format, AES-256)",
            file=file,
        )


def _check_all_encrypted(files: list[zipfile.ZipInfo], file: str) -> None:
    """A ZIP delivery must have every file member encrypted."""
    plain = [info for info in files if not info.flag_bits & FLAG_ENCRYPTED]
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
