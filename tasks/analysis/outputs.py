"""The analysis on disk: CSV tables, charts, Excel workbook, HTML and Word reports, manifest.

Plain functions, no Prefect. Everything is written to a temporary folder beside the output
folder and renamed into place at the end, so a half-written analysis is never where a reader
looks. Charts and the HTML report are drawn only from the publication (suppressed) tables;
the exact figures live in ``restricted/`` and the workbook's unprefixed sheets.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection

from tasks.analysis.charts import draw_charts, save_chart
from tasks.analysis.docx_report import write_docx
from tasks.analysis.folder import (
    CHARTS,
    MANIFEST,
    PUBLICATION,
    REPORT,
    REPORT_DOCX,
    RESTRICTED,
    WORKBOOK,
    check_output_dir,
    swap_into_place,
)
from tasks.analysis.framework import Framework
from tasks.analysis.framework_files import write_framework
from tasks.analysis.manifest import ReportContext, build_manifest
from tasks.analysis.publication import format_table
from tasks.analysis.registry import TABLES
from tasks.analysis.report import render_report
from tasks.analysis.tables import Analysis
from tasks.analysis.workbook import write_workbook
from tasks.core.audit import append_audit
from tasks.core.csvsafe import neutralise
from tasks.core.db import query

#: Category of the output folder in the retention schedule's file register.
OUTPUT_CATEGORY = "analysis_output"


def csv_bytes(df: pl.DataFrame, text_columns: Sequence[str] = ()) -> bytes:
    """A text frame as CSV: one header row, LF line ends, empty cell for null.

    Cells of ``text_columns`` (labels from the data, not figures) are neutralised against
    spreadsheet formulas (:func:`tasks.core.csvsafe.neutralise`); figures, a negative one too,
    are written as they are.
    """
    if text_columns:
        df = df.with_columns(pl.col(c).map_elements(neutralise, return_dtype=pl.String)
                             for c in text_columns)
    return df.write_csv(line_terminator="\n", quote_style="necessary").encode("utf-8")


def write_tables(root: Path, analysis: Analysis,
                 publication: Mapping[str, pl.DataFrame]) -> None:
    """restricted/<table>.csv (exact) and publication/<table>.csv (suppressed)."""
    (root / RESTRICTED).mkdir(mode=0o700)
    (root / PUBLICATION).mkdir(mode=0o700)
    for info in TABLES:
        table = analysis.tables[info.name]
        labels = [c for c, dtype in table.schema.items() if dtype == pl.String]
        restricted = format_table(info, table)
        (root / RESTRICTED / f"{info.name}.csv").write_bytes(csv_bytes(restricted, labels))
        (root / PUBLICATION / f"{info.name}.csv").write_bytes(
            csv_bytes(publication[info.name], labels))


@dataclass(frozen=True)
class WrittenOutputs:
    """Where the analysis went and what it holds."""

    out: Path
    report: Path
    workbook: Path
    manifest: dict[str, Any]


def write_outputs(out: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                  context: ReportContext, framework: Framework | None = None) -> WrittenOutputs:
    """Write every output to a temporary folder beside ``out``, then rename it into place.

    With an analysed qualitative strand (``framework``) the restricted area also gets the
    Framework matrices, counts and triangulation, and the report what was said.
    """
    if framework is not None:
        context = replace(context, qualitative=framework.report)
    out = out.resolve()
    check_output_dir(out)
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    staged.mkdir(mode=0o700)
    try:
        write_tables(staged, analysis, publication)
        qualitative_files = write_framework(staged, framework) if framework is not None else []
        (staged / CHARTS).mkdir(mode=0o700)
        charts = draw_charts(publication, context.threshold)
        pngs = {chart.name: save_chart(chart, staged / CHARTS)["png"].read_bytes()
                for chart in charts}
        write_workbook(staged / WORKBOOK, analysis, publication, context)
        (staged / REPORT).write_text(render_report(analysis, publication, charts, pngs, context),
                                     encoding="utf-8")
        write_docx(staged / REPORT_DOCX, analysis, publication, charts, pngs, context)
        manifest = build_manifest(staged, analysis, context, framework, qualitative_files)
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        swap_into_place(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return WrittenOutputs(out, out / REPORT, out / WORKBOOK, manifest)


def record_analysis_run(conn: Connection, cluster: str, out: Path, manifest: Mapping[str, Any],
                        flow_run_id: str | None = None) -> None:
    """Register the output folder for the retention schedule and audit the run (no PII)."""
    now = datetime.now(UTC).isoformat()
    conn.execute(query("analysis_register_output"), {
        "cluster": cluster, "path": str(out), "category": OUTPUT_CATEGORY, "registered_at": now,
    })
    append_audit(conn, cluster, "analysis_written", {
        "out": str(out), "tables": len(manifest["tables"]), "files": len(manifest["files"]),
        "survey_status": manifest["survey_status"],
        "qualitative": manifest["qualitative"]["status"],
        "coded_segments": manifest["qualitative"]["coded_segments"],
    }, flow_run_id)
