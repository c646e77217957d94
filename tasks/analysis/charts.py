"""The report's charts, drawn from the publication (suppressed) tables only: PNG and SVG files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tasks.analysis import labels  # noqa: E402
from tasks.analysis.disclosure import SUPPRESSED  # noqa: E402
from tasks.analysis.publication import survey_minimum  # noqa: E402
from tasks.analysis.registry import ALL  # noqa: E402

#: Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), black first.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
             "#CC79A7")
BAR = "#0072B2"
UK = "#000000"
#: How good each ONS threshold band is, worst (0) to best (3). A low score is bad for life
#: satisfaction, worthwhile and happiness, and good for anxiety (a low anxiety score).
BAND_QUALITY: dict[str, dict[str, int]] = {
    "positive": {"low": 0, "medium": 1, "high": 2, "very_high": 3},
    "anxiety": {"high": 0, "medium": 1, "low": 2, "very_low": 3},
}
ANXIETY = "q4_anxious_yesterday"
#: Okabe-Ito colours per quality, worst to best: vermillion, orange, sky blue, blue.
QUALITY_COLOURS = (OKABE_ITO[6], OKABE_ITO[1], OKABE_ITO[2], OKABE_ITO[5])
#: The legend's words per quality, naming the bands of both kinds of measure.
QUALITY_LABELS = (
    "worst: low (0-4); anxiety high (6-10)",
    "poorer: medium (5-6); anxiety medium (4-5)",
    "better: high (7-8); anxiety low (2-3)",
    "best: very high (9-10); anxiety very low (0-1)",
)
SUPPRESSED_COLOUR = "#BBBBBB"
SUPPRESSED_HATCH = "///"


def _number(text: str | None) -> float | None:
    """A published cell as a number; None for suppressed ("c") or empty cells."""
    if text is None or text in ("", SUPPRESSED):
        return None
    return float(text)


def _shown(text: str | None) -> str:
    """A published cell as chart text: the cell, "c" when suppressed, "-" when empty."""
    return SUPPRESSED if text == SUPPRESSED else ("-" if text in (None, "") else str(text))


def label(code: str) -> str:
    """A code as words, from the one code -> label mapping (``tasks.analysis.labels``)."""
    return labels.label(code)


@dataclass(frozen=True)
class Chart:
    """One chart: file stem, title, caption (with n=), alt text and the section it sits in."""

    name: str
    title: str
    caption: str
    alt: str
    section: str
    figure: Figure = field(repr=False)


def _new_figure(height: float = 4.6) -> tuple[Figure, Any]:
    """A figure 8 inches wide with one open-topped axes."""
    fig = Figure(figsize=(8.0, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _hbar(ax: Any, labels: Sequence[str], cells: Sequence[str | None], xlabel: str) -> None:
    """Horizontal bars of published counts; a suppressed bar is drawn as its "c" marker."""
    values = [_number(c) for c in cells]
    positions = list(range(len(labels)))[::-1]
    ax.barh(positions, [v or 0 for v in values], color=BAR)
    ax.set_yticks(positions, labels)
    top = max([v for v in values if v is not None] + [1])
    for y, value, cell in zip(positions, values, cells, strict=True):
        ax.text((value or 0) + top * 0.01, y, _shown(cell), va="center", fontsize=9)
    ax.set_xlim(0, top * 1.12)
    ax.set_xlabel(xlabel)


def _n(pub: Mapping[str, pl.DataFrame], column: str) -> str:
    """A published population count as chart text."""
    return _shown(pub["population"][column][0])


def _count_chart(pub: Mapping[str, pl.DataFrame], table: str, code: str, title: str,
                 ylabel: str, n_text: str, section: str, extra: str = "") -> Chart:
    """Horizontal bars of a count table's ``episodes`` column by its ``code`` column."""
    df = pub[table]
    fig, ax = _new_figure(max(3.2, 0.42 * df.height + 1.4))
    labels = [label(c) for c in df[code].to_list()]
    _hbar(ax, labels, df["episodes"].to_list(), "episodes")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    caption = (f"{n_text}. {extra}Counts 1-{{t}} and the cells needed to protect them are "
               "shown as c.")
    pairs = ", ".join(f"{a} {_shown(b)}" for a, b in zip(labels, df["episodes"], strict=True))
    alt = f"Horizontal bar chart: {title.lower()}. {pairs}."
    return Chart(table, title, caption, alt, section, fig)


