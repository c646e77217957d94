"""The report answers the protocol's research questions (issue 10): HTML, Word and workbook.

Each test reads the written files back (HTML parsed, DOCX with python-docx, XLSX as a zip of
XML) and checks them against the publication tables themselves: every number of a key-findings
paragraph must be a cell of the publication table its sentence names.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import docx
import fastexcel
import polars as pl

from tasks.analysis.findings import Ref, key_findings
from tasks.analysis.labels import label
from tasks.analysis.outputs import write_outputs
from tasks.analysis.registry import TABLES, TableInfo
from tasks.analysis.sections import QUESTIONS
from tasks.core.db import query
from tasks.core.runtime import Runtime

RQ_KEYS = ("1a", "1b", "1c", "2a", "2b", "2c")
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def published(publication: dict[str, pl.DataFrame]) -> list[TableInfo]:
    """The registry's tables that this analysis publishes (the report skips the others)."""
    return [info for info in TABLES if info.name in publication]


def published_cells(publication: dict[str, pl.DataFrame]) -> set[str]:
    """Every cell text of every publication table."""
    return {str(v) for df in publication.values() for row in df.iter_rows() for v in row
            if v is not None}


def check_numbers(text: str, publication: dict[str, pl.DataFrame], refs: list[Ref]) -> None:
    """Every number in ``text`` is one of the refs, and each ref is its publication cell."""
    for ref in refs:
        assert str(publication[ref.table][ref.row, ref.column]) == ref.text, ref
    texts = {ref.text for ref in refs}
    cells = published_cells(publication)
    for number in NUMBER.findall(text):
        assert number in texts, f"{number!r} in {text!r} is not from a named table cell"
        assert number in cells


