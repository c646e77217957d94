"""Tests for tasks.analysis.stats: rounding, quartiles, stratified ONS4 estimate, bands, percent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.analysis.stats import (
    ONS4_BANDS_ANXIETY,
    ONS4_BANDS_POSITIVE,
    StratifiedEstimate,
    band_counts,
    mean,
    percent,
    quartiles,
    round_half_up,
    stratified_estimate,
)

# --- round_half_up -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        (2.675, 2, 2.68),  # round() gives 2.67 (binary value is 2.67499999...)
        (0.0005, 3, 0.001),
        (2.5, 0, 3.0),  # round() gives 2.0 (half to even)
        (-2.5, 0, -3.0),  # half away from zero
        (-0.0004, 3, 0.0),
        (1.0, 3, 1.0),
        (7.12345, 3, 7.123),
    ],
)
def test_round_half_up(value: float, places: int, expected: float) -> None:
    result = round_half_up(value, places)
    assert result == expected
    assert math.copysign(1.0, result) == math.copysign(1.0, expected)


def test_round_half_up_rejects_nan() -> None:
    with pytest.raises(ValueError):
        round_half_up(float("nan"))


# --- mean / quartiles ----------------------------------------------------------------------


def test_quartiles_hand_example() -> None:
    assert quartiles([4, 1, 3, 2]) == (1.75, 2.5, 3.25)
    assert quartiles([5]) == (5.0, 5.0, 5.0)
    assert quartiles([1, 2, 3, 4, 5]) == (2.0, 3.0, 4.0)


@given(st.lists(st.integers(0, 10) | st.floats(-1e6, 1e6), min_size=1, max_size=60))
def test_quartiles_match_numpy_linear(values: list[float]) -> None:
    expected = np.quantile(np.array(values, dtype=float), [0.25, 0.5, 0.75])
    assert quartiles(values) == pytest.approx(tuple(expected), rel=1e-12, abs=1e-9)


def test_empty_and_missing_rejected() -> None:
    with pytest.raises(ValueError):
        quartiles([])
    with pytest.raises(ValueError):
        mean([])
    with pytest.raises(ValueError):
        quartiles([1.0, float("nan")])
    with pytest.raises(ValueError):
        mean([1.0, None])  # type: ignore[list-item]
    assert mean([1, 2, 3, 4]) == 2.5


# --- stratified_estimate -------------------------------------------------------------------


def test_stratified_hand_example() -> None:
    # W = (0.25, 0.75); ybar_a = ybar_b = 7; s2_a = 2, s2_b = 4
    # SE^2 = 0.0625*(1-2/100)*2/2 + 0.5625*(1-3/300)*4/3 = 0.06125 + 0.7425 = 0.80375
    est = stratified_estimate({"a": [6, 8], "b": [5, 7, 9]}, {"a": 100, "b": 300})
    se = math.sqrt(0.80375)  # 0.896521...
    assert est == StratifiedEstimate(
        respondents=5,
        mean=7.0,
        weighted_mean=7.0,
        standard_error=0.897,
        ci_low=5.243,  # 7 - 1.96 * 0.896521 = 5.242819
        ci_high=8.757,
        single_respondent_strata=(),
    )
    assert est.ci_low == round(7 - 1.96 * se, 3)


def test_weights_differ_from_unweighted_mean() -> None:
    # W = (0.2, 0.8): weighted 0.2*2 + 0.8*8 = 6.8; unweighted (1+3+8+8)/4 = 5
    est = stratified_estimate({"a": [1, 3], "b": [8, 8]}, {"a": 10, "b": 40})
    assert est.weighted_mean == 6.8
    assert est.mean == 5.0


def test_stratum_without_respondents_excluded_from_weights() -> None:
    with_empty = stratified_estimate(
        {"a": [6, 8], "b": [5, 7, 9], "c": [None, float("nan")]},
        {"a": 100, "b": 300, "c": 10_000},
    )
    without = stratified_estimate({"a": [6, 8], "b": [5, 7, 9]}, {"a": 100, "b": 300})
    assert with_empty == without
    # a stratum absent from responses is also simply not used
    assert stratified_estimate({"a": [6, 8]}, {"a": 100, "z": 5}).weighted_mean == 7.0


def test_single_respondent_stratum_flagged_and_adds_no_variance() -> None:
    est = stratified_estimate({"a": [6, 8], "b": [None, 9], "c": [1]}, {"a": 2, "b": 5, "c": 5})
    assert est.single_respondent_strata == ("b", "c")
    assert est.respondents == 4
    # the only variance stratum is a, fully enumerated (r = N = 2): fpc 0 -> SE 0
    assert est.standard_error == 0.0
    assert est.ci_low == est.ci_high == est.weighted_mean


def test_all_single_respondent_strata_give_no_standard_error() -> None:
    est = stratified_estimate({"a": [4], "b": [6, None]}, {"a": 10, "b": 10})
    assert est.weighted_mean == 5.0
    assert est.single_respondent_strata == ("a", "b")
    assert est.standard_error is None and est.ci_low is None and est.ci_high is None


def test_all_missing_gives_none() -> None:
    est = stratified_estimate({"a": [None, float("nan")], "b": []}, {"a": 10, "b": 10})
    assert est == StratifiedEstimate(0, None, None, None, None, None, ())
    assert stratified_estimate({}, {}) == est


def test_invalid_frame_sizes() -> None:
    with pytest.raises(ValueError, match="no frame size"):
        stratified_estimate({"a": [1, 2]}, {})
    with pytest.raises(ValueError, match="frame size"):
        stratified_estimate({"a": [1, 2, 3]}, {"a": 2})
    with pytest.raises(ValueError, match="not finite"):
        stratified_estimate({"a": [1, float("inf")]}, {"a": 20})


def oracle(
    responses: dict[str, list[float | None]], frame_sizes: dict[str, int]
) -> tuple[int, float | None, float | None, float | None, tuple[str, ...]]:
    """The formula, written out with plain loops and nothing shared with the module."""
    kept: dict[str, list[float]] = {}
    for h in responses:
        vals = []
        for v in responses[h]:
            if v is None or v != v:  # NaN is not equal to itself
                continue
            vals.append(float(v))
        if len(vals) > 0:
            kept[h] = vals
    count = 0
    for h in kept:
        count += len(kept[h])
    if count == 0:
        return 0, None, None, None, ()
    big_n = 0
    for h in kept:
        big_n += frame_sizes[h]
    total = 0.0
    for h in kept:
        for v in kept[h]:
            total += v
    plain = total / count
    ybar = 0.0
    var = 0.0
    contributing = 0
    singles = []
    for h in sorted(kept):
        w = frame_sizes[h] / big_n
        r = len(kept[h])
        m = 0.0
        for v in kept[h]:
            m += v / r
        ybar += w * m
        if r == 1:
            singles.append(h)
            continue
        ss = 0.0
        for v in kept[h]:
            ss += (v - m) * (v - m)
        var += w * w * (1 - r / frame_sizes[h]) * (ss / (r - 1)) / r
        contributing += 1
    se = math.sqrt(var) if contributing else None
    return count, plain, ybar, se, tuple(singles)


@st.composite
def survey(draw: st.DrawFn) -> tuple[dict[str, list[float | None]], dict[str, int]]:
    strata = draw(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=5, unique=True))
    answer = st.one_of(st.integers(0, 10).map(float), st.none(), st.just(float("nan")))
    responses = {h: draw(st.lists(answer, max_size=12)) for h in strata}
    sizes = {}
    for h in strata:
        answered = sum(1 for v in responses[h] if v is not None and v == v)
        sizes[h] = draw(st.integers(max(answered, 1), answered + 300))
    return responses, sizes


def close(actual: float | None, exact: float | None) -> bool:
    """Actual is the 3-decimal rounding of exact (allowing float noise at a tie)."""
    if actual is None or exact is None:
        return actual is None and exact is None
    return abs(actual - exact) <= 0.0005 + 1e-9 and round(actual, 3) == actual


@settings(max_examples=300)
@given(survey())
def test_stratified_estimate_matches_oracle(
    case: tuple[dict[str, list[float | None]], dict[str, int]],
) -> None:
    responses, sizes = case
    est = stratified_estimate(responses, sizes)
    count, plain, ybar, se, singles = oracle(responses, sizes)
    assert est.respondents == count
    assert est.single_respondent_strata == singles
    assert close(est.mean, plain)
    assert close(est.weighted_mean, ybar)
    assert close(est.standard_error, se)
    if se is None:
        assert est.ci_low is None and est.ci_high is None
    else:
        assert ybar is not None
        assert close(est.ci_low, ybar - 1.96 * se)
        assert close(est.ci_high, ybar + 1.96 * se)
        assert est.ci_low is not None and est.ci_high is not None
        assert est.ci_low <= est.weighted_mean <= est.ci_high  # type: ignore[operator]


# --- bands / percent -------------------------------------------------------------------------


def test_band_counts_ons4() -> None:
    values = [0, 4, 5, 6, 7, 8, 9, 10, 10, None, float("nan")]
    assert band_counts(values, ONS4_BANDS_POSITIVE) == [
        ("low", 2),
        ("medium", 2),
        ("high", 2),
        ("very_high", 3),
    ]
    assert band_counts(values, ONS4_BANDS_ANXIETY) == [
        ("very_low", 1),
        ("low", 0),
        ("medium", 2),
        ("high", 6),
    ]
    assert band_counts([], ONS4_BANDS_POSITIVE) == [
        ("low", 0),
        ("medium", 0),
        ("high", 0),
        ("very_high", 0),
    ]


def test_ons4_bands_cover_0_to_10_exactly_once() -> None:
    for bands in (ONS4_BANDS_POSITIVE, ONS4_BANDS_ANXIETY):
        covered = [v for _, low, high in bands for v in range(low, high + 1)]
        assert covered == list(range(11))


def test_band_counts_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="none of the bands"):
        band_counts([11], ONS4_BANDS_POSITIVE)
    with pytest.raises(ValueError, match="none of the bands"):
        band_counts([4.5], ONS4_BANDS_POSITIVE)
    with pytest.raises(ValueError, match="overlap"):
        band_counts([1], [("x", 0, 5), ("y", 5, 10)])
    with pytest.raises(ValueError, match="low"):
        band_counts([1], [("x", 5, 0)])


@given(st.lists(st.integers(0, 10) | st.none(), max_size=40))
def test_band_counts_total(values: list[int | None]) -> None:
    answered = sum(v is not None for v in values)
    assert sum(n for _, n in band_counts(values, ONS4_BANDS_POSITIVE)) == answered
    assert sum(n for _, n in band_counts(values, ONS4_BANDS_ANXIETY)) == answered


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (1, 8, 12.5),
        (1, 16, 6.3),  # 6.25 -> 6.3 (round() would give 6.2)
        (1, 80, 1.3),  # 1.25 -> 1.3
        (1, 3, 33.3),
        (2, 3, 66.7),
        (0, 5, 0.0),
        (5, 5, 100.0),
        (3, 0, None),
        (0, 0, None),
    ],
)
def test_percent(part: int, whole: int, expected: float | None) -> None:
    assert percent(part, whole) == expected


def test_percent_rejects_negative() -> None:
    with pytest.raises(ValueError):
        percent(-1, 5)
