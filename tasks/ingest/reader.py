"""Read the extract's tables from decrypted archive members into string frames (extract-v1 §1).

The members are either exactly one ``.xlsx`` workbook (one sheet per table, sheet names
exact) or one ``<table>.csv`` per table; anything else is refused as a whole. CSV encoding is
detected from the bytes (UTF-8 with or without BOM, else Windows-1252); line endings may be
CRLF, LF or CR, even mixed in one file (all read as LF).

polars parses the member's bytes directly: UTF-8 is checked in chunks without decoding the
file into a string, only a Windows-1252 file is re-encoded, and line endings are rewritten (on
bytes) only when the file holds a carriage return. Headers match the spec
columns case-insensitively, trimmed, spaces and underscores alike. Every kept cell is text,
trimmed, empty = missing; native Excel dates come back as ``YYYY-MM-DD``. Columns that are
never read (free text, child_name) are dropped while parsing. Nothing touches the disk, and no
error message quotes a cell value.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

import fastexcel
import polars as pl

from schemas.codes import TABLES
from schemas.columns import READ_COLUMNS, REQUIRED_COLUMNS, ROW, TABLE_COLUMNS, columns_for
from tasks.core.errors import InputRejected

_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20  # UTF-8 is checked a chunk at a time: no copy of the whole file
_HEADER_PROBE = 1 << 16  # the header row is parsed from the first bytes only (when they hold it)
_LEADING_SPACE = re.compile(rb"[\t-\r\x1c-\x20]*")  # the ASCII characters str.isspace() accepts
# A native Excel date or date-time cell read as text ("2021-03-04 00:00:00").
_EXCEL_DATETIME = r"^(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?$"


@dataclass(frozen=True)
class RawTables:
    """The tables as read: text columns named canonically, plus what else was in the file."""

    frames: dict[str, pl.DataFrame]
    extra_columns: dict[str, list[str]]
    rows_read: dict[str, int]
    source: str  # "xlsx" or "csv"
    encodings: dict[str, str] = field(default_factory=dict)  # CSV only: table -> codec
    ignored_sheets: list[str] = field(default_factory=list)


def normalise_header(name: str) -> str:
    """Canonical form of a header: trimmed, lower case, runs of spaces/underscores as one '_'."""
    return re.sub(r"[\s_]+", "_", name.strip().lower()).strip("_")


def detect_encoding(data: bytes) -> str:
    """The codec of CSV bytes: 'utf-8-sig' (BOM), 'utf-8' if valid, else 'cp1252'."""
    if data.startswith(_BOM):
        return "utf-8-sig"
    return "utf-8" if _is_utf8(data) else "cp1252"


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8, checked chunk by chunk (ASCII chunks are not decoded)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(data), _CHUNK):
            chunk = view[start:start + _CHUNK]
            if not decoder.getstate()[0] and chunk.tobytes().isascii():
                continue
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def normalise_line_endings(text: str) -> str:
    """CRLF, lone CR (old Mac) and LF, even mixed in one file, all become LF before parsing."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _utf8_lf(data: bytes, encoding: str) -> bytes:
    """The CSV as UTF-8 bytes with LF line ends (the same bytes when nothing needs changing).

    A UTF-8 BOM stays: polars skips it. Both encodings keep CR and LF as single bytes, so the
    line ends are rewritten on bytes.
    """
    if encoding == "cp1252":
        data = data.decode("cp1252").encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _is_blank(utf8: bytes) -> bool:
    """Whether the UTF-8 text holds nothing but white space (as ``str.strip`` sees it)."""
    start = len(_BOM) if utf8.startswith(_BOM) else 0
    end = _LEADING_SPACE.match(utf8, start)
    stop = end.end() if end else start
    if stop == len(utf8):
        return True
    if utf8[stop] < 0x80:
        return False
    if utf8[stop:stop + 64].decode("utf-8", "ignore").strip():  # a non-ASCII character first
        return False
    return not utf8[start:].decode("utf-8").strip()  # rare: non-ASCII spaces first


def read_tables(members: Mapping[str, bytes], file_name: str, *, consume: bool = False
                ) -> RawTables:
    """Read the five tables from the archive members, or raise InputRejected naming the file.

    ``consume=True`` (the pipeline) takes each CSV member out of ``members`` (which must then be
    mutable) once it is read, so the plaintext bytes and the frames never all coexist.
    """
    if not members:
        raise InputRejected("the archive holds no tables; send one workbook or one CSV per table",
                            file=file_name)
    workbooks, csvs = [], {}
    for name in members:
        lower = name.lower()
        if lower.endswith(".xlsx"):
            workbooks.append(name)
        elif lower.endswith(".csv"):
            csvs[lower.removesuffix(".csv")] = name
        else:
            raise InputRejected(
                f"member {name} is not a CSV or XLSX file; send one workbook or one CSV per table",
                file=file_name)
    if workbooks and csvs:
        raise InputRejected("the archive holds both a workbook and CSV files; send one form only",
                            file=file_name)
    if len(workbooks) > 1:
        raise InputRejected("the archive holds more than one workbook; send exactly one",
                            file=file_name)
    if workbooks:
        return _read_workbook(members[workbooks[0]], file_name)
    unknown = sorted(set(csvs) - set(TABLES))
    if unknown:
        raise InputRejected(
            f"member {csvs[unknown[0]]} is not one of the tables {', '.join(TABLES)}",
            file=file_name)
    frames, extras, rows, encodings = {}, {}, {}, {}
    for table in TABLES:
        if table not in csvs:
            raise InputRejected(f"{table}.csv is missing from the archive", file=file_name,
                                table=table)
        if consume:
            assert isinstance(members, MutableMapping)
            data = members.pop(csvs[table])
        else:
            data = members[csvs[table]]
        encodings[table] = detect_encoding(data)
        frames[table], extras[table] = _read_csv(data, encodings[table], file_name, table)
        del data
        rows[table] = frames[table].height
    return RawTables(frames, extras, rows, "csv", encodings)


