"""The analysis on disk: CSV tables, charts, Excel workbook, HTML report and manifest.

Plain functions, no Prefect. Everything is written to a temporary folder beside the output
folder and renamed into place at the end, so a half-written analysis is never where a reader
looks. Charts and the HTML report are drawn only from the publication (suppressed) tables;
the exact figures live in ``restricted/`` and the workbook's unprefixed sheets.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import xlsxwriter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tasks.analysis.disclosure import SUPPRESSED  # noqa: E402
from tasks.analysis.tables import (  # noqa: E402
    ALL,
    TABLES,
    Analysis,
    TableInfo,
    format_table,
    survey_minimum,
)
from tasks.core.errors import UserFacingError  # noqa: E402
from tasks.core.settings import Settings  # noqa: E402

GENERATOR = "cluster-eval analyse"
MANIFEST = "manifest.json"
REPORT = "report.html"
WORKBOOK = "analysis.xlsx"
RESTRICTED, PUBLICATION, CHARTS = "restricted", "publication", "charts"
#: Everything ``analyse`` writes at the top of its output folder.
OUTPUT_ENTRIES = frozenset({RESTRICTED, PUBLICATION, CHARTS, WORKBOOK, REPORT, MANIFEST})

#: Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), black first.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
             "#CC79A7")
BAR = "#0072B2"
UK = "#000000"
#: ONS threshold bands from worst to best (anxiety's very_low is its best band).
BAND_COLOURS = {"very_low": OKABE_ITO[3], "low": OKABE_ITO[6], "medium": OKABE_ITO[1],
                "high": OKABE_ITO[2], "very_high": OKABE_ITO[5]}
SECTIONS = (
    ("administrative", "Referrals and presenting issues"),
    ("demographics", "Who the families are"),
    ("support", "Support, allocation and goals"),
    ("closure", "Closure and onward referral"),
    ("specialist", "Specialist referrals (RES Team, Early Help Hub)"),
    ("survey", "Family survey"),
)


# --- the output folder ------------------------------------------------------------------------


def _is_previous_run(out: Path) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def check_output_dir(out: Path) -> str:
    """``new``, ``empty`` or ``replace`` (an earlier analyse run); UserFacingError otherwise."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise UserFacingError(f"--out {out} exists and is not a folder; choose another --out")
    entries = {entry.name for entry in out.iterdir()}
    if not entries:
        return "empty"
    if _is_previous_run(out) and entries <= OUTPUT_ENTRIES:
        return "replace"
    raise UserFacingError(
        f"--out {out} already holds files that cluster-eval analyse did not write; "
        "choose a new folder or empty this one (an earlier analyse output is replaced)"
    )


