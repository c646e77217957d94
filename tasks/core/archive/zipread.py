"""Read a ZIP's members in memory, each streamed under the limits: steps 4 and 5 of the package docstring."""

from __future__ import annotations

import copy
import io
import lzma
import re
import struct
import zipfile
import zlib

import pyzipper

from tasks.core.archive.entries import ALLOWED_COMPRESSION, FLAG_ENCRYPTED, check_claimed_sizes, check_entries, is_junk
from tasks.core.archive.limits import (
    AGE_ARMOR_BEGIN,
    CHUNK_SIZE,
    PASSPHRASE_ENV,
    ZIP_MAGIC,
    ArchiveLimits,
    Budget,
    corrupt,
    nested,
    ratio_exceeded,
    ratio_too_high,
    too_big,
    too_many,
)
from tasks.core.errors import InputRejected, SecretMissing

_NESTED_MAGICS = (
    b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08",  # zip
    b"\x1f\x8b",  # gzip
    b"7z\xbc\xaf\x27\x1c",  # 7z
    b"Rar!\x1a\x07",  # rar
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"age-encryption.org/",  # age
    AGE_ARMOR_BEGIN.encode(),
)
_OFFICE_SUFFIXES = (".xlsx", ".docx")  # Office Open XML: a ZIP of parts, checked like one
_BZIP2_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")
_TAR_MAGIC_OFFSET = 257

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


def read_zip(
    data: bytes,
    file: str,
    passphrase: str | None,
    limits: ArchiveLimits,
    *,
    require_encryption: bool,
) -> dict[str, bytes]:
    """Check a ZIP's directory, then decrypt and stream its tables; base name -> bytes."""
    try:
        zf = pyzipper.AESZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        raise corrupt(file) from None
    with zf:
        files = check_entries(zf.infolist(), file, limits, require_encryption=require_encryption)
        wanted = [info for info in files if not is_junk(info.filename)]
        if not wanted:
            raise InputRejected(
                "archive contains no tables; send one CSV per table or one XLSX workbook",
                file=file,
            )
        if any(info.flag_bits & FLAG_ENCRYPTED for info in wanted) and not passphrase:
            raise SecretMissing(
                "no passphrase was given for this encrypted archive; set the environment "
                f"variable {PASSPHRASE_ENV} to the passphrase sent separately",
                file=file,
            )
        pwd = passphrase.encode("utf-8") if passphrase else None
        contents = _decompress_all(zf, wanted, pwd, file, limits)
    return _checked_members(contents, file, limits)


def _decompress_all(zf: zipfile.ZipFile, wanted: list[zipfile.ZipInfo], pwd: bytes | None,
                    file: str, limits: ArchiveLimits) -> dict[str, bytes]:
    """Every wanted member's plaintext by its path in the archive, under one size budget."""
    budget = Budget(limits.max_total_bytes, too_big(file, limits))
    contents: dict[str, bytes] = {}
    for info in wanted:
        ratio_error = ratio_too_high(file, limits, f"archive member {info.filename}")
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
            raise corrupt(file) from None
        contents[info.filename] = content
    return contents


def _checked_members(contents: dict[str, bytes], file: str, limits: ArchiveLimits) -> dict[str, bytes]:
    """Members by base name, once none turns out to be a nested archive by its content."""
    members: dict[str, bytes] = {}
    for name, content in contents.items():
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(_OFFICE_SUFFIXES):  # Office files are ZIPs by design
            _check_xlsx(base, content, file, limits)
        elif _is_nested_content(content):
            raise nested(name, file)
        members[base] = content
    return members


def _stream(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    pwd: bytes | None,
    budget: Budget,
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
    kept = io.BytesIO()  # grows in place; getvalue() hands over its buffer without a copy
    output = 0
    with zf.open(opened, pwd=pwd) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            output += len(chunk)
            budget.add(len(chunk))
            if ratio_exceeded(output, info.compress_size, limits):
                raise ratio_error
            if keep:
                kept.write(chunk)
    if output != info.file_size:
        raise zipfile.BadZipFile("size differs from the header")
    return kept.getvalue()


def _is_nested_content(content: bytes) -> bool:
    return (
        content.startswith(_NESTED_MAGICS)
        or _BZIP2_MAGIC.match(content) is not None
        or content[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar"
    )


def _check_xlsx(name: str, content: bytes, file: str, limits: ArchiveLimits) -> None:
    """An .xlsx (or .docx) is a ZIP: apply member count, size and ratio limits to its parts, streamed."""
    word = name.lower().endswith(".docx")
    what = f"document {name}" if word else f"workbook {name}"
    if not content.startswith(ZIP_MAGIC):
        raise InputRejected(
            f"{what} is not a valid DOCX file (it may be password-protected or an old .doc); "
            "re-save it as an ordinary .docx document without a password" if word else
            f"{what} is not a valid XLSX file (it may be password-protected or an old .xls); "
            "re-save it as an ordinary .xlsx workbook without a password",
            file=file,
        )
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as inner:
            parts = [info for info in inner.infolist() if not info.is_dir()]
            if len(inner.infolist()) > limits.max_members:
                raise too_many(file, limits, what)
            for info in parts:
                if info.flag_bits & FLAG_ENCRYPTED or info.compress_type not in ALLOWED_COMPRESSION:
                    raise InputRejected(
                        f"{what} uses encryption or compression that Excel does not write; "
                        "re-save it from Excel as an ordinary .xlsx workbook",
                        file=file,
                    )
            check_claimed_sizes(parts, file, limits, what)
            budget = Budget(limits.max_total_bytes, too_big(file, limits, what))
            ratio_error = ratio_too_high(file, limits, what)
            for info in parts:
                _stream(inner, info, None, budget, limits, ratio_error, keep=False)
    except InputRejected:
        raise
    except _ZIP_ERRORS:
        raise corrupt(file, what) from None
