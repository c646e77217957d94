"""Spreadsheet formula safety of every CSV and xlsx writer (CSV injection).

One rule, ``tasks.core.csvsafe.neutralise``: a text cell starting with ``= + - @``, a tab or a
carriage return gets a leading ``'``. Hostile strings go through each writer (fieldwork pack,
data-quality report, restricted and publication tables, the analysis workbook, the Framework
files) and are read back with ``csv`` and from the xlsx XML: no text cell starts a formula, no
cell is a formula, and figures (a negative one too) are written exactly as before.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from defusedxml import ElementTree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_analysis import analyse, base_study, survey_study

from tasks.analysis.framework import Framework, Matrix
from tasks.analysis.framework_data import Theme
from tasks.analysis.framework_files import write_framework
from tasks.analysis.manifest import ReportContext
from tasks.analysis.outputs import csv_bytes as table_csv_bytes
from tasks.analysis.outputs import write_tables
from tasks.analysis.publication import format_table, publication_tables
from tasks.analysis.registry import TABLES
from tasks.analysis.tables import Analysis
from tasks.analysis.workbook import write_workbook
from tasks.core.contacts import ContactRecord
from tasks.core.csvsafe import FORMULA_STARTS, csv_bytes, neutralise
from tasks.core.home import Home
from tasks.core.runtime import Runtime
from tasks.ingest.pipeline import REPORT_COLUMNS, IngestOutcome, TableCounts, write_quality_report
from tasks.ingest.reader import RawTables
from tasks.ingest.transform import Population
from tasks.survey.outgoing import Outgoing
from tasks.survey.packs import CALL_LIST_COLUMNS, MAIL_MERGE_COLUMNS, pack_members

HOSTILE = ("=cmd|' /C calc'!A0", "+1", "-1+1", "@SUM(1)", "\t=1", "\r=1")
_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t\r\n,\""),
                max_size=12)
#: A hostile string: one of the classic payloads, or any text after a formula start.
hostile = st.sampled_from(HOSTILE) | st.builds(lambda start, rest: start + rest,
                                               st.sampled_from(FORMULA_STARTS), _TEXT)
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def read_csv(data: bytes, *, bom: bool = False) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith("\ufeff") == bom
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))


def assert_no_formula_text(rows: Sequence[Sequence[str]]) -> None:
    bad = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    assert bad == []


def _unescape(text: str) -> str:
    """xlsx escapes control characters as ``_xHHHH_``."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def xlsx_cells(path: Path) -> list[tuple[str, str, object]]:
    """Every cell of every sheet as (sheet member, data type, value); type "f" = a formula.

    The same distinction as openpyxl's ``cell.data_type``: a cell with an ``<f>`` element is a
    formula, ``t="s"`` a shared string, ``t="inlineStr"``/``"str"`` text, ``t="e"`` an error,
    anything else a number.
    """
    with zipfile.ZipFile(path) as book:
        names = book.namelist()
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = [_unescape("".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t")))
                      for si in root.findall("m:si", NS)]
        cells: list[tuple[str, str, object]] = []
        for name in sorted(n for n in names if n.startswith("xl/worksheets/sheet")):
            root = ElementTree.fromstring(book.read(name))
            for c in root.iter(f"{{{NS['m']}}}c"):
                kind = c.get("t", "n")
                value = c.find("m:v", NS)
                if c.find("m:f", NS) is not None:
                    cells.append((name, "f", value.text if value is not None else None))
                elif kind == "s" and value is not None and value.text is not None:
                    cells.append((name, "s", shared[int(value.text)]))
                elif kind in ("inlineStr", "str"):
                    cells.append((name, "s", _unescape("".join(
                        t.text or "" for t in c.iter(f"{{{NS['m']}}}t")))))
                else:
                    cells.append((name, kind, value.text if value is not None else None))
    return cells


def assert_xlsx_safe(path: Path) -> list[str]:
    """No formula cell and no text cell starting a formula; the text cells."""
    cells = xlsx_cells(path)
    assert cells
    assert [c for c in cells if c[1] == "f"] == []
    texts = [str(v) for _, kind, v in cells if kind == "s"]
    assert [t for t in texts if t.startswith(FORMULA_STARTS)] == []
    return texts


# --------------------------------------------------------------------------- the rule


def test_rule_is_the_csvsafe_one() -> None:
    assert FORMULA_STARTS == ("=", "+", "-", "@", "\t", "\r")
    assert [neutralise(v) for v in HOSTILE] == ["'" + v for v in HOSTILE]
    assert [neutralise(v) for v in ("plain", "1", "", None, "'=x")] == ["plain", "1", "", "",
                                                                          "'=x"]


# --------------------------------------------------------------------------- fieldwork pack


def _contact(value: str) -> ContactRecord:
    return ContactRecord(lead_carer_name=value, address_line_1=value, address_line_2=None,
                         town=value, postcode=value, email=None, phone=value,
                         preferred_contact="post", do_not_contact=False)


@given(st.lists(hostile, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None)
def test_fieldwork_pack_csvs_are_formula_safe(values: list[str]) -> None:
    items = [Outgoing(f"tok{i}", f"F{i}", 1, "invitation", route)
             for i in range(len(values)) for route in ("post", "phone")]
    contacts = {f"F{i}": _contact(v) for i, v in enumerate(values)}
    members = pack_members(items, contacts, "https://survey.example/s/{token}")
    assert sorted(members) == ["call_list.csv", "mail_merge.csv"]
    for name, columns in (("mail_merge.csv", MAIL_MERGE_COLUMNS),
                          ("call_list.csv", CALL_LIST_COLUMNS)):
        data = members[name]
        assert data.startswith(b"\xef\xbb\xbftoken,kind,lead_carer_name,")  # BOM kept
        assert data.endswith(b"\r\n")  # CRLF kept
        rows = read_csv(data, bom=True)
        assert rows[0] == list(columns)
        assert_no_formula_text(rows)
        assert len(rows) == 1 + len(values)
        by_column = [dict(zip(columns, row, strict=True)) for row in rows[1:]]
        assert [r["lead_carer_name"] for r in by_column] == ["'" + v for v in values]
        assert [r["token"] for r in by_column] == [f"tok{i}" for i in range(len(values))]
        assert [r["survey_url"] for r in by_column] == [
            f"https://survey.example/s/tok{i}" for i in range(len(values))]
    post = read_csv(members["mail_merge.csv"], bom=True)
    assert {row[MAIL_MERGE_COLUMNS.index("address_line_2")] for row in post[1:]} == {""}


def test_pack_csv_bytes_exactly() -> None:
    items = [Outgoing("tokA", "F1", 1, "invitation", "phone")]
    members = pack_members(items, {"F1": _contact("+44 7700 900123")}, "u/{token}")
    assert members == {"call_list.csv": (
        "\ufefftoken,kind,lead_carer_name,phone,survey_url\r\n"
        "tokA,invitation,'+44 7700 900123,'+44 7700 900123,u/tokA\r\n").encode()}


# --------------------------------------------------------------------------- data-quality report


@given(st.lists(hostile, min_size=1, max_size=5, unique=True))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_quality_report_is_formula_safe(tmp_path: Path, values: list[str]) -> None:
    sha = "ab" * 32
    outcome = IngestOutcome(status="ingested", sha256=sha, error=None,
                            tables={"families": TableCounts(rows=3, loaded=2, quarantined=1)},
                            population=Population(families=2, episodes=2))
    raw = RawTables(frames={}, extra_columns={"families": values}, rows_read={"families": 3},
                    source="csv")
    report = write_quality_report(outcome, raw, None, {"episodes": 4}, Home(tmp_path))
    assert report.path == tmp_path / "outputs" / "data-quality" / f"{sha[:12]}.csv"
    rows = read_csv(report.path.read_bytes())
    assert rows[0] == list(REPORT_COLUMNS)
    assert_no_formula_text(rows)
    assert rows[1:4] == [["rows_read", "families", "", "", "3"],
                         ["rows_loaded", "families", "", "", "2"],
                         ["rows_quarantined", "families", "", "", "1"]]
    assert rows[4:-1] == [["extra_column_ignored", "families", "'" + v, "", "1"] for v in values]
    assert rows[-1] == ["outside_window", "episodes", "", "", "4"]
    # the returned frame (Prefect table artifact, markdown) still holds the names as read
    extra = report.frame.filter(pl.col("section") == "extra_column_ignored")
    assert extra["column"].to_list() == values


# --------------------------------------------------------------------------- analysis outputs


def test_table_csv_neutralises_labels_not_figures() -> None:
    frame = pl.DataFrame({"measure": ["=x", "-y", None, "ok"],
                          "ci_low": ["-0.500", "-1.000", None, "c"]})
    assert table_csv_bytes(frame, ["measure"]) == (
        b"measure,ci_low\n'=x,-0.500\n'-y,-1.000\n,\nok,c\n")
    assert table_csv_bytes(frame) == b"measure,ci_low\n=x,-0.500\n-y,-1.000\n,\nok,c\n"


def _labels(df: pl.DataFrame) -> list[str]:
    return [c for c, dtype in df.schema.items() if dtype == pl.String]


def _relabel(df: pl.DataFrame, columns: Sequence[str], mapping: dict[str, str]) -> pl.DataFrame:
    return df.with_columns(pl.Series(c, [None if v is None else mapping.get(v, v)
                                         for v in df[c].to_list()], dtype=pl.String)
                           for c in columns)


def _context() -> ReportContext:
    return ReportContext(cluster="pilot", window_start=date(2021, 1, 1),
                         window_end=date(2021, 12, 31), threshold=5,
                         generated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                         settings_sha256="0" * 64, code={})


def test_analysis_tables_and_workbook_are_formula_safe(sqlite_runtime: Runtime,
                                                       tmp_path: Path) -> None:
    analysis = analyse(sqlite_runtime, base_study(), survey_study())
    publication = publication_tables(analysis.tables, 5)
    labels = {name: _labels(df) for name, df in analysis.tables.items()}
    originals = sorted({v for name, df in analysis.tables.items() for c in labels[name]
                        for v in df[c].to_list() if v is not None})
    assert len(originals) > 20  # codes of many tables go through the writers
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    write_tables(baseline, analysis, publication)
    counter = itertools.count()

    @given(st.lists(hostile, min_size=1, max_size=8))
    @settings(max_examples=12, deadline=None)
    def check(values: list[str]) -> None:
        # every code becomes a hostile string (made unique by a suffix, keeping its start)
        mapping = {v: f"{values[i % len(values)]}#{i}" for i, v in enumerate(originals)}
        hostile_analysis = Analysis(
            tables={n: _relabel(df, labels[n], mapping) for n, df in analysis.tables.items()},
            issued=analysis.issued, respondents=analysis.respondents,
            single_respondent_strata=analysis.single_respondent_strata, notes=analysis.notes)
        hostile_publication = {n: _relabel(df, labels[n], mapping)
                               for n, df in publication.items()}
        root = tmp_path / f"run{next(counter)}"
        root.mkdir()
        write_tables(root, hostile_analysis, hostile_publication)
        for info in TABLES:
            for area in ("restricted", "publication"):
                rows = read_csv((root / area / f"{info.name}.csv").read_bytes())
                before = read_csv((baseline / area / f"{info.name}.csv").read_bytes())
                assert rows[0] == list(info.columns) == before[0]  # cli.md columns, exactly
                assert_no_formula_text(rows)
                assert len(rows) == len(before)
                for col, name in enumerate(info.columns):
                    now = [row[col] for row in rows[1:]]
                    was = [row[col] for row in before[1:]]
                    if name in labels[info.name]:
                        assert now == [neutralise(mapping[v]) if v else v for v in was]
                    else:
                        assert now == was  # figures untouched, negative ones included
        book = root / "workbook.xlsx"
        write_workbook(book, hostile_analysis, hostile_publication, _context())
        texts = assert_xlsx_safe(book)
        assert any(t.startswith("'") and "#" in t for t in texts)

    check()


def test_restricted_figures_unchanged_for_a_negative_ci(sqlite_runtime: Runtime,
                                                        tmp_path: Path) -> None:
    analysis = analyse(sqlite_runtime, base_study(), survey_study())
    info = next(i for i in TABLES if i.name == "ons4")
    ons4 = analysis.tables["ons4"].with_columns(pl.lit(-0.25).alias("ci_low"))
    tables = {**analysis.tables, "ons4": ons4}
    write_tables(tmp_path, Analysis(tables, analysis.issued, analysis.respondents,
                                    analysis.single_respondent_strata, analysis.notes),
                 publication_tables(tables, 5))
    rows = read_csv((tmp_path / "restricted" / "ons4.csv").read_bytes())
    assert rows[0] == list(info.columns)
    assert {row[info.columns.index("ci_low")] for row in rows[1:]} == {"-0.250"}
    assert (tmp_path / "restricted" / "ons4.csv").read_bytes() == (
        format_table(info, ons4).write_csv(line_terminator="\n").encode())


# --------------------------------------------------------------------------- Framework files

def test_csvsafe_quotes_a_bare_carriage_return() -> None:
    """A bare CR is a row break in Excel: a cell holding one is quoted whatever the line ending."""
    rows = read_csv(csv_bytes(["a"], [["\r=1"], ["x\ry"]]))
    assert rows == [["a"], ["'\r=1"], ["x\ry"]]


@given(st.lists(hostile, min_size=3, max_size=6))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_framework_files_are_formula_safe(tmp_path: Path, values: list[str]) -> None:
    theme = Theme("Access", ("",), "access")
    matrix = Matrix(theme, ("pseudonym", "strand", "role", "Access"),
                    tuple(("P1", "family", "carer", v) for v in values))
    framework = Framework("analysed", matrices=(matrix,),
                          counts=(("Access", values[0], 1, 0, 2),),
                          triangulation_header=("theme", "survey"),
                          triangulation=(("Access", values[1]),))
    root = tmp_path / f"f{abs(hash(tuple(values)))}"
    written = write_framework(root, framework)
    assert "restricted/framework.xlsx" in written
    for name in ("restricted/framework/access.csv", "restricted/framework_counts.csv",
                 "restricted/triangulation.csv"):
        assert_no_formula_text(read_csv((root / name).read_bytes()))
    rows = read_csv((root / "restricted/framework/access.csv").read_bytes())
    assert [row[3] for row in rows[1:]] == ["'" + v for v in values]
    counts = read_csv((root / "restricted/framework_counts.csv").read_bytes())
    assert counts[1] == ["Access", "'" + values[0], "1", "0", "2"]
    # framework.xlsx keeps a quote as written, in a typed text cell: never a formula
    cells = xlsx_cells(root / "restricted/framework.xlsx")
    assert [c for c in cells if c[1] == "f"] == []
    assert [v for _, kind, v in cells if kind == "s"][4:] == [
        x for v in values for x in ("P1", "family", "carer", v)]
