"""Survey estimator options (``survey.lonely_stratum``, ``survey.ci``) against a second implementation.

The oracle below is written from R ``survey``'s definitions (``svymean`` linearisation and
``onestrat``/``onestage`` of ``svyrecvar`` for a one-stage stratified design with
``fpc = N_h``), with plain loops and nothing shared with ``tasks.analysis.stats``:

* influence values ``z_i = w_i (y_i - ybar) / sum(w)`` with ``w_i = N_h / r_h``;
* per stratum, ``f = (N_h - r_h) / N_h``; a stratum with ``f`` ~ 0 adds 0 (self-representing);
  with ``r_h > 1`` it adds ``f * r_h / (r_h - 1) * sum((z_i - zbar_h)**2)``;
* a lonely stratum (``r_h == 1``): ``certainty`` centres ``z`` at its own mean (adds 0),
  ``adjust`` does not centre (adds ``f * z**2``), ``average`` is NA and the sum over the other
  strata is multiplied by ``H / H_not_NA``.

The t quantile is computed here by integrating the Student t density (Simpson's rule) and
bisection, not with scipy. Where R returns 0 or NaN because nothing is estimable (no stratum
with two respondents; ``adjust``: fewer than two respondents) the module returns None.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from fractions import Fraction
from functools import cache
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.codes import ONS4_MEASURES
from tasks.analysis.charts import (
    OKABE_ITO,
    QUALITY_COLOURS,
    QUALITY_LABELS,
    band_quality,
    ons4_band_segments,
)
from tasks.analysis.manifest import ReportContext, build_manifest
from tasks.analysis.publication import format_table
from tasks.analysis.registry import OneWay, TableInfo
from tasks.analysis.stats import EstimatorOptions, StratifiedEstimate, stratified_estimate
from tasks.analysis.survey_tables import ons4_tables
from tasks.analysis.tables import Analysis
from tasks.core.settings import SurveySettings

LONELY = ("certainty", "adjust", "conservative")
CI = ("normal", "t")


# --- the oracle ------------------------------------------------------------------------------


def _t_cdf(x: float, df: int) -> float:
    """P(T <= x) for x >= 0 by Simpson's rule on the density."""
    const = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    steps = 4000
    h = x / steps
    total = 0.0
    for k in range(steps + 1):
        u = k * h
        dens = const * (1 + u * u / df) ** (-(df + 1) / 2)
        total += dens * (1 if k in (0, steps) else (4 if k % 2 else 2))
    return 0.5 + total * h / 3


