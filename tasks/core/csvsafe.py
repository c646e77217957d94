"""The one CSV writer for text a spreadsheet may open: every cell neutralised against formulas.

A cell that starts with ``= + - @``, a tab or a carriage return would be run as a formula by
Excel or LibreOffice (CSV injection); it gets a leading ``'`` so it is shown as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """A cell as text, with a leading ``'`` when it would start a spreadsheet formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]], *, line_end: str = "\n",
              excel_bom: bool = False) -> bytes:
    """UTF-8 CSV with one header row, every cell neutralised; ``excel_bom`` adds a BOM for Excel."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow([neutralise(h) for h in header])
    writer.writerows([neutralise(v) for v in row] for row in rows)
    return (("\ufeff" if excel_bom else "") + buffer.getvalue()).encode("utf-8")
