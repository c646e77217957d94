"""The Excel workbook, released as the UK Government Analysis Function advises for spreadsheets.

Sheets: Cover (what, where from, coverage), Contents (one row per table sheet, linked),
Notes (the shorthand and methods notes), then one publication table per sheet as a named
Excel table: title in A1, a line on shorthand in A2, the table from A3 with one header row
and no blank rows or merged cells. Suppressed cells are ``[c]`` and cells that do not apply
(a mean with no respondents) ``[z]``, both explained in the Notes. Only publication
(suppressed) figures are in the workbook: exact figures stay in ``restricted/`` CSV files.
Headers and codes show their plain-language labels (``tasks.analysis.labels``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter

from tasks.analysis.disclosure import SUPPRESSED
from tasks.analysis.folder import GENERATOR
from tasks.analysis.labels import label
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.registry import TABLES, TableInfo
from tasks.analysis.tables import Analysis
from tasks.core.csvsafe import neutralise

#: Shorthand of the Analysis Function's guidance.
CONFIDENTIAL = "[c]"
NOT_APPLICABLE = "[z]"
COVER, CONTENTS, NOTES = "Cover", "Contents", "Notes"


def table_name(info: TableInfo) -> str:
    """The Excel table name of a table (letters, digits, underscores; never a cell reference)."""
    return "tbl_" + re.sub(r"[^A-Za-z0-9_]", "_", info.name)


def cell_value(value: Any) -> Any:
    """A published cell as written: a number when it is one, ``[c]``, ``[z]`` or the label.

    A label is neutralised against spreadsheet formulas (:func:`tasks.core.csvsafe.neutralise`).
    """
    if value is None or value == "":
        return NOT_APPLICABLE
    if value == SUPPRESSED:
        return CONFIDENTIAL
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
        return neutralise(label(value))
    return value


def notes(context: ReportContext) -> list[tuple[str, str]]:
    """The Notes sheet: (note number, text)."""
    return [
        ("Note 1", f"{CONFIDENTIAL} = confidential: a count from 1 to {context.threshold}, or a "
                   "cell hidden so that such a count cannot be worked out from totals, or a "
                   "percentage or statistic hidden with its count."),
        ("Note 2", f"{NOT_APPLICABLE} = not applicable: there is nothing to show (for example a "
                   "mean when no one answered)."),
        ("Note 3", f"Survey means from fewer than {survey_minimum(context.threshold)} "
                   "respondents are not published."),
        ("Note 4", "Percentages are of the table's own base (stated in the Contents), halves "
                   "rounded up. Medians and quartiles: Hyndman-Fan type 7 (Excel "
                   "QUARTILE.INC)."),
        ("Note 5", "ONS4 UK means: Annual Population Survey, year ending March 2022; not a "
                   "like-for-like comparison with the families in this study."),
        ("Note 6", "Exact (unsuppressed) figures are not in this workbook: they are in the "
                   "restricted/ CSV files, for the research team only."),
    ]


def _unique(headers: Sequence[str]) -> list[str]:
    """Header labels made unique (an Excel table needs unique headers)."""
    seen: dict[str, int] = {}
    out = []
    for header in headers:
        seen[header] = seen.get(header, 0) + 1
        out.append(header if seen[header] == 1 else f"{header} ({seen[header]})")
    return out


def _simple_table(sheet: Any, top: int, name: str, headers: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> None:
    """A text table (contents, notes) as a named Excel table from row ``top``."""
    data = [list(row) for row in rows] or [[""] * len(headers)]
    sheet.add_table(top, 0, top + len(data), len(headers) - 1, {
        "name": name, "data": data, "style": "Table Style Light 1",
        "columns": [{"header": h} for h in headers],
    })


def _cover(book: Any, context: ReportContext, bold: Any, wrap: Any) -> None:
    sheet = book.add_worksheet(COVER)
    sheet.set_column(0, 0, 110, wrap)
    lines = [
        ("Cluster evaluation: analysis tables", book.add_format({"bold": True, "font_size": 16})),
        ("This workbook holds the publication tables of the Cluster evaluation's analysis: "
         "the case records of families open to the Cluster and the family survey.", None),
        ("Coverage", bold),
        (f"Cluster {context.cluster}; families with an episode open between "
         f"{context.window_start} and {context.window_end}.", None),
        ("Source", bold),
        ("The council's case-management extract and the evaluation's family survey.", None),
        ("Produced", bold),
        (f"{context.generated_at.isoformat()} by {GENERATOR}.", None),
        ("Shorthand and notes", bold),
        (f"{CONFIDENTIAL} confidential (small number suppressed), {NOT_APPLICABLE} not "
         "applicable; see the Notes sheet. The Contents sheet lists every table.", None),
    ]
    if context.simulated_responses:
        lines.insert(1, ("DEMO: the survey answers in this workbook are SIMULATED, not real "
                         "families' answers.", bold))
    for row, (text, fmt) in enumerate(lines):
        sheet.write_string(row, 0, text, fmt)


def write_workbook(path: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                   context: ReportContext) -> None:
    """Cover, Contents, Notes, then one publication table per sheet as a named Excel table."""
    book = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": True, "strings_to_formulas": False})
    book.set_properties({"title": "Cluster evaluation analysis", "author": GENERATOR,
                         "created": context.generated_at.replace(tzinfo=None)})
    bold = book.add_format({"bold": True, "font_size": 12})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    infos = [info for info in TABLES if info.name in publication]
    _cover(book, context, bold, wrap)

    contents = book.add_worksheet(CONTENTS)
    contents.write_string(0, 0, "Contents", bold)
    contents.write_string(1, 0, "This worksheet contains one table. Each table below is on "
                                "its own sheet.")
    contents.set_column(0, 0, 24)
    contents.set_column(1, 1, 50)
    contents.set_column(2, 2, 100, wrap)
    _simple_table(contents, 2, "tbl_contents", ("Sheet", "Table title", "What it shows"),
                  [(info.sheet, info.title, info.description) for info in infos])
    for row, info in enumerate(infos, start=3):
        contents.write_url(row, 0, f"internal:'{info.sheet}'!A1", string=info.sheet)

    notes_sheet = book.add_worksheet(NOTES)
    notes_sheet.write_string(0, 0, "Notes", bold)
    notes_sheet.write_string(1, 0, "This worksheet contains one table.")
    notes_sheet.set_column(0, 0, 12)
    notes_sheet.set_column(1, 1, 110, wrap)
    _simple_table(notes_sheet, 2, "tbl_notes", ("Note number", "Note text"), notes(context))

    decimals = {places: book.add_format({"num_format": "0." + "0" * places})
                for places in (1, 2, 3)}
    for info in infos:
        _table_sheet(book, info, publication[info.name], decimals, bold)
    book.close()


def _table_sheet(book: Any, info: TableInfo, df: pl.DataFrame,
                 decimals: Mapping[int, Any], bold: Any) -> None:
    """One publication table as a sheet: title, shorthand line, then a named Excel table."""
    if len(info.sheet) > 31:
        raise ValueError(f"sheet name {info.sheet!r} is longer than 31 characters")
    sheet = book.add_worksheet(info.sheet)
    sheet.write_string(0, 0, info.title, bold)
    sheet.write_string(1, 0, f"{info.description} {CONFIDENTIAL} = confidential, "
                             f"{NOT_APPLICABLE} = not applicable (see Notes).")
    headers = _unique([neutralise(label(c)) for c in df.columns])
    data = [[cell_value(v) for v in row] for row in df.iter_rows()]
    if not data:
        data = [[NOT_APPLICABLE] * len(headers)]
    columns = []
    for col, header in enumerate(headers):
        places = info.decimals.get(df.columns[col], 0)
        column: dict[str, Any] = {"header": header}
        if places:
            column["format"] = decimals[places]
        columns.append(column)
        sheet.set_column(col, col, max(12, min(40, len(header) + 2)))
    sheet.add_table(2, 0, 2 + len(data), len(headers) - 1, {
        "name": table_name(info), "data": data, "columns": columns,
        "style": "Table Style Light 1",
    })
