"""The Excel route: a coding sheet to code in, and a coding CSV (or xlsx sheet) read back.

The sheet ``coding export --out X.csv|X.xlsx`` writes has a row per speaker turn of each approved
session: session_id, line (= turn_no), speaker, text, theme, subtheme. ``coding import`` takes
either that sheet with themes filled in, or rows of session_id, line_start, line_end, theme,
subtheme; each row codes the whole words of the turns line_start..line_end of the session.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import fastexcel
import xlsxwriter
from sqlalchemy import Connection

from tasks.coding.archive import check_workbook
from tasks.coding.codebook import MAX_NAME, CodeRow
from tasks.coding.store import Coding, Segment, SessionText, TurnSpan, approved_sessions, session_texts
from tasks.core.csvsafe import csv_bytes
from tasks.core.errors import InputRejected

SHEET_COLUMNS = ("session_id", "line", "speaker", "text", "theme", "subtheme")
RANGE_COLUMNS = ("session_id", "line_start", "line_end", "theme", "subtheme")
SHEET_NAME = "coding"

def coding_sheet(texts: Sequence[SessionText], kind: str) -> bytes:
    """The coding sheet of these sessions as CSV (UTF-8 with BOM, for Excel) or xlsx bytes."""
    rows = [(t.session_id, turn.turn_no, turn.speaker, turn.words) for t in texts for turn in t.turns]
    if kind == "csv":
        return csv_bytes(SHEET_COLUMNS, [(*row, "", "") for row in rows], line_end="\r\n", excel_bom=True)
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False,
                                         "strings_to_urls": False, "strings_to_numbers": False})
    sheet = workbook.add_worksheet(SHEET_NAME)
    bold, wrap = workbook.add_format({"bold": True}), workbook.add_format({"text_wrap": True, "valign": "top"})
    for column, name in enumerate(SHEET_COLUMNS):
        sheet.write_string(0, column, name, bold)
    for number, (session_id, line, speaker, words) in enumerate(rows, start=1):
        sheet.write_string(number, 0, session_id)
        sheet.write_number(number, 1, line)
        sheet.write_string(number, 2, speaker)
        sheet.write_string(number, 3, words, wrap)
    sheet.set_column(3, 3, 80)
    sheet.set_column(4, 5, 24)
    sheet.freeze_panes(1, 0)
    workbook.close()
    return out.getvalue()


@dataclass(frozen=True)
class _Row:
    number: int  # spreadsheet row (the header is row 1)
    values: dict[str, str]


def read_rows(data: bytes, file_name: str) -> list[_Row]:
    """The coding rows of a CSV (UTF-8, with or without BOM) or an xlsx workbook, header checked."""
    grid = _xlsx_grid(data, file_name) if data.startswith(b"PK\x03\x04") else _csv_grid(data, file_name)
    if not grid:
        raise InputRejected("the coding sheet is empty: it needs a header row", file=file_name)
    header = [h.strip().lower() for h in grid[0]]
    wanted = RANGE_COLUMNS if "line_start" in header else ("session_id", "line", "theme", "subtheme")
    for column in wanted:
        if column not in header:
            raise InputRejected("the coding sheet has no column of this name (it needs session_id, "
                                "line_start, line_end, theme, subtheme)", file=file_name, column=column)
    index = {column: header.index(column) for column in wanted}
    rows = []
    for number, cells in enumerate(grid[1:], start=2):
        values = {c: (" ".join(cells[i].split()) if i < len(cells) else "") for c, i in index.items()}
        if "line" in values:
            values["line_start"] = values["line_end"] = values.pop("line")
        rows.append(_Row(number, values))
    return rows


def _csv_grid(data: bytes, file_name: str) -> list[list[str]]:
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputRejected("the coding CSV is not UTF-8 text; save it as CSV UTF-8", file=file_name) from None
    first = body.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","  # Excel's CSV in some locales
    try:
        return list(csv.reader(io.StringIO(body, newline=""), delimiter=delimiter))
    except csv.Error:
        raise InputRejected("the coding CSV cannot be read as CSV; save it from Excel as CSV UTF-8",
                            file=file_name) from None


def _xlsx_grid(data: bytes, file_name: str) -> list[list[str]]:
    check_workbook(data, file_name)
    try:
        workbook = fastexcel.read_excel(data)
        names = list(workbook.sheet_names)
        sheet = workbook.load_sheet_by_name(SHEET_NAME if SHEET_NAME in names else names[0],
                                            header_row=None, dtypes="string")
        frame = sheet.to_polars()
    except Exception:  # calamine raises several types; the message may quote content
        raise InputRejected("the workbook cannot be opened; check it is a valid .xlsx file",
                            file=file_name) from None
    return [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]


def _line(value: str, row: _Row, column: str, file_name: str) -> int:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or number != int(number):
        raise InputRejected("not a whole line number", file=file_name, row_key=str(row.number), column=column)
    return int(number)


def csv_coding(conn: Connection, key: bytes, cluster: str, data: bytes, sha256: str, file_name: str,
               spans: dict[str, list[TurnSpan]]) -> Coding:
    """Check every row against the approved sessions and map it to whole-turn segments."""
    approved = set(approved_sessions(conn, cluster))
    lengths = {(t.session_id, turn.turn_no): end - start
               for t in session_texts(conn, key, cluster, sorted(approved & set(spans)))
               for turn, (start, end) in zip(t.turns, t.offsets, strict=True)}
    segments: list[Segment] = []
    codes: dict[tuple[str, str], CodeRow] = {}
    selections = dropped = 0
    sessions: set[str] = set()
    for row in read_rows(data, file_name):
        code = _row_code(row, file_name)
        if code is None:
            continue
        session_id = row.values["session_id"]
        if session_id not in spans:
            raise InputRejected("unknown session: no transcript of this session is stored",
                                file=file_name, row_key=str(row.number), column="session_id")
        if session_id not in approved:
            raise InputRejected("this session's transcript has not been approved, so it cannot be coded",
                                file=file_name, row_key=str(row.number), column="session_id")
        first = _line(row.values["line_start"], row, "line_start", file_name)
        last = _line(row.values["line_end"], row, "line_end", file_name)
        turns = {span.turn_no: span for span in spans[session_id]}
        if not 1 <= first <= last <= len(turns):
            raise InputRejected(f"lines out of range: the session has lines 1 to {len(turns)} and "
                                "line_start must not be after line_end", file=file_name,
                                row_key=str(row.number), column="line_start")
        selections += 1
        sessions.add(session_id)
        codes.setdefault((code.theme, code.subtheme), code)
        for number in range(first, last + 1):
            span, length = turns[number], lengths[(session_id, number)]
            if span.withdrawn:
                dropped += 1
            elif length:
                segments.append(Segment(f"csv:{row.number}", session_id, number, span.participant_id,
                                        code.theme, code.subtheme, 0, length))
    if not selections:
        raise InputRejected("the coding sheet codes nothing: fill in theme (and subtheme) for the lines "
                            "coded", file=file_name)
    unique = list({(s.selection_id, s.session_id, s.turn_no, s.theme, s.subtheme): s for s in segments}.values())
    return Coding(sha256, "csv", selections, unique, list(codes.values()), len(sessions), dropped)


def _row_code(row: _Row, file_name: str) -> CodeRow | None:
    """The row's code; None for a row that codes nothing (no theme and no subtheme)."""
    theme, subtheme = row.values["theme"], row.values["subtheme"]
    if not theme and not subtheme:
        return None
    if not theme:
        raise InputRejected("a subtheme needs its theme", file=file_name, row_key=str(row.number), column="theme")
    for column, value in (("theme", theme), ("subtheme", subtheme)):
        if len(value) > MAX_NAME:
            raise InputRejected(f"longer than {MAX_NAME} characters", file=file_name,
                                row_key=str(row.number), column=column)
    return CodeRow(theme, subtheme, None, None, "coding")