def _read_workbook(data: bytes, file_name: str) -> RawTables:
    try:
        workbook = fastexcel.read_excel(data)
        sheet_names = list(workbook.sheet_names)
    except Exception:  # calamine raises several types; the message may quote content
        raise InputRejected("the workbook cannot be opened; check it is a valid .xlsx file",
                            file=file_name) from None
    frames, extras, rows = {}, {}, {}
    for table in TABLES:
        if table not in sheet_names:
            raise InputRejected(f"the workbook has no sheet named exactly {table}",
                                file=file_name, table=table)
        try:
            sheet = workbook.load_sheet_by_name(table, header_row=None, dtypes="string")
            grid = sheet.to_polars()
        except Exception:
            raise InputRejected("the sheet cannot be read", file=file_name,
                                table=table) from None
        if grid.height == 0:
            raise InputRejected("the sheet has no header row", file=file_name, table=table)
        header = [None if v is None else str(v) for v in grid.row(0)]
        indices, names, extras[table] = _match_header(header, file_name, table)
        frame = grid.select(grid.columns[i] for i in indices).slice(1)
        frame.columns = names
        frame = frame.with_columns(
            pl.col(c).str.strip_chars().str.replace(_EXCEL_DATETIME, "${1}")
            for c in columns_for(table, kind="date") if c in names
        )
        frames[table] = _finish(frame, table)
        rows[table] = frames[table].height
    ignored = [s for s in sheet_names if s not in TABLES]
    return RawTables(frames, extras, rows, "xlsx", {}, ignored)


def _read_csv(data: bytes, encoding: str, file_name: str,
              table: str) -> tuple[pl.DataFrame, list[str]]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise InputRejected("the CSV is UTF-16 or binary; save it as CSV (UTF-8 or Windows)",
                            file=file_name, table=table)
    try:
        utf8 = _utf8_lf(data, encoding)
    except UnicodeDecodeError:
        raise InputRejected("the CSV is neither UTF-8 nor Windows-1252 text", file=file_name,
                            table=table) from None
    del data
    if _is_blank(utf8):
        raise InputRejected("the CSV is empty: it needs a header row", file=file_name,
                            table=table)
    try:
        header = _header_row(utf8)
        if len(header) == 1 and any(sep in (header[0] or "") for sep in (";", "\t", "|")):
            raise InputRejected("the CSV is not comma separated", file=file_name, table=table)
        indices, names, extras = _match_header(header, file_name, table)
        frame = pl.read_csv(utf8, has_header=True, columns=indices, infer_schema=False,
                            raise_if_empty=False, truncate_ragged_lines=False)
    except InputRejected:
        raise
    except Exception:  # polars' messages can quote cell text: never pass them on
        raise InputRejected(
            "the CSV cannot be read: it must be comma separated, quoted with \", one header row "
            "and no row longer than the header", file=file_name, table=table) from None
    del utf8
    frame.columns = names
    return _finish(frame, table), extras


def _header_row(utf8: bytes) -> list[str | None]:
    """The first row's cells, parsed from the first bytes when a line end follows the row."""
    probe = utf8[:_HEADER_PROBE]
    if len(probe) < len(utf8):
        # A line end with an even number of quotes before it closes the header row.
        end = probe.find(b"\n")
        while end >= 0 and probe.count(b'"', 0, end) % 2:
            end = probe.find(b"\n", end + 1)
        probe = probe[:end + 1] if end >= 0 else utf8
    first = pl.read_csv(probe, has_header=False, n_rows=1, infer_schema=False)
    return list(first.row(0))


def _match_header(header: Sequence[str | None], file_name: str,
                  table: str) -> tuple[list[int], list[str], list[str]]:
    """Column positions to read, their canonical names (file order) and the extra columns."""
    wanted = set(READ_COLUMNS[table])
    known = set(TABLE_COLUMNS[table])
    seen: dict[str, int] = {}
    indices, names, extras = [], [], []
    for i, cell in enumerate(header):
        raw = (cell or "").strip()
        if not raw:
            continue  # unnamed columns (trailing commas, empty cells) carry no table data
        name = normalise_header(raw)
        if not name:
            extras.append(raw)
            continue
        if name in seen:
            raise InputRejected(
                f"two columns are both named {name} (after ignoring case, spaces and "
                "underscores); remove one", file=file_name, table=table, column=name)
        seen[name] = i
        if name in wanted:
            indices.append(i)
            names.append(name)
        elif name not in known:
            extras.append(raw)
    for column in REQUIRED_COLUMNS[table]:
        if column not in seen:
            raise InputRejected("required column is missing", file=file_name, table=table,
                                column=column)
    return indices, names, extras


def _finish(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Trim, empty to missing, number the rows, drop blank rows, spec column order."""
    columns = list(READ_COLUMNS[table])
    return (
        frame.lazy()
        .select(pl.col(c).cast(pl.String).str.strip_chars().replace("", None) for c in columns)
        .with_row_index(ROW, offset=1)
        .with_columns(pl.col(ROW).cast(pl.Int64))
        .filter(~pl.all_horizontal(pl.col(c).is_null() for c in columns))
        .collect()
    )
