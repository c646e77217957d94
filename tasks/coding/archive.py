"""Reading the ZIPs the coding round trip receives (a .qdpx, an .xlsx coding sheet) under the archive limits.

Neither is encrypted (unlike a delivery), but both come from outside: the directory checks of
``tasks.core.archive.entries`` (member count, unsafe paths, links, duplicates, nested archives,
compression methods, claimed sizes and ratios) apply, and every member read is decompressed
chunk by chunk under the total-size and ratio limits.
"""

from __future__ import annotations

import io
import zipfile

from tasks.core.archive.entries import ALLOWED_COMPRESSION, FLAG_ENCRYPTED, check_claimed_sizes, check_entries, is_junk
from tasks.core.archive.limits import (
    CHUNK_SIZE,
    ArchiveLimits,
    Budget,
    corrupt,
    ratio_exceeded,
    ratio_too_high,
    too_big,
    too_many,
)
from tasks.core.errors import InputRejected

PROJECT_FILE = "project.qde"
#: A project holds a member per source: more members than a delivery, each small.
QDPX_LIMITS = ArchiveLimits(max_members=2000, max_total_bytes=200 * 1024 * 1024)
WORKBOOK_LIMITS = ArchiveLimits(max_members=200, max_total_bytes=100 * 1024 * 1024)
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError, KeyError)


def read_qdpx(data: bytes, file_name: str, limits: ArchiveLimits = QDPX_LIMITS) -> dict[str, bytes]:
    """``project.qde`` and the ``sources/*.txt`` members of a .qdpx, by path, under the archive limits."""
    if not data.startswith(b"PK\x03\x04"):
        raise InputRejected("not a REFI-QDA project: a .qdpx is a ZIP archive; export the project "
                            "from the QDA tool as REFI-QDA (.qdpx)", file=file_name)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:
        raise corrupt(file_name, "project archive", _EXPORT_AGAIN) from None
    with archive:
        files = check_entries(archive.infolist(), file_name, limits, require_encryption=False)
        if any(info.flag_bits & FLAG_ENCRYPTED for info in files):
            raise InputRejected("the project archive has encrypted members; export it from the QDA tool "
                                "without a password", file=file_name)
        project = _project_member(files, file_name)
        wanted = [info for info in files if not is_junk(info.filename) and (
            info is project or (info.filename.lower().startswith("sources/")
                                and info.filename.lower().endswith(".txt")))]
        budget = Budget(limits.max_total_bytes, too_big(file_name, limits))
        members = {}
        for info in wanted:
            # the sources folder is "sources" or "Sources" depending on the tool
            name = PROJECT_FILE if info is project else "sources/" + info.filename.split("/", 1)[1]
            try:
                members[name] = _member(archive, info, budget, limits, file_name)
            except InputRejected:
                raise
            except _ZIP_ERRORS:
                raise corrupt(file_name, "project archive", _EXPORT_AGAIN) from None
    return members


_EXPORT_AGAIN = "export the project from the QDA tool as REFI-QDA (.qdpx) again"


def _project_member(files: list[zipfile.ZipInfo], file_name: str) -> zipfile.ZipInfo:
    """``project.qde``, or the one ``*.qde`` at the top of the archive (some tools name it after the project)."""
    top = [info for info in files if "/" not in info.filename and info.filename.lower().endswith(".qde")]
    named = [info for info in top if info.filename == PROJECT_FILE]
    if named or len(top) == 1:
        return (named or top)[0]
    raise InputRejected(f"the project archive has no {PROJECT_FILE}; export the project from the QDA tool "
                        "as REFI-QDA (.qdpx)", file=file_name)


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, limits: ArchiveLimits,
            file_name: str, keep: bool = True) -> bytes:
    """One member, decompressed chunk by chunk under the total size and ratio limits."""
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(CHUNK_SIZE):
            size += len(chunk)
            budget.add(len(chunk))
            if ratio_exceeded(size, info.compress_size, limits):
                raise ratio_too_high(file_name, limits, f"archive member {info.filename}")
            if keep:
                chunks.append(chunk)
    return b"".join(chunks)


def check_workbook(data: bytes, file_name: str, limits: ArchiveLimits = WORKBOOK_LIMITS) -> None:
    """An .xlsx is a ZIP: refuse one with too many parts, encryption, or parts that expand too far."""
    what = f"workbook {file_name}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as workbook:
            parts = [info for info in workbook.infolist() if not info.is_dir()]
            if len(workbook.infolist()) > limits.max_members:
                raise too_many(file_name, limits, what)
            if any(info.flag_bits & FLAG_ENCRYPTED or info.compress_type not in ALLOWED_COMPRESSION
                   for info in parts):
                raise InputRejected("the workbook uses encryption or compression that Excel does not write; "
                                    "re-save it from Excel as an ordinary .xlsx workbook", file=file_name)
            check_claimed_sizes(parts, file_name, limits, what)
            budget = Budget(limits.max_total_bytes, too_big(file_name, limits, what))
            for info in parts:
                _member(workbook, info, budget, limits, file_name, keep=False)
    except InputRejected:
        raise
    except _ZIP_ERRORS:
        raise corrupt(file_name, what) from None