class Sections(HTMLParser):
    """Collects, per <section id>, its h2, h3s, key-findings paragraph and list items."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[str]]] = {}
        self.current: str | None = None
        self.capture: str | None = None
        self.buffer: list[str] = []
        self.banners: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and attributes.get("id"):
            self.current = str(attributes["id"])
            self.sections[self.current] = {"h2": [], "h3": [], "findings": [], "li": []}
        css = attributes.get("class") or ""
        if tag == "p" and "simulated" in css:
            self.banners[self.current or "header"] = self.banners.get(
                self.current or "header", 0) + 1
        kind = {"h2": "h2", "h3": "h3", "li": "li"}.get(tag)
        if tag == "p" and css == "key-findings":
            kind = "findings"
        if kind and self.current and self.capture is None:
            self.capture, self.buffer = kind, []

    def handle_endtag(self, tag: str) -> None:
        if self.capture and tag == {"findings": "p"}.get(self.capture, self.capture):
            assert self.current
            self.sections[self.current][self.capture].append("".join(self.buffer).strip())
            self.capture = None
        if tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.capture:
            self.buffer.append(data)


def parse(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    return parser


def test_html_report_answers_each_research_question(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    page = written.report.read_text(encoding="utf-8")
    found = parse(page)
    order = list(found.sections)
    assert order[:2] == ["summary", "caveats"]
    assert order[-2:] == ["methods", "provenance"]
    assert [k for k in order if k.startswith("rq-")] == [f"rq-{k}" for k in RQ_KEYS]
    findings = key_findings(publication)
    for key, _title, question, _cannot, _qual in QUESTIONS:
        section = found.sections[f"rq-{key}"]
        assert "Key findings" in section["h3"] and "What the data cannot say" in section["h3"]
        assert len(section["findings"]) == 1 and section["findings"][0]
        check_numbers(section["findings"][0], publication,
                      [ref for f in findings[key] for ref in f.refs])
        assert question[:40] in page
    assert found.sections["caveats"]["li"], "no caveats"
    caveats = " ".join(found.sections["caveats"]["li"])
    assert "suppressed" in caveats and "UK means" in caveats and "still open" in caveats
    summary = found.sections["summary"]["findings"][0]
    check_numbers(summary, publication, [ref for f in findings["summary"] for ref in f.refs])
    # the qualitative strand is said to be still to come
    assert "qualitative strand, which has not been analysed yet" in page
    # technical warnings sit in the methods section, not at the top
    assert "single respondent" not in page[:page.index('id="summary"')]
    assert "single respondent" in page[page.index('id="methods"'):]
    # every table is shown once with plain-language labels
    for info in published(publication):
        assert page.count(f'id="{info.name}"') == 1
    assert "<th scope=\"col\">" + label("referral_route") + "</th>" in page
    assert not found.banners  # real responses: no demo banner
    # the estimator's options and their defaults are stated in the methods section
    methods = page[page.index('id="methods"'):]
    assert 'survey.lonely_stratum = "certainty"' in methods and 'survey.ci = "normal"' in methods
    assert analysis.estimator.as_dict()["ci_means"] in methods


def test_findings_numbers_come_from_their_cells() -> None:
    # every figure published: each sentence's numbers are exactly its cells
    pub = {
        "population": pl.DataFrame({"families": ["120"], "children": ["230"],
                                    "episodes": ["131"], "closed_episodes": ["97"]}),
        "referral_routes": pl.DataFrame({"referral_route": ["school", "self"],
                                         "episodes": ["80", "51"], "percent": ["61", "39"]}),
        "ons4": pl.DataFrame({"measure": ["q1_life_satisfaction"], "respondents": ["31"],
                              "mean": ["6.1"], "weighted_mean": ["6.042"],
                              "standard_error": ["0.3"], "ci_low": ["5.454"],
                              "ci_high": ["6.630"], "uk_mean": ["7.54"]}),
        "negative_effects": pl.DataFrame({"answer": ["yes", "no"], "respondents": ["c", "c"],
                                          "percent": ["c", "c"]}),
    }
    found = key_findings(pub)
    text = " ".join(f.text for f in found["1a"])
    for value in ("120", "131", "97", "80", "61"):
        assert value in text
    assert label("school").lower() in text
    check_numbers(text, pub, [r for f in found["1a"] for r in f.refs])
    life = " ".join(f.text for f in found["2b"])
    for value in ("6.042", "5.454", "6.630", "7.54"):
        assert value in life
    pub["delivery_indicators"] = pl.DataFrame({
        "indicator": ["allocation", "allocation", "goals_recorded", "goals_reviewed",
                      "specialist_returned"],
        "result": ["within_target", "over_target", "yes", "yes", "yes"],
        "n": ["70", "61", "110", "88", "12"], "percent": ["53", "47", "84", "80", "c"]})
    pub["length_of_support_km"] = pl.DataFrame({
        "n": ["131"], "events": ["97"], "censored": ["34"], "median_days": ["142"],
        "median_ci_low": ["120"], "median_ci_high": ["171"]})
    found = key_findings(pub)
    delivery = " ".join(f.text for f in found["1c"])
    for value in ("53", "84", "80", "142", "120", "171"):
        assert value in delivery
    check_numbers(delivery, pub, [r for f in found["1c"] for r in f.refs])
    # 12 returned but its percent is suppressed: the sentence is left out, not half-filled
    assert "12" not in " ".join(f.text for f in found["1b"])
    assert "not published" in " ".join(f.text for f in found["2c"])  # suppressed: said so
    assert not NUMBER.findall(" ".join(f.text for f in found["2c"]))
    assert found["1b"] == [] or all(not f.refs for f in found["1b"])  # tables missing


def test_word_report_has_the_same_sections(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    document = docx.Document(str(written.out / "report.docx"))
    paragraphs = document.paragraphs
    headings = [(p.style.name, p.text) for p in paragraphs if p.style.name.startswith("Heading")]
    titles = [text for style, text in headings if style == "Heading 1"]
    questions = [title for _key, title, *_ in QUESTIONS]
    assert titles[0] == "Summary" and titles[1].startswith("Caveats")
    assert [t for t in titles if t in questions] == questions
    assert titles[-2:] == ["Methods", "Provenance"]
    findings = key_findings(publication)
    for key, title, *_ in QUESTIONS:
        start = next(i for i, p in enumerate(paragraphs) if p.text == title)
        heading = next(i for i in range(start, len(paragraphs))
                       if paragraphs[i].text == "Key findings")
        assert paragraphs[heading].style.name == "Heading 2"
        text = paragraphs[heading + 1].text
        assert text == " ".join(f.text for f in findings[key])
        check_numbers(text, publication, [ref for f in findings[key] for ref in f.refs])
    caveat_start = next(i for i, p in enumerate(paragraphs) if p.text.startswith("Caveats"))
    assert paragraphs[caveat_start + 1].style.name == "List Bullet"
    # real Word tables, one per publication table, with a repeated header row
    assert len(document.tables) == len(published(publication))
    for table in document.tables:
        assert table.rows[0]._tr.xpath("./w:trPr/w:tblHeader")
    ons4 = next(t for t in document.tables if t.rows[0].cells[0].text == label("measure"))
    assert ons4.rows[1].cells[0].text == label("q1_life_satisfaction")
    assert ons4.rows[1].cells[1].text == str(publication["ons4"]["respondents"][0])
    assert len(document.inline_shapes) == 8  # the charts


def _sheet_xml(book: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its worksheet part, from the workbook and its relationships."""
    workbook = book.read("xl/workbook.xml").decode()
    rels = book.read("xl/_rels/workbook.xml.rels").decode()
    targets = dict(re.findall(r'Id="(rId\d+)"[^>]*Target="([^"]+)"', rels))
    targets |= {k: v for v, k in re.findall(r'Target="([^"]+)"[^>]*Id="(rId\d+)"', rels)}
    return {name: "xl/" + targets[rid].removeprefix("/xl/")
            for name, rid in re.findall(r'<sheet name="([^"]+)"[^>]*r:id="(rId\d+)"', workbook)}


