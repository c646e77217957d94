"""The one CSV writer for text a spreadsheet may open: every cell neutralised against formulas.

A cell that starts with ``= + - @``, a tab or a carriage return would be run as a formula by
Excel or LibreOffice (CSV injection); it gets a leading ``'`` so it is shown as text.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """A cell as text, with a leading ``'`` when it would start a spreadsheet formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]], *, line_end: str = "\n",
              excel_bom: bool = False) -> bytes:
    """UTF-8 CSV with one header row, every cell neutralised; ``excel_bom`` adds a BOM for Excel."""
    # the csv module quotes a field only for the characters of its line terminator: written with
    # CRLF, a field holding a bare CR or LF is always quoted (a bare CR is a row break in Excel)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in itertools.chain([header], rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([neutralise(v) for v in row])
        lines.append(buffer.getvalue()[:-2] + line_end)
    return (("\ufeff" if excel_bom else "") + "".join(lines)).encode("utf-8")