def referral_routes_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """In-window episodes by referral route."""
    return _count_chart(pub, "referral_routes", "referral_route", "Referral routes",
                        "referral route", f"n={_n(pub, 'episodes')} in-window episodes",
                        "administrative")


def presenting_issues_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """In-window episodes by presenting issue (multiple counting)."""
    return _count_chart(pub, "presenting_issues", "issue", "Presenting issues",
                        "presenting issue", f"n={_n(pub, 'episodes')} in-window episodes",
                        "administrative", "An episode counts under each of its issues. ")


def closure_outcomes_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """Closed in-window episodes by closure outcome."""
    return _count_chart(pub, "closure_outcomes", "closure_outcome", "Outcomes at closure",
                        "closure outcome", f"n={_n(pub, 'closed_episodes')} closed episodes",
                        "closure")


def length_of_support_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """Distribution of length of support (banded days) of closed episodes."""
    df = pub["length_of_support_bands"]
    fig, ax = _new_figure()
    cells = df["episodes"].to_list()
    values = [_number(c) for c in cells]
    positions = list(range(df.height))
    ax.bar(positions, [v or 0 for v in values], color=BAR)
    ax.set_xticks(positions, df["band"].to_list())
    top = max([v for v in values if v is not None] + [1])
    for x, value, cell in zip(positions, values, cells, strict=True):
        ax.text(x, (value or 0) + top * 0.015, _shown(cell), ha="center", fontsize=9)
    ax.set_ylim(0, top * 1.12)
    ax.set_xlabel("days from referral to closure")
    ax.set_ylabel("closed episodes")
    ax.set_title("Length of support")
    pairs = ", ".join(f"{b} days {_shown(c)}" for b, c in zip(df["band"], cells, strict=True))
    return Chart("length_of_support", "Length of support",
                 f"n={_n(pub, 'closed_episodes')} closed episodes. Counts 1-{{t}} and the cells "
                 "needed to protect them are shown as c.",
                 f"Bar chart of closed episodes by length of support: {pairs}.", "support", fig)


#: How the report names the ONS4 measures.
MEASURE_LABELS = {m: labels.label(m) for m in ("q1_life_satisfaction", "q2_worthwhile",
                                                "q3_happy_yesterday", "q4_anxious_yesterday")}


def ons4_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """ONS4: weighted means with 95% CI against the UK means, and the threshold bands."""
    ons4, bands = pub["ons4"], pub["ons4_bands"]
    fig = Figure(figsize=(10.0, 6.0), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.25], height_ratios=[1, 0.26])
    left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    key = fig.add_subplot(grid[1, :])
    key.axis("off")
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    measures = ons4["measure"].to_list()
    names = [MEASURE_LABELS.get(m, label(m)) for m in measures]
    ys = list(range(len(measures)))[::-1]
    alt_parts = _ons4_means(left, ons4, ys, names)
    _ons4_bands(right, bands, measures, ys, names)
    _ons4_key(key)
    fig.suptitle("ONS4 personal well-being")
    n_text = ", ".join(f"{n} n={_shown(r)}" for n, r in
                       zip(names, ons4["respondents"].to_list(), strict=True))
    caption = (f"{n_text} respondents. Anxiety: lower is better. Means from fewer than "
               f"{{m}} respondents are not published.")
    return Chart("ons4", "ONS4 personal well-being", caption,
                 "Dot plot and stacked bars of ONS4 well-being: " + "; ".join(alt_parts) + ".",
                 "survey", fig)


def _ons4_means(ax: Any, ons4: pl.DataFrame, ys: Sequence[int], names: Sequence[str]) -> list[str]:
    """Weighted means with their CI and the UK means, one row per measure; the alt text parts."""
    alt_parts = []
    for y, row in zip(ys, ons4.iter_rows(named=True), strict=True):
        est, low, high = (_number(row[c]) for c in ("weighted_mean", "ci_low", "ci_high"))
        uk = _number(row["uk_mean"])
        if est is not None:
            err = [[est - low], [high - est]] if low is not None and high is not None else None
            ax.errorbar([est], [y], xerr=err, fmt="o", color=BAR, capsize=4,
                        label="this study (weighted, 95% CI)" if y == ys[0] else None)
        else:
            ax.text(0.2, y, "not published" if row["respondents"] != "0" else "no responses",
                    va="center", fontsize=9)
        if uk is not None:
            ax.plot([uk], [y], marker="D", linestyle="none", color=UK,
                    label="UK, year ending March 2022" if y == ys[0] else None)
        alt_parts.append(f"{MEASURE_LABELS.get(row['measure'], row['measure'])}: weighted mean "
                         f"{_shown(row['weighted_mean'])}, UK {_shown(row['uk_mean'])}")
    ax.set_yticks(ys, names)
    ax.set_xlim(0, 10)
    ax.set_xlabel("mean score (0-10)")
    ax.set_title("Means against the UK")
    ax.set_ylim(-0.6, len(ys) - 0.4)
    return alt_parts


