"""tasks.analysis.report: output folder rules, files, workbook, charts, manifest and the HTML report.

The Playwright test opens report.html in headless Chromium with the network cut off and
checks that every chart rendered and that the page asked for nothing but itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import fastexcel
import pytest
from test_analysis import survey_study

from tasks.analysis.charts import OKABE_ITO, draw_charts
from tasks.analysis.folder import check_output_dir
from tasks.analysis.labels import label
from tasks.analysis.manifest import ReportContext, make_context, settings_digest
from tasks.analysis.outputs import write_outputs
from tasks.analysis.publication import publication_tables
from tasks.analysis.registry import TABLES, TABLES_BY_NAME
from tasks.analysis.report import render_report
from tasks.analysis.study_data import load_study_data
from tasks.analysis.tables import build_analysis
from tasks.core.errors import UserFacingError
from tasks.core.runtime import Runtime
from tasks.core.settings import Settings

WHEN = datetime(2022, 3, 1, 12, 0, tzinfo=UTC)


# --- the output folder ------------------------------------------------------------------------


def test_output_folder_rules(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new") == "new"
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty") == "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserFacingError, match="not a folder"):
        check_output_dir(tmp_path / "file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserFacingError, match="did not write"):
        check_output_dir(other)
    # a manifest that is not ours does not make a folder replaceable
    (other / "notes.txt").unlink()
    (other / "manifest.json").write_text('{"generator": "something else"}')
    with pytest.raises(UserFacingError):
        check_output_dir(other)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "manifest.json").write_text('{"generator": "cluster-eval analyse"}')
    (ours / "report.html").write_text("old")
    assert check_output_dir(ours) == "replace"
    (ours / "extra.csv").write_text("someone's")  # an earlier run plus a stranger: refuse
    with pytest.raises(UserFacingError):
        check_output_dir(ours)


def test_write_outputs_files_and_manifest(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    out = tmp_path / "run"
    written = write_outputs(out, analysis, publication, context)
    assert written.out == out.resolve()
    restricted = (out / "restricted" / "ons4.csv").read_text()
    assert restricted.splitlines()[0] == ("measure,respondents,mean,weighted_mean,"
                                          "standard_error,ci_low,ci_high,uk_mean")
    assert restricted.splitlines()[1] == "q1_life_satisfaction,4,6.250,5.875,0.302,5.283,6.467,7.54"
    published = (out / "publication" / "ons4.csv").read_text().splitlines()
    assert published[1] == "q1_life_satisfaction,c,c,c,c,c,c,7.54"  # 4 respondents
    assert (out / "restricted" / "referral_routes.csv").read_bytes().endswith(b"\n")
    assert b"\r" not in (out / "restricted" / "referral_routes.csv").read_bytes()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == written.manifest
    assert manifest["generated_at"] == "2022-03-01T12:00:00+00:00"
    assert manifest["study_window"] == {"start": "2021-01-01", "end": "2021-06-30"}
    assert manifest["disclosure_threshold"] == 5 and manifest["survey_minimum_respondents"] == 6
    assert manifest["sampling"] == [{"wave": 1, "seed": 42, "size": 8,
                                     "stratify_by": "primary_issue",
                                     "drawn_at": "2022-01-10T09:00:00+00:00"}]
    assert manifest["tables"]["response_rates"]["rows"] == 4
    assert manifest["single_respondent_strata"]["q1_life_satisfaction"] == ["housing"]
    assert set(manifest["tables"]) == {info.name for info in TABLES}
    for relative, digest in manifest["files"].items():
        assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == digest
    assert "manifest.json" not in manifest["files"]
    assert len([f for f in manifest["files"] if f.startswith("charts/")]) == 16


def test_settings_digest_ignores_places_but_not_choices(tmp_path: Path) -> None:
    a = Settings(home=tmp_path / "a", database_url="sqlite:///a.db")
    b = Settings(home=tmp_path / "b", database_url="postgresql://u:secret@h/db")
    c = Settings(home=tmp_path / "a", disclosure={"threshold": 7})
    assert settings_digest(a) == settings_digest(b) != settings_digest(c)


def test_replacing_an_earlier_run_and_failing_midway(analysed, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    analysis, publication, context = analysed
    tmp_path = tmp_path / "outputs"  # the database lives in tmp_path itself
    out = tmp_path / "run"
    write_outputs(out, analysis, publication, context)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.csv")}

    import tasks.analysis.outputs as report

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_workbook", broken)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(out, analysis, publication, context)
    # the earlier run is untouched and no staging folder is left
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.csv")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(OSError):
        write_outputs(tmp_path / "fresh", analysis, publication, context)
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()

    later = ReportContext(**{**context.__dict__, "generated_at": datetime(2023, 1, 1, tzinfo=UTC)})
    write_outputs(out, analysis, publication, later)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.csv")} == before
    assert json.loads((out / "manifest.json").read_text())["generated_at"].startswith("2023")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_workbook_sheets_banners_and_readme(analysed, tmp_path: Path) -> None:
    # issue 10: the workbook follows the Analysis Function's spreadsheet guidance (Cover,
    # Contents, Notes, one publication table per sheet, [c] and [z]); it replaces the README
    # and the restricted/pub_ sheet pairs, whose exact figures stay in restricted/*.csv.
    analysis, publication, context = analysed
    write_outputs(tmp_path / "run", analysis, publication, context)
    book = fastexcel.read_excel(tmp_path / "run" / "analysis.xlsx")
    names = book.sheet_names
    assert names[:3] == ["Cover", "Contents", "Notes"] and len(names) == 3 + len(TABLES)
    assert all(len(n) <= 31 for n in names) and len(set(names)) == len(names)
    for info in TABLES:
        assert info.sheet in names
    pub = book.load_sheet("ons4", header_row=None).to_polars()
    assert pub.row(0)[0] == TABLES_BY_NAME["ons4"].title
    assert pub.row(2) == tuple(label(c) for c in TABLES_BY_NAME["ons4"].columns)
    assert pub.row(3)[:2] == (label("q1_life_satisfaction"), "[c]")  # 4 respondents
    notes = book.load_sheet("Notes", header_row=None).to_polars()
    text = " ".join(str(v) for row in notes.iter_rows() for v in row if v is not None)
    assert "[c]" in text and "[z]" in text and "type 7" in text
    contents = book.load_sheet("Contents", header_row=None).to_polars()
    text = " ".join(str(v) for row in contents.iter_rows() for v in row if v is not None)
    for info in TABLES:
        assert info.title in text


def test_charts_use_publication_figures_only(analysed) -> None:
    analysis, publication, _ = analysed
    charts = {c.name: c for c in draw_charts(publication, 5)}
    assert set(charts) == {"referral_routes", "presenting_issues", "closure_outcomes",
                           "length_of_support", "ons4", "response_rates",
                           "referrals_received", "length_of_support_median"}
    # 13 in-window episodes: school 6 is shown; health_via_spa 1 is hidden ("c")
    assert f"{label('school')} 6" in charts["referral_routes"].alt
    # plain-language labels from the one code -> label mapping (issue 10)
    assert f"{label('health_via_spa')} c" in charts["referral_routes"].alt
    assert charts["referral_routes"].caption.startswith("n=13 in-window episodes")
    assert "n=c closed episodes" in charts["closure_outcomes"].caption  # 4 closed: hidden
    # 4 respondents: no weighted mean is published, so the chart cannot show one
    assert "weighted mean c" in charts["ons4"].alt
    for chart in charts.values():
        assert chart.title and chart.alt and "n=" in chart.caption
        for ax in chart.figure.axes:
            if ax.get_visible() and ax.axison and ax.has_data():
                assert ax.get_xlabel() or ax.get_ylabel()
    bar_colours = {p.get_facecolor() for p in charts["referral_routes"].figure.axes[0].patches}
    from matplotlib.colors import to_rgba

    assert bar_colours <= {to_rgba(c) for c in OKABE_ITO}


def test_report_is_self_contained_and_says_what_it_is(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    page = written.report.read_text(encoding="utf-8")
    assert not re.search(r'(?:src|href)="(?!data:|#)', page)
    assert "http://" not in page and "https://" not in page
    assert page.count("<img ") == 8 and page.count('src="data:image/png;base64,') == 8
    assert all(alt for alt in re.findall(r'alt="([^"]*)"', page))
    assert "type 7" in page and "publication-safe" in page and "Complete." in page
    assert "single respondent" in page  # housing stratum on q1-q4
    for info in TABLES:
        assert f'id="{info.name}"' in page


def test_report_escapes_text_from_the_data(analysed) -> None:
    analysis, publication, context = analysed
    hostile = "<script>alert(1)</script>"
    waves = [{**context.waves[0], "stratify_by": hostile}]
    page = render_report(analysis, publication, [], {}, replace(context, waves=waves))
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_without_responses_says_so(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    study = survey_study()
    study.responses.clear()
    with sqlite_runtime.engine.begin() as conn:
        study.insert(conn)
    with sqlite_runtime.engine.connect() as conn:
        data = load_study_data(conn, "pilot")
    analysis = build_analysis(data)
    context = make_context(sqlite_runtime.settings, data.extracts, data.waves, WHEN)
    written = write_outputs(tmp_path / "run", analysis, publication_tables(analysis.tables, 5),
                            context)
    page = written.report.read_text(encoding="utf-8")
    assert "No survey responses have been imported yet" in page
    assert written.manifest["survey_status"] == "no_responses"
    assert written.manifest["status"] == "complete"
    ons4 = (tmp_path / "run" / "restricted" / "ons4.csv").read_text().splitlines()
    assert ons4[1] == "q1_life_satisfaction,0,,,,,,7.54"


# --- the report in a real browser -------------------------------------------------------------

CHROMIUM = os.environ.get("CLUSTER_EVAL_TEST_CHROMIUM", "/usr/bin/chromium")


def test_report_renders_offline_in_chromium(analysed, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (set CLUSTER_EVAL_TEST_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.route(re.compile(r"^https?://"), lambda route: route.abort())
            page.goto(written.report.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.alt])")
            title = page.title()
            tables = page.eval_on_selector_all("table", "els => els.length")
            # screenshots for a reader of the test run (issue 10): first page, one research
            # question's section, the ONS4 bands chart
            shots = tmp_path / "screenshots"
            shots.mkdir()
            page.set_viewport_size({"width": 1280, "height": 1600})
            page.screenshot(path=str(shots / "first-page.png"))
            page.locator("#rq-1b").screenshot(path=str(shots / "rq-1b.png"))
            bands = "#chart-ons4_bands" if page.locator("#chart-ons4_bands").count() else \
                "#chart-ons4"
            page.locator(bands).screenshot(path=str(shots / "bands-chart.png"))
        finally:
            browser.close()
    assert title == "Cluster evaluation: analysis report"
    assert len(images) == 8
    for complete, width, height, alt in images:
        assert complete and width > 0 and height > 0 and alt
    assert tables == len(TABLES)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    for name in ("first-page.png", "rq-1b.png", "bands-chart.png"):
        shot = (tmp_path / "screenshots" / name).read_bytes()
        assert len(shot) > 1000 and shot.startswith(b"\x89PNG\r\n\x1a\n"), name