def test_workbook_follows_the_analysis_function_guidance(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    with zipfile.ZipFile(written.workbook) as book:
        sheets = _sheet_xml(book)
        tables = [book.read(n).decode() for n in book.namelist()
                  if n.startswith("xl/tables/table")]
        names = set(re.findall(r'<table [^>]*name="([^"]+)"', " ".join(tables)))
    assert list(sheets)[:3] == ["Cover", "Contents", "Notes"]
    shown = published(publication)
    assert len(sheets) == 3 + len(shown)
    assert {"tbl_contents", "tbl_notes"} <= names
    assert len(names) == len(tables) == 2 + len(shown)
    # one named table per table sheet, whose cells are the publication cells: [c] where
    # suppressed, [z] where empty, never the restricted figure
    reader = fastexcel.read_excel(written.workbook)
    for info in shown:
        sheet = reader.load_sheet(info.sheet, header_row=None).to_polars()
        pub = publication[info.name]
        for r, row in enumerate(pub.iter_rows()):
            shown = sheet.row(3 + r)
            for c, value in enumerate(row):
                if value == "c":
                    assert shown[c] == "[c]", (info.name, r, c)
                elif value is None or value == "":
                    assert shown[c] == "[z]", (info.name, r, c)
                elif re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                    assert float(shown[c]) == float(value), (info.name, r, c)
                else:
                    assert shown[c] == label(value)
    notes = reader.load_sheet("Notes", header_row=None).to_polars()
    text = " ".join(str(v) for row in notes.iter_rows() for v in row if v is not None)
    assert "[c] = confidential" in text and "[z] = not applicable" in text


def test_demo_marks_simulated_figures_everywhere(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    demo = replace(context, simulated_responses=True)
    written = write_outputs(tmp_path / "run", analysis, publication, demo)
    page = written.report.read_text(encoding="utf-8")
    found = parse(page)
    assert found.banners.get("header") == 1
    for section in found.sections:
        if section != "provenance":
            assert found.banners.get(section) == 1, section
    assert 'class="print-banner"' in page and "@media print" in page
    assert written.manifest["simulated_responses"] is True
    document = docx.Document(str(written.out / "report.docx"))
    assert "SIMULATED" in document.sections[0].header.paragraphs[0].text
    with zipfile.ZipFile(written.workbook) as book:
        assert "SIMULATED" in book.read("xl/sharedStrings.xml").decode()


def test_simulated_responses_are_recognised(sqlite_runtime: Runtime) -> None:
    from tasks.analysis.steps import responses_are_simulated

    def imported(name: str, digest: str) -> None:
        with sqlite_runtime.engine.begin() as conn:
            conn.execute(query("survey_import_insert"), {
                "cluster_id": "pilot", "sha256": digest, "file_name": name,
                "imported_at": "2022-02-01T00:00:00+00:00", "rows_read": 1, "accepted": 1,
                "quarantined": 0})

    check = responses_are_simulated.fn
    imported("responses-wave1.csv", "a" * 64)
    assert check(sqlite_runtime.engine, "pilot") is False
    imported("SIMULATED-demo-responses-wave1.csv", "b" * 64)
    assert check(sqlite_runtime.engine, "pilot") is True
    assert check(sqlite_runtime.engine, "other") is False


def test_missing_tables_are_skipped(analysed, tmp_path: Path) -> None:
    from tasks.analysis.docx_report import write_docx
    from tasks.analysis.report import render_report

    analysis, publication, context = analysed
    fewer = {name: df for name, df in publication.items()
             if name not in ("ons4", "nonresponse_check", "population")}
    page = render_report(analysis, fewer, [], {}, context)
    found = parse(page)
    assert 'id="ons4"' not in page and 'id="referral_routes"' in page
    assert all(found.sections[f"rq-{key}"]["findings"][0] for key in RQ_KEYS)
    assert "no non-response check" in " ".join(found.sections["caveats"]["li"])
    write_docx(tmp_path / "fewer.docx", analysis, fewer, [], {}, context)
    titles = [p.text for p in docx.Document(str(tmp_path / "fewer.docx")).paragraphs]
    assert "ONS4 personal well-being" not in titles and "Referral routes" in titles