@dataclass(frozen=True)
class BandSegment:
    """One segment of a measure's stacked bar: a band (or the suppressed bands together)."""

    band: str  # a band code, or SUPPRESSED for the suppressed bands together
    start: float
    width: float
    colour: str
    quality: int | None  # 0 worst .. 3 best; None for the suppressed segment

    @property
    def suppressed(self) -> bool:
        """True for the segment standing for the suppressed bands."""
        return self.band == SUPPRESSED


def band_quality(measure: str, band: str) -> int:
    """How good a band is for this measure, 0 (worst) to 3 (best)."""
    return BAND_QUALITY["anxiety" if measure == ANXIETY else "positive"][band]


def ons4_band_segments(bands: pl.DataFrame, measure: str) -> list[BandSegment]:
    """The published bands of one measure as bar segments, worst band first.

    Each published band is a segment of its percent, coloured by how good the band is for the
    measure. Suppressed bands ("c") are one grey segment at the end, 100 minus the published
    percentages, so the bar reaches 100. No segments when nothing is published (no base).
    """
    rows = bands.filter(pl.col("measure") == measure).iter_rows(named=True)
    published: list[tuple[int, str, float]] = []
    any_suppressed = False
    for row in rows:
        if row["percent"] == SUPPRESSED:
            any_suppressed = True
        elif (share := _number(row["percent"])) is not None:
            published.append((band_quality(measure, row["band"]), row["band"], share))
    segments: list[BandSegment] = []
    start = 0.0
    for quality, band, share in sorted(published):
        segments.append(BandSegment(band, start, share, QUALITY_COLOURS[quality], quality))
        start += share
    if any_suppressed:
        segments.append(BandSegment(SUPPRESSED, start, max(0.0, 100.0 - start),
                                    SUPPRESSED_COLOUR, None))
    return segments


def _ons4_bands(ax: Any, bands: pl.DataFrame, measures: Sequence[str], ys: Sequence[int],
                names: Sequence[str]) -> None:
    """Stacked bars of the published threshold bands, one row per measure, worst band left."""
    shown_bands = False
    for y, measure in zip(ys, measures, strict=True):
        for seg in ons4_band_segments(bands, measure):
            shown_bands = shown_bands or not seg.suppressed
            ax.barh([y], [seg.width], left=[seg.start], color=seg.colour, edgecolor="white",
                    hatch=SUPPRESSED_HATCH if seg.suppressed else None)
            if seg.width >= 8:
                text = SUPPRESSED if seg.suppressed else f"{seg.width:g}%"
                ax.text(seg.start + seg.width / 2, y, text, ha="center", va="center",
                        fontsize=8, color="#000000" if seg.quality != 3 else "#FFFFFF")
    ax.set_yticks(ys, names)
    ax.set_ylim(-0.6, len(ys) - 0.4)
    ax.set_xlim(0, 100)
    ax.set_xlabel("percent of respondents (worst band left; c: suppressed)")
    ax.set_title("ONS thresholds")
    if not shown_bands:
        ax.text(50, (len(ys) - 1) / 2, "no band figures can be published", ha="center",
                va="center", fontsize=9)


def _ons4_key(ax: Any) -> None:
    """The legend of both panels, below them: bands by good/bad, anxiety's reversed."""
    handles = [
        Line2D([], [], marker="o", color=BAR, linestyle="none",
               label="this study (weighted mean, 95% CI)"),
        Line2D([], [], marker="D", color=UK, linestyle="none", label="UK, year ending March 2022"),
        *(Patch(color=colour, label=text)
          for colour, text in zip(QUALITY_COLOURS, QUALITY_LABELS, strict=True)),
        Patch(facecolor=SUPPRESSED_COLOUR, hatch=SUPPRESSED_HATCH, edgecolor="white",
              label="suppressed bands (c)"),
    ]
    ax.legend(handles=handles, loc="center", ncol=3, fontsize=8, frameon=False,
              title="Bands: for anxiety a low score is good, for the other measures a low "
                    "score is bad", title_fontsize=8)


