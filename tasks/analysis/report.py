"""The HTML report, organised by the protocol's research questions, from Jinja2 templates.

The wording and layout live in ``tasks/analysis/templates/`` (``report.html.j2`` with the
``macros.html.j2`` table and figure macros, and ``report.css``), where a researcher can edit
them; autoescaping is always on. This module only prepares what the templates show: the
research-question sections (:mod:`tasks.analysis.sections`, shared with the Word report) with
their key findings, publication (suppressed) tables and charts, inlined as PNG data URLs so
that the page needs nothing but itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined

from tasks.analysis.charts import Chart
from tasks.analysis.folder import MANIFEST
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.sections import SAID_HEADING, SAID_METHOD, SAID_SIMULATED, build_document
from tasks.analysis.tables import Analysis

TEMPLATE = "report.html.j2"


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


def render_report(analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                  charts: Sequence[Chart], pngs: Mapping[str, bytes],
                  context: ReportContext) -> str:
    """The self-contained HTML report (publication figures, charts inline, no external URL)."""
    document = build_document(analysis, publication, charts, pngs, context)
    return environment().get_template(TEMPLATE).render(
        analysis=analysis,
        context=context,
        document=document,
        sections=document.sections,
        code=str(context.code.get("git") or context.code.get("package") or "unknown"),
        generated_at=context.generated_at.isoformat(),
        survey_minimum=survey_minimum(context.threshold),
        manifest=MANIFEST,
        said_heading=SAID_HEADING,
        said_simulated=SAID_SIMULATED,
        said_method=SAID_METHOD,
    )