@cache
def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t by bisection on ``_t_cdf``."""
    low, high = 0.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if _t_cdf(mid, df) < 0.975:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def oracle(responses: dict[str, list[float | None]], sizes: dict[str, int], lonely: str,
           ci: str) -> tuple[float | None, float | None, float | None, float | None]:
    """(weighted mean, SE, CI low, CI high), unrounded, the R survey way."""
    kept = {}
    for h in sorted(responses):
        vals = [float(v) for v in responses[h] if v is not None and v == v]
        if vals:
            kept[h] = vals
    n = sum(len(v) for v in kept.values())
    if n == 0:
        return None, None, None, None
    sum_w = sum(sizes[h] for h in kept)  # each of the r_h units weighs N_h / r_h
    ybar = sum(sizes[h] / len(v) * y for h, v in kept.items() for y in v) / sum_w
    contributions: list[float | None] = []
    for h, v in kept.items():
        r, big_n = len(v), sizes[h]
        f = (big_n - r) / big_n
        z = [big_n / r * (y - ybar) / sum_w for y in v]
        if f < 1e-7:
            contributions.append(0.0)
        elif r > 1:
            zbar = sum(z) / r
            contributions.append(f * r / (r - 1) * sum((zi - zbar) ** 2 for zi in z))
        elif lonely == "certainty":
            contributions.append(0.0)  # centred at its own mean: (z - z)**2
        elif lonely == "adjust":
            contributions.append(f * z[0] ** 2)
        else:
            contributions.append(None)  # R's "average": NA
    estimable = n >= 2 if lonely == "adjust" else any(len(v) > 1 for v in kept.values())
    if not estimable:
        return ybar, None, None, None
    ok = [c for c in contributions if c is not None]
    se = math.sqrt(sum(ok) * len(contributions) / len(ok))
    df = n - len(kept)
    if ci == "t" and df < 1:
        return ybar, se, None, None
    crit = 1.96 if ci == "normal" else t_975(df)
    return ybar, se, ybar - crit * se, ybar + crit * se


def close(actual: float | None, exact: float | None) -> bool:
    """``actual`` is ``exact`` rounded to 3 decimals (float noise allowed at a tie)."""
    if actual is None or exact is None:
        return actual is None and exact is None
    return abs(actual - exact) <= 0.0005 + 1e-7


# --- the oracle checks itself against textbook values ----------------------------------------


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228),
                                           (28, 2.048), (30, 2.042)])
def test_oracle_t_quantile_matches_printed_tables(df: int, table: float) -> None:
    assert round(t_975(df), 3) == table


# --- worked examples by hand -----------------------------------------------------------------

# a = [6, 8] with N_a = 10, b = [2] with N_b = 10: W = (0.5, 0.5), ybar_w = 0.5*7 + 0.5*2 = 4.5
# V_a = 0.5^2 * (1 - 2/10) * s2_a / 2 = 0.25 * 0.8 * 2 / 2 = 0.2
HAND = {"a": [6.0, 8.0], "b": [2.0]}
HAND_SIZES = {"a": 10, "b": 10}


def test_hand_certainty_normal() -> None:
    # SE = sqrt(0.2) = 0.4472136; 1.96 * SE = 0.8765386
    est = stratified_estimate(HAND, HAND_SIZES, EstimatorOptions("certainty", "normal"))
    assert est == StratifiedEstimate(3, 5.333, 4.5, 0.447, 3.623, 5.377, ("b",))
    assert est == stratified_estimate(HAND, HAND_SIZES)  # the default


def test_hand_adjust() -> None:
    # V_b = 0.5^2 * (1 - 1/10) * (2 - 4.5)^2 = 0.25 * 0.9 * 6.25 = 1.40625
    # SE = sqrt(0.2 + 1.40625) = sqrt(1.60625) = 1.2673989; 1.96 * SE = 2.4841018
    est = stratified_estimate(HAND, HAND_SIZES, EstimatorOptions("adjust"))
    assert (est.standard_error, est.ci_low, est.ci_high) == (1.267, 2.016, 6.984)


def test_hand_conservative() -> None:
    # H = 2 strata, 1 with a known V: SE = sqrt(0.2 * 2 / 1) = sqrt(0.4) = 0.6324555
    est = stratified_estimate(HAND, HAND_SIZES, EstimatorOptions("conservative"))
    assert (est.standard_error, est.ci_low, est.ci_high) == (0.632, 3.260, 5.740)


def test_hand_t_interval() -> None:
    # n - H = 3 - 2 = 1 degree of freedom: t = 12.7062047; 12.7062047 * 0.4472136 = 5.6823841
    est = stratified_estimate(HAND, HAND_SIZES, EstimatorOptions("certainty", "t"))
    assert (est.standard_error, est.ci_low, est.ci_high) == (0.447, -1.182, 10.182)


def test_hand_fully_enumerated_lonely_stratum_adds_nothing_under_every_option() -> None:
    # b has N_b = 1 = r_b: self-representing, adds 0 and counts as known (R: f = 0)
    sizes = {"a": 10, "b": 1}
    results = {opt: stratified_estimate(HAND, sizes, EstimatorOptions(opt)) for opt in LONELY}  # type: ignore[arg-type]
    assert len(set(results.values())) == 1
    # W = (10/11, 1/11); V_a = (10/11)^2 * 0.8 * 2 / 2 = 0.661157; SE = 0.813116
    assert results["certainty"].standard_error == 0.813


def test_nothing_estimable() -> None:
    lonely_only = {"a": [4.0], "b": [6.0]}
    for opt in ("certainty", "conservative"):
        est = stratified_estimate(lonely_only, {"a": 10, "b": 10}, EstimatorOptions(opt))
        assert est.standard_error is None and est.ci_low is None
    # adjust: W = (0.5, 0.5), ybar 5; V = 2 * 0.25 * 0.9 * 1 = 0.45, SE = 0.6708204
    adjusted = stratified_estimate(lonely_only, {"a": 10, "b": 10},
                                   EstimatorOptions("adjust", "normal"))
    assert adjusted.standard_error == 0.671
    # ... but a t interval has n - H = 0 degrees of freedom: no CI
    with_t = stratified_estimate(lonely_only, {"a": 10, "b": 10}, EstimatorOptions("adjust", "t"))
    assert with_t.standard_error == 0.671 and with_t.ci_low is None and with_t.ci_high is None
    one = stratified_estimate({"a": [4.0]}, {"a": 10}, EstimatorOptions("adjust"))
    assert one.standard_error is None


def test_unknown_options_refused() -> None:
    with pytest.raises(ValueError, match="lonely_stratum"):
        EstimatorOptions("remove")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ci"):
        EstimatorOptions("certainty", "bootstrap")  # type: ignore[arg-type]


def test_settings_defaults_and_choices() -> None:
    default = SurveySettings()
    assert (default.lonely_stratum, default.ci) == ("certainty", "normal")
    chosen = SurveySettings(lonely_stratum="conservative", ci="t")
    assert (chosen.lonely_stratum, chosen.ci) == ("conservative", "t")
    with pytest.raises(ValidationError):
        SurveySettings(lonely_stratum="average")
    with pytest.raises(ValidationError):
        SurveySettings(ci="z")


def test_options_described_for_the_methods_section() -> None:
    stated = EstimatorOptions("adjust", "t").as_dict()
    assert stated["lonely_stratum"] == "adjust" and stated["ci"] == "t"
    assert "adjust" in stated["lonely_stratum_means"] and "n - H" in stated["ci_means"]
    assert EstimatorOptions().as_dict()["ci_means"].startswith("95% CI")


# --- hypothesis: every option against the oracle ---------------------------------------------


@st.composite
def stratified_sample(draw: st.DrawFn) -> tuple[dict[str, list[float | None]], dict[str, int]]:
    strata = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True))
    answer = st.one_of(st.integers(0, 10).map(float), st.none())
    responses: dict[str, list[float | None]] = {}
    sizes: dict[str, int] = {}
    for h in strata:
        # single respondents often, so lonely strata are common
        values = draw(st.lists(answer, min_size=0, max_size=draw(st.sampled_from([1, 1, 2, 8]))))
        responses[h] = values
        answered = sum(v is not None for v in values)
        sizes[h] = draw(st.sampled_from([max(answered, 1), answered + 1, answered + 40]))
    return responses, sizes


@settings(max_examples=300, deadline=None)
@given(stratified_sample(), st.sampled_from(LONELY), st.sampled_from(CI))
def test_every_option_matches_the_r_style_oracle(
    case: tuple[dict[str, list[float | None]], dict[str, int]], lonely: str, ci: str,
) -> None:
    responses, sizes = case
    est = stratified_estimate(responses, sizes, EstimatorOptions(lonely, ci))  # type: ignore[arg-type]
    ybar, se, low, high = oracle(responses, sizes, lonely, ci)
    assert close(est.weighted_mean, ybar)
    assert close(est.standard_error, se)
    assert close(est.ci_low, low)
    assert close(est.ci_high, high)


@settings(max_examples=100, deadline=None)
@given(stratified_sample())
def test_conservative_and_adjust_never_narrower_than_certainty_when_estimable(
    case: tuple[dict[str, list[float | None]], dict[str, int]],
) -> None:
    responses, sizes = case
    base = stratified_estimate(responses, sizes)
    if base.standard_error is None:
        return
    for opt in ("adjust", "conservative"):
        other = stratified_estimate(responses, sizes, EstimatorOptions(opt))
        assert other.standard_error is not None
        assert other.standard_error >= base.standard_error
    wide = stratified_estimate(responses, sizes, EstimatorOptions("certainty", "t"))
    assert wide.ci_low is not None and base.ci_low is not None
    assert wide.ci_low <= base.ci_low


# --- the options reach the ONS4 table --------------------------------------------------------


def _ons4_frames(answers: dict[str, list[int]], sizes: dict[str, int]
                 ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = [(f"{h}{k}", 1, h, "email", 0, 1, value)
            for h, values in answers.items() for k, value in enumerate(values)]
    survey = pl.DataFrame(rows, orient="row", schema={
        "family_pid": pl.String, "wave": pl.Int64, "stratum": pl.String, "route": pl.String,
        "withdrawn": pl.Int64, "responded": pl.Int64, "q1_life_satisfaction": pl.Int64})
    for q in ONS4_MEASURES[1:]:
        survey = survey.with_columns(pl.lit(None, dtype=pl.Int64).alias(q))
    frame = pl.DataFrame([(1, h, n, len(answers.get(h, []))) for h, n in sizes.items()],
                         orient="row", schema={"wave": pl.Int64, "stratum": pl.String,
                                               "frame_n": pl.Int64, "allocated": pl.Int64})
    waves = pl.DataFrame({"wave": [1], "stratify_by": ["primary_issue"]})
    return survey, frame, waves


@pytest.mark.parametrize("lonely", LONELY)
@pytest.mark.parametrize("ci", CI)
def test_ons4_table_uses_the_options(lonely: str, ci: str) -> None:
    answers = {"parenting": [8, 6, 7, 9], "housing": [4], "domestic_abuse": [5, 3]}
    sizes = {"parenting": 20, "housing": 6, "domestic_abuse": 9}
    survey, frame, waves = _ons4_frames(answers, sizes)
    row = ons4_tables(survey, frame, waves, {},
                      EstimatorOptions(lonely, ci)).ons4.row(0, named=True)  # type: ignore[arg-type]
    ybar, se, low, high = oracle({h: list(map(float, v)) for h, v in answers.items()}, sizes,
                                 lonely, ci)
    assert close(row["weighted_mean"], ybar)
    assert close(row["standard_error"], se)
    assert close(row["ci_low"], low) and close(row["ci_high"], high)


# --- whole percentages where the base is under 100 -------------------------------------------


def _one_decimal(count: int, base: int) -> float:
    """100 * count / base to one decimal, halves up, exactly (the restricted figure)."""
    return math.floor(Fraction(1000 * count, base) + Fraction(1, 2)) / 10


def _published_percent(count: int, base: int) -> str:
    """What the publication shows: whole under a base of 100, one decimal from 100 on."""
    if base < 100:
        return str(math.floor(Fraction(100 * count, base) + Fraction(1, 2)))
    return f"{_one_decimal(count, base):.1f}"


def _pct_info() -> TableInfo:
    return TableInfo("t", "t", "test", "t", "t", ("code", "n", "percent"), {"percent": 1},
                     (OneWay("n", ("percent",)),))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=8))
def test_percent_whole_under_a_base_of_100(counts: list[int]) -> None:
    base = sum(counts)
    if base == 0:
        return
    df = pl.DataFrame({"code": [f"k{i}" for i in range(len(counts))], "n": counts,
                       "percent": [_one_decimal(c, base) for c in counts]})
    shown = format_table(_pct_info(), df)["percent"].to_list()
    assert shown == [_published_percent(c, base) for c in counts]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 250), st.data())
def test_percent_whole_with_multiple_counting(base: int, data: st.DataObject) -> None:
    # each count is at most the base; the counts may sum to more than the base. A base of
    # 100-125 whose counts are all under 5 can pass for a smaller one (shown whole, the safe
    # side), so counts start at 5 here
    counts = data.draw(st.lists(st.integers(5, base) if base >= 5 else st.integers(0, base),
                                min_size=2, max_size=6))
    df = pl.DataFrame({"code": [f"k{i}" for i in range(len(counts))], "n": counts,
                       "percent": [_one_decimal(c, base) for c in counts]})
    shown = format_table(_pct_info(), df)["percent"].to_list()
    assert shown == [_published_percent(c, base) for c in counts]


def test_percent_hand_examples() -> None:
    # survey base 32: 11/32 = 34.375% -> 34; 21/32 = 65.625% -> 66 (not 65.6 or 34.4)
    small = pl.DataFrame({"code": ["a", "b"], "n": [11, 21], "percent": [34.4, 65.6]})
    assert format_table(_pct_info(), small)["percent"].to_list() == ["34", "66"]
    # the whole percent comes from the counts (1/40 = 2.5% -> 3, half up), not from
    # Python's round-half-even formatting of the one-decimal figure ("2")
    assert format_table(_pct_info(), pl.DataFrame(
        {"code": ["a", "b"], "n": [1, 39], "percent": [2.5, 97.5]}))["percent"].to_list() == [
        "3", "98"]
    # base 296 keeps one decimal: 35/296 = 11.824% -> 11.8
    big = pl.DataFrame({"code": ["a", "b"], "n": [35, 261], "percent": [11.8, 88.2]})
    assert format_table(_pct_info(), big)["percent"].to_list() == ["11.8", "88.2"]
    # q9: percent of those who answered (yes 1, no 2), not_answered has no percent
    q9 = pl.DataFrame({"code": ["yes", "no", "not_answered"], "n": [1, 2, 1],
                       "percent": [33.3, 66.7, None]})
    assert format_table(_pct_info(), q9)["percent"].to_list() == ["33", "67", None]


# --- the ONS4 bands chart's data -------------------------------------------------------------

POSITIVE_BANDS = ("low", "medium", "high", "very_high")
ANXIETY_BANDS = ("very_low", "low", "medium", "high")
#: Written out here: worst to best is vermillion, orange, sky blue, blue (Okabe-Ito).
EXPECTED_COLOUR = {
    **{(m, b): c for m in ONS4_MEASURES[:3] for b, c in zip(
        POSITIVE_BANDS, ("#D55E00", "#E69F00", "#56B4E9", "#0072B2"), strict=True)},
    **{("q4_anxious_yesterday", b): c for b, c in zip(
        ANXIETY_BANDS, ("#0072B2", "#56B4E9", "#E69F00", "#D55E00"), strict=True)},
}


def test_band_colours_follow_good_and_bad_per_measure() -> None:
    # a low anxiety score is good, a low life satisfaction score is bad
    assert band_quality("q4_anxious_yesterday", "low") > band_quality("q4_anxious_yesterday",
                                                                         "high")
    assert band_quality("q1_life_satisfaction", "low") < band_quality("q1_life_satisfaction",
                                                                         "high")
    assert set(QUALITY_COLOURS) <= set(OKABE_ITO)
    assert "anxiety" in QUALITY_LABELS[0] and "low" in QUALITY_LABELS[0]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_band_segments_reach_100_and_colour_by_measure(data: st.DataObject) -> None:
    rows = []
    for measure in ONS4_MEASURES:
        bands = ANXIETY_BANDS if measure == "q4_anxious_yesterday" else POSITIVE_BANDS
        counts = data.draw(st.lists(st.integers(0, 30), min_size=4, max_size=4))
        hidden = data.draw(st.lists(st.booleans(), min_size=4, max_size=4))
        base = sum(counts)
        for band, count, hide in zip(bands, counts, hidden, strict=True):
            text = None if base == 0 else (
                "c" if hide else _published_percent(count, base))
            rows.append((measure, band, "c" if hide else str(count), text))
    pub = pl.DataFrame(rows, orient="row", schema={"measure": pl.String, "band": pl.String,
                                                   "respondents": pl.String,
                                                   "percent": pl.String})
    for measure in ONS4_MEASURES:
        mine = pub.filter(pl.col("measure") == measure)
        cells = mine["percent"].to_list()
        segments = ons4_band_segments(pub, measure)
        if all(c is None for c in cells):
            assert segments == []
            continue
        published = {b: float(p) for b, p in zip(mine["band"], cells, strict=True) if p != "c"}
        shares = [s.width for s in segments]
        assert all(w >= 0 for w in shares)
        assert all(a.start + a.width == pytest.approx(b.start) for a, b in
                   zip(segments, segments[1:], strict=False))
        if "c" in cells:
            assert segments[-1].suppressed and segments[-1].colour == "#BBBBBB"
            assert sum(shares) == pytest.approx(max(100.0, sum(published.values())))
        else:  # nothing suppressed: the published percentages, up to their rounding
            assert abs(sum(shares) - 100) <= 0.5 * len(cells)
        drawn = [s for s in segments if not s.suppressed]
        assert {s.band: s.width for s in drawn} == published
        for s in drawn:
            assert s.colour == EXPECTED_COLOUR[(measure, s.band)]
        # worst band first: for anxiety that is "high", for the others "low"
        order = ANXIETY_BANDS[::-1] if measure == "q4_anxious_yesterday" else POSITIVE_BANDS
        assert [s.band for s in drawn] == [b for b in order if b in published]


# --- the options are stated in the manifest --------------------------------------------------


def test_manifest_states_the_estimator_options(tmp_path: Path) -> None:
    analysis = Analysis({}, 0, 0, {}, (), EstimatorOptions("conservative", "t"))
    context = ReportContext("demo", date(2021, 4, 1), date(2022, 3, 31), 5,
                            datetime(2026, 1, 1, tzinfo=UTC), "0" * 64, {"package": None})
    stated = build_manifest(tmp_path, analysis, context)["survey_estimator"]
    assert stated["lonely_stratum"] == "conservative" and stated["ci"] == "t"
    assert "average" in stated["lonely_stratum_means"]
    default = Analysis({}, 0, 0, {}, ())
    assert build_manifest(tmp_path, default, context)["survey_estimator"]["ci"] == "normal"