def response_rates_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """Response rate per wave (the wave totals)."""
    df = pub["response_rates"].filter(pl.col("stratum") == ALL)
    fig, ax = _new_figure(3.8)
    waves = [f"wave {w}" for w in df["wave"].to_list()]
    rates = [_number(r) for r in df["response_rate"].to_list()]
    positions = list(range(len(waves)))
    ax.bar(positions, [(r or 0) * 100 for r in rates], color=BAR, width=0.6)
    for x, rate, cell in zip(positions, rates, df["response_rate"].to_list(), strict=True):
        shown = f"{rate * 100:.1f}%" if rate is not None else _shown(cell)
        ax.text(x, (rate or 0) * 100 + 1.5, shown, ha="center", fontsize=9)
    ax.set_xticks(positions, waves)
    ax.set_ylim(0, 105)
    ax.set_ylabel("response rate (% of households issued)")
    ax.set_xlabel("survey wave")
    ax.set_title("Survey response rate by wave")
    if not waves:
        ax.text(0.5, 0.5, "no survey wave drawn yet", ha="center", transform=ax.transAxes)
    issued = ", ".join(f"{w} n={_shown(i)}" for w, i in
                       zip(waves, df["issued"].to_list(), strict=True)) or "n=0"
    alt = "Bar chart of response rate by survey wave: " + (", ".join(
        f"{w} {_shown(c)}" for w, c in zip(waves, df["response_rate"].to_list(), strict=True))
        or "no wave yet") + "."
    return Chart("response_rates", "Survey response rate by wave",
                 f"{issued} households issued.", alt, "survey", fig)


@dataclass(frozen=True)
class MonthBar:
    """One month of the published referrals-received table: its cell and its number, if any."""

    month: str
    cell: str  # the published text: a count, or "c" when suppressed
    episodes: int | None  # None when suppressed: the chart shows no number for it

    @property
    def suppressed(self) -> bool:
        """True when the month's count is suppressed ("c")."""
        return self.cell == SUPPRESSED


def referrals_received_bars(pub: Mapping[str, pl.DataFrame]) -> list[MonthBar]:
    """The published referrals received by month, in table order; suppressed months flagged."""
    bars = []
    for row in pub["referrals_received"].iter_rows(named=True):
        cell = _shown(row["episodes"])
        value = _number(row["episodes"])
        bars.append(MonthBar(str(row["month"]), cell, None if value is None else int(value)))
    return bars


def referrals_received_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """Referrals received by month: published counts as bars, suppressed months as hatched c."""
    bars = referrals_received_bars(pub)
    fig, ax = _new_figure(4.0)
    positions = list(range(len(bars)))
    top = max([b.episodes for b in bars if b.episodes is not None] + [1])
    for x, bar in zip(positions, bars, strict=True):
        if bar.suppressed:  # a full-height hatched column: marks the month, encodes no number
            ax.bar([x], [top * 1.12], color=SUPPRESSED_COLOUR, hatch=SUPPRESSED_HATCH,
                   edgecolor="white", alpha=0.6)
            ax.text(x, top * 0.02, SUPPRESSED, ha="center", fontsize=9)
        else:
            ax.bar([x], [bar.episodes or 0], color=BAR)
            ax.text(x, (bar.episodes or 0) + top * 0.015, bar.cell, ha="center", fontsize=9)
    ax.set_xticks(positions, [b.month for b in bars])
    ax.set_ylim(0, top * 1.12)
    ax.set_xlabel("month of referral")
    ax.set_ylabel("episodes referred")
    ax.set_title("Referrals received by month")
    if any(b.suppressed for b in bars):
        ax.legend(handles=[Patch(facecolor=SUPPRESSED_COLOUR, hatch=SUPPRESSED_HATCH,
                                 edgecolor="white", label="suppressed (c)")],
                  loc="upper right", fontsize=8, frameon=False)
        n_text = "n=c (the total is not shown because a month is suppressed)"
    else:
        n_text = f"n={sum(b.episodes or 0 for b in bars)}"
    caption = (f"{n_text} episodes referred in the study window. Counts 1-{{t}} and the cells "
               "needed to protect them are shown as c (a hatched grey column, no number).")
    alt = ("Bar chart of episodes referred by month: "
           + ", ".join(f"{b.month} {b.cell}" for b in bars) + ".")
    return Chart("referrals_received", "Referrals received by month", caption, alt,
                 "administrative", fig)


