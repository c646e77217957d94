"""The Word report (report.docx, python-docx): the HTML report's sections, findings, tables, charts.

The research team writes the final evaluation report in Word, so this is an editable document:
real Word headings (Heading 1-3 styles), real tables with a repeated header row, charts as
PNG pictures, and the same content as the HTML report (:mod:`tasks.analysis.sections`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from docx import Document as new_document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

from tasks.analysis.charts import Chart
from tasks.analysis.framework import QuestionSaid
from tasks.analysis.manifest import ReportContext
from tasks.analysis.publication import survey_minimum
from tasks.analysis.sections import (
    SAID_HEADING,
    SAID_METHOD,
    SAID_SIMULATED,
    Document,
    SectionView,
    TableView,
    build_document,
)
from tasks.analysis.tables import Analysis

TITLE = "Cluster evaluation: analysis report"
SIMULATED = ("DEMO: SIMULATED SURVEY ANSWERS. Survey figures in this report come from "
             "simulated responses, not real families.")


def _banner(doc: Any, document: Document) -> None:
    """The demo banner (a red bold paragraph) when survey answers are simulated."""
    if document.simulated:
        run = doc.add_paragraph().add_run(SIMULATED)
        run.bold = True
        run.font.color.rgb = RGBColor(0xD5, 0x5E, 0x00)


def _repeat_header(row: Any) -> None:
    """Mark a table row as a header row repeated on every page."""
    props = row._tr.get_or_add_trPr()
    header = OxmlElement("w:tblHeader")
    header.set(qn("w:val"), "true")
    props.append(header)


def _table(doc: Any, view: TableView) -> None:
    """A publication table as a Word table with a header row, numbers right-aligned."""
    doc.add_heading(view.info.title, level=3)
    table = doc.add_table(rows=1, cols=len(view.columns))
    table.style = "Table Grid"
    head = table.rows[0]
    _repeat_header(head)
    for cell, text in zip(head.cells, view.columns, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for values in view.rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, values, strict=True):
            cell.text = value.text
            if value.numeric:
                cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
    caption = doc.add_paragraph(f"{view.info.description} c = suppressed (small number). "
                                f"File: publication/{view.info.name}.csv.")
    caption.runs[0].font.size = Pt(8)


def _figures(doc: Any, section: SectionView) -> None:
    """A section's charts as pictures with their captions (the alt text as description)."""
    for figure in section.figures:
        doc.add_picture(io.BytesIO(figure.png), width=Cm(16))
        doc.inline_shapes[-1]._inline.docPr.set("descr", figure.chart.alt)
        doc.add_paragraph(f"{figure.chart.title}. {figure.chart.caption}")


def _said(doc: Any, document: Document, said: QuestionSaid) -> None:
    """What families and practitioners said: per theme, sentences in words and quotes."""
    doc.add_heading(SAID_HEADING, level=2)
    if document.simulated:
        run = doc.add_paragraph().add_run(SAID_SIMULATED)
        run.bold = True
        run.font.color.rgb = RGBColor(0xD5, 0x5E, 0x00)
    for theme in said.themes:
        doc.add_heading(theme.theme, level=3)
        if theme.none_raised:
            doc.add_paragraph(theme.none_raised)
        for item in theme.items:
            doc.add_paragraph(item.sentence)
            for quote in item.quotes:
                doc.add_paragraph(f"“{quote.text}” — {quote.attribution}", style="Quote")


def _section(doc: Any, document: Document, section: SectionView) -> None:
    doc.add_heading(section.title, level=1)
    _banner(doc, document)
    doc.add_paragraph(f"Research question {section.key}: {section.question}").runs[0].italic = True
    doc.add_heading("Key findings", level=2)
    doc.add_paragraph(" ".join(item.text for item in section.findings))
    _figures(doc, section)
    for view in section.tables:
        _table(doc, view)
    if section.said is not None:
        _said(doc, document, section.said)
    doc.add_heading("What the data cannot say", level=2)
    doc.add_paragraph(section.cannot_say + (f" {section.qualitative}" if section.qualitative
                                            else ""))


def write_docx(path: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
               charts: Sequence[Chart], pngs: Mapping[str, bytes],
               context: ReportContext) -> None:
    """report.docx: summary, caveats, research-question sections, methods, provenance."""
    document = build_document(analysis, publication, charts, pngs, context)
    doc = new_document()
    doc.core_properties.title = TITLE
    doc.add_heading(TITLE, level=0)
    _banner(doc, document)
    if document.simulated:
        doc.sections[0].header.paragraphs[0].text = SIMULATED
    doc.add_paragraph(f"Study window {context.window_start} to {context.window_end}. Generated "
                      f"{context.generated_at.isoformat()}. Publication-safe figures only "
                      "(small numbers shown as c).")
    doc.add_heading("Summary", level=1)
    doc.add_paragraph(" ".join(item.text for item in document.summary))
    for section in document.sections:
        doc.add_paragraph(f"{section.title} — " + " ".join(f.text for f in section.findings),
                          style="List Bullet")
    doc.add_heading(document.caveats.title, level=1)
    _banner(doc, document)
    for item in document.caveats.findings:
        doc.add_paragraph(item.text, style="List Bullet")
    _figures(doc, document.caveats)
    for view in document.caveats.tables:
        _table(doc, view)
    for section in document.sections:
        _section(doc, document, section)
    doc.add_heading("Methods", level=1)
    doc.add_paragraph(
        f"Disclosure control: counts from 1 to {context.threshold} are shown as c, with further "
        "cells hidden so they cannot be worked out; survey means from fewer than "
        f"{survey_minimum(context.threshold)} respondents are not published. Medians and "
        "quartiles: Hyndman-Fan type 7. Key findings are written from the publication tables; "
        "every number in them is a published cell. The HTML report's Methods section has the "
        "full description.")
    if context.qualitative is not None and context.qualitative.analysed:
        doc.add_paragraph(SAID_METHOD)
    estimator = analysis.estimator.as_dict()
    doc.add_paragraph(
        f"Survey estimator (defaults survey.lonely_stratum = \"certainty\", survey.ci = "
        f"\"normal\"): survey.lonely_stratum = \"{estimator['lonely_stratum']}\": "
        f"{estimator['lonely_stratum_means']}; survey.ci = \"{estimator['ci']}\": "
        f"{estimator['ci_means']}.")
    doc.add_heading("Technical notes", level=2)
    for note in document.methods_notes:
        doc.add_paragraph(note, style="List Bullet")
    doc.add_heading("Provenance", level=1)
    doc.add_paragraph(f"Settings SHA-256 {context.settings_sha256}. Extracts: "
                      + (", ".join(str(e["sha256"]) for e in context.extracts) or "none") + ".")
    doc.save(str(path))
