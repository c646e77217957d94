"""Charts of the protocol's further measures: referrals received by month, and the Kaplan-Meier
median length of support with its 95% CI (published figures only), placed in RQ 1a's section.

The chart data are checked against the publication CSV files read back independently, and
against hand-made publication tables with suppressed cells.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import docx
import polars as pl

from tasks.analysis.charts import (
    SUPPRESSED_COLOUR,
    draw_charts,
    length_of_support_median,
    length_of_support_median_chart,
    referrals_received_bars,
    referrals_received_chart,
)
from tasks.analysis.outputs import write_outputs
from tasks.analysis.sections import build_document

NEW_CHARTS = ("referrals_received", "length_of_support_median")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _hand_made() -> dict[str, pl.DataFrame]:
    """Publication tables as analyse would write them, with suppressed cells."""
    return {
        "referrals_received": pl.DataFrame({
            "month": ["2021-01", "2021-02", "2021-03", "2021-04"],
            "episodes": ["31", "c", "c", "0"]}),
        "length_of_support_km": pl.DataFrame({
            "n": ["296"], "events": ["225"], "censored": ["71"], "median_days": ["148"],
            "median_ci_low": ["131"], "median_ci_high": [None]}),
    }


def test_month_bars_flag_suppressed_months_and_give_no_number() -> None:
    pub = _hand_made()
    bars = referrals_received_bars(pub)
    assert [(b.month, b.cell, b.episodes, b.suppressed) for b in bars] == [
        ("2021-01", "31", 31, False), ("2021-02", "c", None, True),
        ("2021-03", "c", None, True), ("2021-04", "0", 0, False)]
    chart = referrals_received_chart(pub)
    assert "2021-02 c" in chart.alt and "2021-01 31" in chart.alt
    assert "n=c" in chart.caption  # a total would give the suppressed months away
    ax = chart.figure.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("c") == 2 and "31" in texts and "0" in texts
    from matplotlib.colors import to_rgba

    grey = [p for p in ax.patches if p.get_facecolor()[:3] == to_rgba(SUPPRESSED_COLOUR)[:3]]
    assert len(grey) == 2 and all(p.get_hatch() for p in grey)
    # the hatched columns are all the same height: they encode no number
    assert len({p.get_height() for p in grey}) == 1


def test_median_view_is_the_published_row() -> None:
    pub = _hand_made()
    km = length_of_support_median(pub)
    assert (km.n, km.events, km.censored, km.median, km.ci_low, km.ci_high) == (
        "296", "225", "71", "148", "131", "-")  # upper limit not reached
    chart = length_of_support_median_chart(pub)
    assert chart.caption.startswith("n=296 in-window episodes: 225 closed (events), 71 still")
    assert "log-log" in chart.caption
    pub["length_of_support_km"] = pl.DataFrame({
        "n": ["296"], "events": ["c"], "censored": ["c"], "median_days": ["c"],
        "median_ci_low": ["c"], "median_ci_high": ["c"]})
    chart = length_of_support_median_chart(pub)
    assert "225" not in chart.caption and "c closed (events)" in chart.caption
    assert "not published (c)" in [t.get_text() for t in chart.figure.axes[0].texts][0]
    assert not chart.figure.axes[0].lines  # no point, no interval


def test_chart_data_are_the_publication_figures(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    months = _csv_rows(written.out / "publication" / "referrals_received.csv")
    bars = referrals_received_bars(publication)
    assert [b.month for b in bars] == [r["month"] for r in months]
    for bar, row in zip(bars, months, strict=True):
        assert bar.cell == row["episodes"]
        assert bar.suppressed == (row["episodes"] == "c")
        assert bar.episodes == (None if row["episodes"] == "c" else int(row["episodes"]))
    (km_row,) = _csv_rows(written.out / "publication" / "length_of_support_km.csv")
    km = length_of_support_median(publication)
    shown = {k: (v if v else "-") for k, v in km_row.items()}
    assert (km.n, km.events, km.censored, km.median, km.ci_low, km.ci_high) == tuple(
        shown[c] for c in ("n", "events", "censored", "median_days", "median_ci_low",
                           "median_ci_high"))
    # every number in the charts' captions and alt texts is a published cell (or the threshold)
    published = {v for df in publication.values() for row in df.iter_rows() for v in row
                 if v is not None} | {"1", "5", "95"}
    charts = {c.name: c for c in draw_charts(publication, 5)}
    for name in NEW_CHARTS:
        text = charts[name].caption + " " + charts[name].alt
        for number in re.findall(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-])", text):
            assert number in published or number == str(
                sum(b.episodes or 0 for b in bars)), (name, number)
    # the files are written
    for name in NEW_CHARTS:
        for ext in ("png", "svg"):
            path = written.out / "charts" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0
        assert f"charts/{name}.png" in written.manifest["files"]


def test_new_charts_sit_in_rq_1a(analysed, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    charts = draw_charts(publication, 5)
    document = build_document(analysis, publication, charts,
                              {c.name: b"png" for c in charts}, context)
    placed = {f.chart.name: s.key for s in document.sections for f in s.figures}
    assert all(placed[name] == "1a" for name in NEW_CHARTS)
    written = write_outputs(tmp_path / "run", analysis, publication, context)
    page = written.report.read_text(encoding="utf-8")
    start, end = page.index('id="rq-1a"'), page.index('id="rq-1b"')
    for name in NEW_CHARTS:
        assert start < page.index(f'id="chart-{name}"') < end
    paragraphs = [p.text for p in docx.Document(str(written.out / "report.docx")).paragraphs]
    first, second = paragraphs.index(document.sections[0].title), paragraphs.index(
        document.sections[1].title)
    titles = {c.name: c.title for c in charts}
    for name in NEW_CHARTS:
        caption = next(i for i, text in enumerate(paragraphs)
                       if text.startswith(f"{titles[name]}. "))
        assert first < caption < second
