"""The HTML report: publication tables and charts in one self-contained page, from Jinja2 templates.

The wording and layout live in ``tasks/analysis/templates/`` (``report.html.j2`` with the
``macros.html.j2`` table and figure macros, and ``report.css``), where a researcher can edit
them; autoescaping is always on. This module only prepares what the templates show: the
publication (suppressed) tables and the charts, inlined as PNG data URLs so that the page
needs nothing but itself.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined

from tasks.analysis.charts import MEASURE_LABELS, Chart
from tasks.analysis.disclosure import SUPPRESSED
from tasks.analysis.folder import MANIFEST
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.registry import TABLES, TableInfo
from tasks.analysis.tables import Analysis

TEMPLATE = "report.html.j2"
#: Report sections in order: (key, heading); tables and charts name their section by key.
SECTIONS = (
    ("administrative", "Referrals and presenting issues"),
    ("demographics", "Who the families are"),
    ("support", "Support, allocation and goals"),
    ("closure", "Closure and onward referral"),
    ("specialist", "Specialist referrals (RES Team, Early Help Hub)"),
    ("survey", "Family survey"),
)


@dataclass(frozen=True)
class CellView:
    """One table cell as shown: its text and whether it is a number (or "c"), right-aligned."""

    text: str
    numeric: bool


@dataclass(frozen=True)
class TableView:
    """One publication table as the report shows it."""

    info: TableInfo
    columns: Sequence[str]
    rows: Sequence[Sequence[CellView]]


@dataclass(frozen=True)
class FigureView:
    """One chart as the report shows it, its PNG inlined as base64."""

    chart: Chart
    png_base64: str


@dataclass(frozen=True)
class SectionView:
    """One report section: its key, heading, charts and tables."""

    key: str
    title: str
    figures: Sequence[FigureView]
    tables: Sequence[TableView]


@cache
def environment() -> Environment:
    """The Jinja2 environment of the report templates (autoescape on, undefined names refused)."""
    return Environment(
        loader=PackageLoader("tasks.analysis", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _is_number(text: str) -> bool:
    """Whether a cell's text reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(value: str | None) -> CellView:
    """A publication cell as shown: null as empty, numbers and "c" right-aligned."""
    text = "" if value is None else str(value)
    return CellView(text, text == SUPPRESSED or _is_number(text))


def table_view(info: TableInfo, df: pl.DataFrame) -> TableView:
    """A publication table as the report shows it."""
    return TableView(info, df.columns, [[_cell(v) for v in row] for row in df.iter_rows()])


def section_views(publication: Mapping[str, pl.DataFrame], charts: Sequence[Chart],
                  pngs: Mapping[str, bytes]) -> list[SectionView]:
    """The report's sections in order, each with its charts and then its tables."""
    return [
        SectionView(
            key, title,
            [FigureView(chart, base64.b64encode(pngs[chart.name]).decode("ascii"))
             for chart in charts if chart.section == key],
            [table_view(info, publication[info.name]) for info in TABLES if info.section == key],
        )
        for key, title in SECTIONS
    ]


def render_report(analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                  charts: Sequence[Chart], pngs: Mapping[str, bytes],
                  context: ReportContext) -> str:
    """The self-contained HTML report (publication figures, charts inline, no external URL)."""
    single_strata = [(MEASURE_LABELS.get(measure, measure), len(strata))
                     for measure, strata in analysis.single_respondent_strata.items() if strata]
    return environment().get_template(TEMPLATE).render(
        analysis=analysis,
        context=context,
        sections=section_views(publication, charts, pngs),
        code=str(context.code.get("git") or context.code.get("package") or "unknown"),
        generated_at=context.generated_at.isoformat(),
        survey_minimum=survey_minimum(context.threshold),
        single_strata=single_strata,
        manifest=MANIFEST,
    )