@dataclass(frozen=True)
class MedianView:
    """The published Kaplan-Meier figures: counts and the median with its 95% CI, as cells."""

    n: str
    events: str
    censored: str
    median: str
    ci_low: str
    ci_high: str

    def number(self, name: str) -> float | None:
        """A figure as a number: None when suppressed ("c") or not reached ("-")."""
        return _number(getattr(self, name).replace("-", ""))


def length_of_support_median(pub: Mapping[str, pl.DataFrame]) -> MedianView:
    """The published ``length_of_support_km`` row as chart text ("c" suppressed, "-" empty)."""
    row = pub["length_of_support_km"].row(0, named=True)
    return MedianView(*(_shown(row[c]) for c in ("n", "events", "censored", "median_days",
                                                 "median_ci_low", "median_ci_high")))


def length_of_support_median_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """The Kaplan-Meier median length of support with its 95% CI (published figures only).

    The step curve is not drawn: it would show unpublished survival figures and event times.
    """
    km = length_of_support_median(pub)
    fig, ax = _new_figure(2.6)
    ax.spines["left"].set_visible(False)
    ax.set_yticks([])
    median, low, high = (km.number(c) for c in ("median", "ci_low", "ci_high"))
    right = max([v for v in (median, low, high) if v is not None] + [1.0]) * 1.25
    if median is not None:
        ax.plot([median], [0], "o", color=BAR, label="median (Kaplan-Meier)")
        if low is not None:
            ax.plot([low, high if high is not None else right], [0, 0], color=BAR)
            ax.plot([low] + ([high] if high is not None else []), [0] * (1 + (high is not None)),
                    "|", color=BAR, markersize=14, label="95% CI (log-log)")
        upper = "not reached" if km.ci_high == "-" else km.ci_high
        ax.text(median, 0.25, f"{km.median} days (95% CI {km.ci_low} to {upper})",
                ha="center", fontsize=9)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    else:
        why = "not reached" if km.median == "-" else "not published (c)"
        ax.text(0.5, 0.5, f"median length of support {why}", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    ax.set_xlim(0, right)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("days from referral to closure (open episodes censored)")
    ax.set_title("Length of support counting open episodes: median")
    caption = (f"n={km.n} in-window episodes: {km.events} closed (events), {km.censored} still "
               "open at the data date (censored). Median and its 95% CI from the Kaplan-Meier "
               "estimate (log-log pointwise bands, scipy.stats.ecdf); - means not reached. Counts "
               "1-{t} and the cells needed to protect them are shown as c.")
    alt = (f"Median length of support counting open episodes: {km.median} days, 95% CI "
           f"{km.ci_low} to {km.ci_high}; n={km.n}, events {km.events}, censored {km.censored}.")
    return Chart("length_of_support_median", "Length of support counting open episodes",
                 caption, alt, "support", fig)


CHART_BUILDERS: tuple[Callable[[Mapping[str, pl.DataFrame]], Chart], ...] = (
    referral_routes_chart, presenting_issues_chart, closure_outcomes_chart,
    length_of_support_chart, ons4_chart, response_rates_chart, referrals_received_chart,
    length_of_support_median_chart,
)


def draw_charts(publication: Mapping[str, pl.DataFrame], threshold: int) -> list[Chart]:
    """Every chart, from the publication tables only, captions filled in."""
    charts = []
    for build in CHART_BUILDERS:
        chart = build(publication)
        caption = chart.caption.replace("{t}", str(threshold)).replace(
            "{m}", str(survey_minimum(threshold)))
        chart.figure.supxlabel(textwrap.fill(caption, 120), x=0.01, ha="left", fontsize=8,
                               color="#333333")
        charts.append(Chart(chart.name, chart.title, caption, chart.alt, chart.section,
                            chart.figure))
    return charts


def save_chart(chart: Chart, folder: Path) -> dict[str, Path]:
    """Write one chart as PNG and SVG (no timestamps, stable SVG ids)."""
    with plt.rc_context({"svg.hashsalt": "cluster-eval", "svg.fonttype": "path"}):
        png = folder / f"{chart.name}.png"
        svg = folder / f"{chart.name}.svg"
        chart.figure.savefig(png, dpi=150, metadata={"Software": None})
        chart.figure.savefig(svg, metadata={"Date": None, "Creator": None})
    return {"png": png, "svg": svg}

