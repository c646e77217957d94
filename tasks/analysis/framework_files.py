"""The Framework outputs on disk (restricted area only): matrix CSVs, the matrix workbook, counts, triangulation.

CSV files are UTF-8 with one header row; a cell that a spreadsheet would read as a formula
(starting ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``. The
workbook has one sheet per theme with wrapped text and the header row and first column frozen;
its cells are written as strings, never formulas. Nothing here goes to ``publication/``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xlsxwriter

from tasks.analysis.folder import GENERATOR, RESTRICTED
from tasks.analysis.framework import Framework, Matrix
from tasks.core.csvsafe import csv_bytes

FRAMEWORK_DIR = "framework"
FRAMEWORK_WORKBOOK = "framework.xlsx"
FRAMEWORK_COUNTS = "framework_counts.csv"
TRIANGULATION = "triangulation.csv"
SHEET_NAME_MAX = 31
#: Column widths of the matrix sheets (characters): pseudonym, strand, role, then each subtheme.
WIDTHS = (18, 26, 18)
SUBTHEME_WIDTH = 60


def sheet_names(themes: Sequence[str]) -> list[str]:
    """Excel sheet names of the themes: no ``[]:*?/\\``, at most 31 characters, unique (any case)."""
    names: list[str] = []
    taken: set[str] = set()
    for theme in themes:
        base = re.sub(r"[\[\]:*?/\\]", " ", theme).strip().strip("'").strip() or "Theme"
        name = base[:SHEET_NAME_MAX].rstrip()
        number = 1
        while name.lower() in taken or name.lower() == "history":
            number += 1
            suffix = f" ({number})"
            name = base[:SHEET_NAME_MAX - len(suffix)].rstrip() + suffix
        taken.add(name.lower())
        names.append(name)
    return names


def _matrix_sheet(book: Any, name: str, matrix: Matrix, head: Any, wrap: Any) -> None:
    """One theme: header row, a row per participant, wrapped text, header row and first column frozen."""
    sheet = book.add_worksheet(name)
    for col, title in enumerate(matrix.header):
        sheet.write_string(0, col, title, head)
        sheet.set_column(col, col, WIDTHS[col] if col < len(WIDTHS) else SUBTHEME_WIDTH, wrap)
    for row, values in enumerate(matrix.rows, start=1):
        for col, value in enumerate(values):
            sheet.write_string(row, col, value, wrap)
    sheet.freeze_panes(1, 1)


def write_matrix_workbook(path: Path, framework: Framework) -> list[str]:
    """framework.xlsx: one sheet per theme; returns the sheet names."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False})
    book.set_properties({"title": "Framework matrices (restricted)", "author": GENERATOR})
    head = book.add_format({"bold": True, "text_wrap": True, "valign": "top", "bottom": 1})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    names = sheet_names([m.theme.name for m in framework.matrices])
    for name, matrix in zip(names, framework.matrices, strict=True):
        _matrix_sheet(book, name, matrix, head, wrap)
    book.close()
    return names


def write_framework(root: Path, framework: Framework) -> list[str]:
    """Write the restricted Framework outputs under ``root`` (only when analysed); their paths."""
    if not framework.analysed:
        return []
    restricted = root / RESTRICTED
    folder = restricted / FRAMEWORK_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for matrix in framework.matrices:
        name = f"{RESTRICTED}/{FRAMEWORK_DIR}/{matrix.theme.slug}.csv"
        (root / name).write_bytes(csv_bytes(matrix.header, matrix.rows))
        written.append(name)
    write_matrix_workbook(restricted / FRAMEWORK_WORKBOOK, framework)
    (restricted / FRAMEWORK_COUNTS).write_bytes(csv_bytes(framework.counts_header, framework.counts))
    (restricted / TRIANGULATION).write_bytes(csv_bytes(framework.triangulation_header,
                                                      framework.triangulation))
    return written + [f"{RESTRICTED}/{FRAMEWORK_WORKBOOK}", f"{RESTRICTED}/{FRAMEWORK_COUNTS}",
                      f"{RESTRICTED}/{TRIANGULATION}"]
