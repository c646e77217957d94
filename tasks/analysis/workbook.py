"""The Excel workbook: a README sheet, then per table a restricted sheet and a ``pub_`` sheet."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter

from tasks.analysis.folder import GENERATOR
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.registry import TABLES, TableInfo
from tasks.analysis.tables import Analysis


def _cell_value(value: Any) -> Any:
    """A published text cell as a number when it is one, else the text ("c")."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def write_workbook(path: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                   context: ReportContext) -> None:
    """One workbook: README, then per table a restricted sheet and a ``pub_`` sheet."""
    book = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": True})
    book.set_properties({"title": "Cluster evaluation analysis", "author": GENERATOR,
                         "created": context.generated_at.replace(tzinfo=None)})
    bold = book.add_format({"bold": True})
    head = book.add_format({"bold": True, "bottom": 1, "text_wrap": True})
    restricted_banner = book.add_format({"bold": True, "font_color": "#FFFFFF",
                                         "bg_color": "#D55E00"})
    public_banner = book.add_format({"bold": True, "font_color": "#FFFFFF",
                                     "bg_color": "#009E73"})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})

    readme = book.add_worksheet("README")
    readme.set_column(0, 0, 34)
    readme.set_column(1, 2, 24)
    readme.set_column(3, 3, 60)
    readme.set_column(4, 4, 90)
    lines = [
        ("Cluster evaluation: analysis workbook", bold),
        (f"Cluster {context.cluster}; study window {context.window_start} to "
         f"{context.window_end}; generated {context.generated_at.isoformat()}.", None),
        ("Sheets WITHOUT a prefix hold RESTRICTED exact figures for the research team only.", None),
        (f"Sheets named pub_... are PUBLICATION tables: counts 1-{context.threshold} and the "
         "cells needed to protect them are shown as c; percentages are hidden with their counts; "
         f"survey means from fewer than {survey_minimum(context.threshold)} respondents are "
         "hidden.", None),
        ("Percentages: one decimal, halves rounded up. Medians and quartiles: Hyndman-Fan "
         "type 7 (Excel QUARTILE.INC).", None),
    ]
    for row, (text, fmt) in enumerate(lines):
        readme.write_string(row, 0, text, fmt)
    top = len(lines) + 1
    for col, title in enumerate(("table", "restricted sheet", "publication sheet", "title",
                                 "what it shows / columns")):
        readme.write_string(top, col, title, head)
    for offset, info in enumerate(TABLES, start=1):
        readme.write_string(top + offset, 0, info.name)
        readme.write_string(top + offset, 1, info.sheet)
        readme.write_string(top + offset, 2, f"pub_{info.sheet}")
        readme.write_string(top + offset, 3, info.title, wrap)
        readme.write_string(top + offset, 4,
                            f"{info.description} Columns: {', '.join(info.columns)}.", wrap)

    decimals = {places: book.add_format({"num_format": "0." + "0" * places})
                for places in (1, 2, 3)}
    for info in TABLES:
        _table_sheet(book, info.sheet, info, analysis.tables[info.name], head, decimals,
                     restricted_banner, "RESTRICTED: exact figures, research team only")
        _table_sheet(book, f"pub_{info.sheet}", info, publication[info.name], head, decimals,
                     public_banner, f"PUBLICATION: small numbers suppressed (c), threshold "
                     f"{context.threshold}")
    book.close()


def _table_sheet(book: Any, name: str, info: TableInfo, df: pl.DataFrame, head: Any,
                 decimals: Mapping[int, Any], banner: Any, banner_text: str) -> None:
    """One table as a sheet: banner, title, header row, then the cells (numbers as numbers)."""
    if len(name) > 31:
        raise ValueError(f"sheet name {name!r} is longer than 31 characters")
    sheet = book.add_worksheet(name)
    sheet.write_string(0, 0, banner_text, banner)
    for col in range(1, max(len(info.columns), 4)):
        sheet.write_blank(0, col, None, banner)
    sheet.write_string(1, 0, info.title)
    for col, title in enumerate(info.columns):
        sheet.write_string(2, col, title, head)
        sheet.set_column(col, col, max(12, len(title) + 2))
    formats = [decimals.get(info.decimals.get(col, 0)) for col in info.columns]
    for r, row in enumerate(df.iter_rows(), start=3):
        for c, value in enumerate(row):
            cell = _cell_value(value)
            if cell is None:
                continue
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                sheet.write_number(r, c, cell, formats[c])
            else:
                sheet.write_string(r, c, str(cell))
    sheet.freeze_panes(3, 0)