def _swap_into_place(staged: Path, out: Path) -> None:
    """Rename the staged folder to ``out``, replacing an earlier run's folder."""
    check_output_dir(out)  # refuse if someone put files there meanwhile
    if not out.exists():
        os.rename(staged, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- context and manifest ---------------------------------------------------------------------


def code_version() -> dict[str, str | None]:
    """Package version and, when run from a git checkout, ``git describe``."""
    try:
        package = version("cluster-eval")
    except PackageNotFoundError:
        package = None
    root = Path(__file__).resolve().parent.parent
    described = None
    git = shutil.which("git")
    if git and (root / ".git").exists():
        try:
            done = subprocess.run(  # noqa: S603 - fixed argument list, no shell
                [git, "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            described = done.stdout.strip() or None if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            described = None
    return {"package": package, "git": described}


def settings_digest(settings: Settings) -> str:
    """SHA-256 of the settings (home and database URL left out: places, not choices)."""
    values = settings.model_dump(mode="json", exclude={"home", "database_url"})
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReportContext:
    """Who, when and with what the analysis was made (manifest and report header)."""

    cluster: str
    window_start: date
    window_end: date
    threshold: int
    generated_at: datetime
    settings_sha256: str
    code: Mapping[str, str | None]
    extracts: Sequence[Mapping[str, Any]] = ()
    waves: Sequence[Mapping[str, Any]] = ()


def make_context(settings: Settings, extracts: pl.DataFrame, waves: pl.DataFrame,
                 generated_at: datetime) -> ReportContext:
    """The report context from settings and the extract and wave lists."""
    return ReportContext(
        cluster=settings.study.cluster, window_start=settings.study.window_start,
        window_end=settings.study.window_end, threshold=settings.disclosure.threshold,
        generated_at=generated_at, settings_sha256=settings_digest(settings), code=code_version(),
        extracts=extracts.to_dicts(), waves=waves.to_dicts(),
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_manifest(root: Path, analysis: Analysis, context: ReportContext) -> dict[str, Any]:
    """The manifest of a staged output folder (every file but itself, with its SHA-256)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        "generator": GENERATOR,
        "manifest_version": 1,
        "status": "complete",
        "generated_at": context.generated_at.isoformat(),
        "cluster": context.cluster,
        "study_window": {"start": context.window_start.isoformat(),
                         "end": context.window_end.isoformat()},
        "disclosure_threshold": context.threshold,
        "survey_minimum_respondents": survey_minimum(context.threshold),
        "survey_status": analysis.survey_status,
        "notes": list(analysis.notes),
        "single_respondent_strata": {m: list(s) for m, s in
                                     analysis.single_respondent_strata.items()},
        "settings_sha256": context.settings_sha256,
        "code_version": dict(context.code),
        "extracts": [{"sha256": e["sha256"], "status": e["status"],
                      "received_at": e["received_at"]} for e in context.extracts],
        "sampling": [{"wave": w["wave"], "seed": w["seed"], "size": w["size"],
                      "stratify_by": w["stratify_by"], "drawn_at": w["drawn_at"]}
                     for w in context.waves],
        "tables": {name: {"rows": df.height, "restricted": f"{RESTRICTED}/{name}.csv",
                          "publication": f"{PUBLICATION}/{name}.csv"}
                   for name, df in analysis.tables.items()},
        "files": {p.relative_to(root).as_posix(): _sha256(p) for p in files},
    }


# --- CSV --------------------------------------------------------------------------------------


def csv_bytes(df: pl.DataFrame) -> bytes:
    """A text frame as CSV: one header row, LF line ends, empty cell for null."""
    return df.write_csv(line_terminator="\n", quote_style="necessary").encode("utf-8")


def write_tables(root: Path, analysis: Analysis,
                 publication: Mapping[str, pl.DataFrame]) -> None:
    """restricted/<table>.csv (exact) and publication/<table>.csv (suppressed)."""
    (root / RESTRICTED).mkdir(mode=0o700)
    (root / PUBLICATION).mkdir(mode=0o700)
    for info in TABLES:
        restricted = format_table(info, analysis.tables[info.name])
        (root / RESTRICTED / f"{info.name}.csv").write_bytes(csv_bytes(restricted))
        (root / PUBLICATION / f"{info.name}.csv").write_bytes(csv_bytes(publication[info.name]))


# --- charts (publication figures only) --------------------------------------------------------


def _number(text: str | None) -> float | None:
    """A published cell as a number; None for suppressed ("c") or empty cells."""
    if text is None or text in ("", SUPPRESSED):
        return None
    return float(text)


def _shown(text: str | None) -> str:
    return SUPPRESSED if text == SUPPRESSED else ("-" if text in (None, "") else str(text))


def label(code: str) -> str:
    """A code as words: ``health_via_spa`` -> ``health via spa``."""
    return code.replace("_", " ")


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
    return _shown(pub["population"][column][0])


def _count_chart(pub: Mapping[str, pl.DataFrame], table: str, code: str, title: str,
                 ylabel: str, n_text: str, section: str, extra: str = "") -> Chart:
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


_MEASURE_LABELS = {"q1_life_satisfaction": "life satisfaction", "q2_worthwhile": "worthwhile",
                   "q3_happy_yesterday": "happiness", "q4_anxious_yesterday": "anxiety"}


def ons4_chart(pub: Mapping[str, pl.DataFrame]) -> Chart:
    """ONS4: weighted means with 95% CI against the UK means, and the threshold bands."""
    ons4, bands = pub["ons4"], pub["ons4_bands"]
    fig = Figure(figsize=(10.0, 5.4), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.25], height_ratios=[1, 0.14])
    left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    key = fig.add_subplot(grid[1, :])
    key.axis("off")
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    measures = ons4["measure"].to_list()
    names = [_MEASURE_LABELS.get(m, label(m)) for m in measures]
    ys = list(range(len(measures)))[::-1]
    alt_parts = []
    for y, row in zip(ys, ons4.iter_rows(named=True), strict=True):
        est, low, high = (_number(row[c]) for c in ("weighted_mean", "ci_low", "ci_high"))
        uk = _number(row["uk_mean"])
        if est is not None:
            err = [[est - low], [high - est]] if low is not None and high is not None else None
            left.errorbar([est], [y], xerr=err, fmt="o", color=BAR, capsize=4,
                          label="this study (weighted, 95% CI)" if y == ys[0] else None)
        else:
            left.text(0.2, y, "not published" if row["respondents"] != "0" else "no responses",
                      va="center", fontsize=9)
        if uk is not None:
            left.plot([uk], [y], marker="D", linestyle="none", color=UK,
                      label="UK, year ending March 2022" if y == ys[0] else None)
        alt_parts.append(f"{_MEASURE_LABELS.get(row['measure'], row['measure'])}: weighted mean "
                         f"{_shown(row['weighted_mean'])}, UK {_shown(row['uk_mean'])}")
    left.set_yticks(ys, names)
    left.set_xlim(0, 10)
    left.set_xlabel("mean score (0-10)")
    left.set_title("Means against the UK")

    shown_bands = False
    for y, measure in zip(ys, measures, strict=True):
        start = 0.0
        for row in bands.filter(pl.col("measure") == measure).iter_rows(named=True):
            share = _number(row["percent"])
            if share is None:
                continue
            shown_bands = shown_bands or share > 0
            right.barh([y], [share], left=[start], color=BAND_COLOURS.get(row["band"], BAR),
                       edgecolor="white")
            start += share
    right.set_yticks(ys, names)
    for ax in (left, right):
        ax.set_ylim(-0.6, len(ys) - 0.4)
    right.set_xlim(0, 100)
    right.set_xlabel("percent of respondents (suppressed bands left out)")
    right.set_title("ONS thresholds")
    if not shown_bands:
        right.text(50, (len(ys) - 1) / 2, "no band figures can be published", ha="center",
                   va="center", fontsize=9)
    handles = [
        Line2D([], [], marker="o", color=BAR, linestyle="none",
               label="this study (weighted mean, 95% CI)"),
        Line2D([], [], marker="D", color=UK, linestyle="none", label="UK, year ending March 2022"),
        *(Patch(color=colour, label=label(band)) for band, colour in BAND_COLOURS.items()),
    ]
    key.legend(handles=handles, loc="center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("ONS4 personal well-being")
    n_text = ", ".join(f"{n} n={_shown(r)}" for n, r in
                       zip(names, ons4["respondents"].to_list(), strict=True))
    caption = (f"{n_text} respondents. Anxiety: lower is better. Means from fewer than "
               f"{{m}} respondents are not published.")
    return Chart("ons4", "ONS4 personal well-being", caption,
                 "Dot plot and stacked bars of ONS4 well-being: " + "; ".join(alt_parts) + ".",
                 "survey", fig)


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


CHART_BUILDERS: tuple[Callable[[Mapping[str, pl.DataFrame]], Chart], ...] = (
    referral_routes_chart, presenting_issues_chart, closure_outcomes_chart,
    length_of_support_chart, ons4_chart, response_rates_chart,
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


# --- workbook ---------------------------------------------------------------------------------


def _cell_value(value: Any) -> Any:
    """A published text cell as a number when it is one, else the text ("c")."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def write_workbook(path: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                   context: ReportContext) -> None:
    """One workbook: README, then per table a restricted sheet and a ``pub_`` sheet."""
    book = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": True})
    book.set_properties({"title": "Cluster evaluation analysis", "author": GENERATOR,
                         "created": context.generated_at.replace(tzinfo=None)})
    bold = book.add_format({"bold": True})
    head = book.add_format({"bold": True, "bottom": 1, "text_wrap": True})
    restricted_banner = book.add_format({"bold": True, "font_color": "#FFFFFF",
                                         "bg_color": "#D55E00"})
    public_banner = book.add_format({"bold": True, "font_color": "#FFFFFF",
                                     "bg_color": "#009E73"})
    wrap = book.add_format({"text_wrap": True, "valign": "top"})

    readme = book.add_worksheet("README")
    readme.set_column(0, 0, 34)
    readme.set_column(1, 2, 24)
    readme.set_column(3, 3, 60)
    readme.set_column(4, 4, 90)
    lines = [
        ("Cluster evaluation: analysis workbook", bold),
        (f"Cluster {context.cluster}; study window {context.window_start} to "
         f"{context.window_end}; generated {context.generated_at.isoformat()}.", None),
        ("Sheets WITHOUT a prefix hold RESTRICTED exact figures for the research team only.", None),
        (f"Sheets named pub_... are PUBLICATION tables: counts 1-{context.threshold} and the "
         "cells needed to protect them are shown as c; percentages are hidden with their counts; "
         f"survey means from fewer than {survey_minimum(context.threshold)} respondents are "
         "hidden.", None),
        ("Percentages: one decimal, halves rounded up. Medians and quartiles: Hyndman-Fan "
         "type 7 (Excel QUARTILE.INC).", None),
    ]
    for row, (text, fmt) in enumerate(lines):
        readme.write_string(row, 0, text, fmt)
    top = len(lines) + 1
    for col, title in enumerate(("table", "restricted sheet", "publication sheet", "title",
                                 "what it shows / columns")):
        readme.write_string(top, col, title, head)
    for offset, info in enumerate(TABLES, start=1):
        readme.write_string(top + offset, 0, info.name)
        readme.write_string(top + offset, 1, info.sheet)
        readme.write_string(top + offset, 2, f"pub_{info.sheet}")
        readme.write_string(top + offset, 3, info.title, wrap)
        readme.write_string(top + offset, 4,
                            f"{info.description} Columns: {', '.join(info.columns)}.", wrap)

    decimals = {places: book.add_format({"num_format": "0." + "0" * places})
                for places in (1, 2, 3)}
    for info in TABLES:
        _table_sheet(book, info.sheet, info, analysis.tables[info.name], head, decimals,
                     restricted_banner, "RESTRICTED: exact figures, research team only")
        _table_sheet(book, f"pub_{info.sheet}", info, publication[info.name], head, decimals,
                     public_banner, f"PUBLICATION: small numbers suppressed (c), threshold "
                     f"{context.threshold}")
    book.close()


def _table_sheet(book: Any, name: str, info: TableInfo, df: pl.DataFrame, head: Any,
                 decimals: Mapping[int, Any], banner: Any, banner_text: str) -> None:
    if len(name) > 31:
        raise ValueError(f"sheet name {name!r} is longer than 31 characters")
    sheet = book.add_worksheet(name)
    sheet.write_string(0, 0, banner_text, banner)
    for col in range(1, max(len(info.columns), 4)):
        sheet.write_blank(0, col, None, banner)
    sheet.write_string(1, 0, info.title)
    for col, title in enumerate(info.columns):
        sheet.write_string(2, col, title, head)
        sheet.set_column(col, col, max(12, len(title) + 2))
    formats = [decimals.get(info.decimals.get(col, 0)) for col in info.columns]
    for r, row in enumerate(df.iter_rows(), start=3):
        for c, value in enumerate(row):
            cell = _cell_value(value)
            if cell is None:
                continue
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                sheet.write_number(r, c, cell, formats[c])
            else:
                sheet.write_string(r, c, str(cell))
    sheet.freeze_panes(3, 0)


# --- HTML report ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:2rem auto;
max-width:62rem;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem}h2{border-bottom:2px solid #0072B2;padding-bottom:.2rem;margin-top:2.5rem}
h3{font-size:1.05rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #c8c8c8;padding:.2rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f1f1f1}caption{text-align:left;font-size:.85rem;color:#444;caption-side:bottom;
padding-top:.2rem}
figure{margin:1rem 0 2rem}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85rem;color:#333}
.banner{padding:.7rem 1rem;border-left:6px solid #009E73;background:#eef8f4;margin:1rem 0}
.note{padding:.5rem 1rem;border-left:6px solid #E69F00;background:#fdf6e9;margin:.5rem 0}
code{font-size:.9em}
"""


def _cell(value: str | None) -> str:
    text = "" if value is None else str(value)
    numeric = text == SUPPRESSED or _is_number(text)
    return f'<td class="n">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _html_table(info: TableInfo, df: pl.DataFrame) -> str:
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in df.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in df.iter_rows())
    return (f'<h3 id="{info.name}">{html.escape(info.title)}</h3>'
            f"<table><caption>{html.escape(info.description)} "
            f"File: <code>publication/{info.name}.csv</code>.</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _figure(chart: Chart, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="chart-{chart.name}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(chart.alt)}" width="1200">'
            f"<figcaption><strong>{html.escape(chart.title)}.</strong> "
            f"{html.escape(chart.caption)}</figcaption></figure>")


def _methods(context: ReportContext, analysis: Analysis) -> str:
    minimum = survey_minimum(context.threshold)
    items = [
        f"Study population: every episode open at any time from {context.window_start} to "
        f"{context.window_end} (referral on or before the end, not closed before the start), "
        "its family and the family's children. Closure, onward referral and length of support "
        "use the closed in-window episodes; length of support is closure date minus referral "
        "date in days.",
        "Every code of each code list is shown as a row, with 0 where there is none; "
        "not_recorded counts missing values.",
        "Percentages have one decimal place, halves rounded up, and are of the table's own "
        "base (stated under each table).",
        "Medians and quartiles use the Hyndman-Fan type 7 method (linear interpolation between "
        "closest ranks; the same as Excel QUARTILE.INC and numpy's default).",
        "ONS4: the unweighted mean of all answers and the design-weighted stratified mean "
        "ȳ = Σ W_h ȳ_h over strata with at least one answer, W_h = N_h / Σ N_h with N_h the "
        "wave-1 sampling-frame size of the responding strata; SE = √(Σ W_h² (1 − r_h/N_h) "
        "s_h² / r_h); 95% CI = ȳ ± 1.96·SE; three decimals. A stratum with a single "
        "respondent adds no variance (flagged below).",
        "Response rate = households that responded / households issued (sampled) in the wave, "
        "as a proportion with three decimals; households that withdrew count as issued and "
        "not responded.",
        f"Disclosure control (publication tables, charts and this report): counts from 1 to "
        f"{context.threshold} are shown as c; secondary suppression hides further cells so no "
        "hidden count can be worked out from the table's totals (one-way tables: at least two "
        "hidden cells; cross-tabs: an exact check that no hidden cell is determined by the "
        "published cells and margins); percentages and statistics are hidden with their count; "
        f"survey means from fewer than {minimum} respondents are hidden.",
    ]
    singles = {m: s for m, s in analysis.single_respondent_strata.items() if s}
    single_text = ("Strata with a single respondent: " + "; ".join(
        f"{_MEASURE_LABELS.get(m, m)}: {len(s)} stratum(a)" for m, s in singles.items()) + "."
        if singles else "No stratum has a single respondent.")
    return ("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
            f'<p class="note">{html.escape(single_text)}</p>')


def render_report(analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                  charts: Sequence[Chart], pngs: Mapping[str, bytes],
                  context: ReportContext) -> str:
    """The self-contained HTML report (publication figures, charts inline, no external URL)."""
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in analysis.notes)
    code = context.code.get("git") or context.code.get("package") or "unknown"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Cluster evaluation: analysis report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>Cluster evaluation: analysis report</h1>",
        f"<p>Study window {context.window_start} to {context.window_end}. Generated "
        f"{html.escape(context.generated_at.isoformat())} by cluster-eval "
        f"{html.escape(str(code))}.</p>",
        f'<p class="banner"><strong>Complete.</strong> All {len(analysis.tables)} tables were '
        "written. This report shows publication-safe figures only (small numbers shown as c). "
        "Exact figures are in <code>restricted/</code> and the workbook's unprefixed sheets, "
        "for the research team only.</p>",
        notes, "</header><main>",
        '<nav aria-label="contents"><h2>Contents</h2><ul>',
        *(f'<li><a href="#section-{key}">{html.escape(title)}</a></li>'
          for key, title in SECTIONS),
        '<li><a href="#methods">Methods</a></li><li><a href="#provenance">Provenance</a></li>',
        "</ul></nav>",
    ]
    for key, title in SECTIONS:
        parts.append(f'<section id="section-{key}"><h2>{html.escape(title)}</h2>')
        if key == "survey" and analysis.survey_status != "responses":
            parts.append(f'<p class="note">{html.escape(_survey_note(analysis))}</p>')
        for chart in charts:
            if chart.section == key:
                parts.append(_figure(chart, pngs[chart.name]))
        for info in TABLES:
            if info.section == key:
                parts.append(_html_table(info, publication[info.name]))
        parts.append("</section>")
    parts.append(f'<section id="methods"><h2>Methods</h2>{_methods(context, analysis)}</section>')
    extracts = "".join(f"<li><code>{html.escape(str(e['sha256']))}</code> "
                       f"({html.escape(str(e['status']))})</li>" for e in context.extracts)
    waves = "".join(f"<li>wave {w['wave']}: seed {w['seed']}, size {w['size']}, stratified by "
                    f"{html.escape(str(w['stratify_by']))}</li>" for w in context.waves)
    parts.append(
        '<section id="provenance"><h2>Provenance</h2>'
        f"<p>Settings SHA-256 <code>{context.settings_sha256}</code>. Extracts:</p>"
        f"<ul>{extracts or '<li>none recorded</li>'}</ul><p>Survey waves:</p>"
        f"<ul>{waves or '<li>none drawn</li>'}</ul>"
        f"<p>Every file and its SHA-256 is listed in <code>{MANIFEST}</code>.</p></section>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _survey_note(analysis: Analysis) -> str:
    if analysis.survey_status == "no_sample":
        return ("No survey wave has been drawn yet, so there are no survey results; the "
                "administrative tables above are complete.")
    return ("No survey responses have been imported yet: the ONS4 and scaling tables show 0 "
            "respondents and no figures. This is not an error; run analyse again after "
            "importing responses.")


# --- everything -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenOutputs:
    """Where the analysis went and what it holds."""

    out: Path
    report: Path
    workbook: Path
    manifest: dict[str, Any]


def write_outputs(out: Path, analysis: Analysis, publication: Mapping[str, pl.DataFrame],
                  context: ReportContext) -> WrittenOutputs:
    """Write every output to a temporary folder beside ``out``, then rename it into place."""
    out = out.resolve()
    check_output_dir(out)
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    staged.mkdir(mode=0o700)
    try:
        write_tables(staged, analysis, publication)
        (staged / CHARTS).mkdir(mode=0o700)
        charts = draw_charts(publication, context.threshold)
        pngs = {chart.name: save_chart(chart, staged / CHARTS)["png"].read_bytes()
                for chart in charts}
        write_workbook(staged / WORKBOOK, analysis, publication, context)
        (staged / REPORT).write_text(render_report(analysis, publication, charts, pngs, context),
                                     encoding="utf-8")
        manifest = build_manifest(staged, analysis, context)
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        _swap_into_place(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return WrittenOutputs(out, out / REPORT, out / WORKBOOK, manifest)


__all__ = [
    "CHARTS", "GENERATOR", "MANIFEST", "OKABE_ITO", "OUTPUT_ENTRIES", "PUBLICATION", "REPORT",
    "RESTRICTED", "WORKBOOK", "Chart", "ReportContext", "WrittenOutputs",
    "build_manifest", "check_output_dir", "code_version", "draw_charts", "make_context",
    "render_report", "settings_digest", "write_outputs", "write_workbook",
]
