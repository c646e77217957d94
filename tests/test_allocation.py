"""Tests for tasks.survey.allocation: Hamilton allocation, shortfall top-up, top-up size, drawing."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.survey.allocation import (
    draw_stratified,
    hamilton_allocation,
    shortfall_allocation,
    topup_size,
)

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
FRAMES = st.dictionaries(NAMES, st.integers(0, 60), min_size=1, max_size=7)


def reference_hamilton(frame: dict[str, int], n: int) -> dict[str, int]:
    """Plain textbook Hamilton (no caps, no minimum), written independently of the module."""
    total = sum(frame.values())
    if total == 0:
        return dict.fromkeys(sorted(frame), 0)
    quotas = {h: Fraction(n * size, total) for h, size in frame.items()}
    result = {h: int(q) for h, q in quotas.items()}  # int() floors a non-negative Fraction
    leftover = n - sum(result.values())
    by_name = sorted(frame)  # then a stable sort: largest remainder, then larger stratum
    ranking = sorted(by_name, key=lambda h: (quotas[h] - result[h], frame[h]), reverse=True)
    for h in ranking[:leftover]:
        result[h] += 1
    return {h: result[h] for h in sorted(frame)}


@st.composite
def frame_and_n(draw: st.DrawFn) -> tuple[dict[str, int], int]:
    frame = draw(FRAMES)
    n = draw(st.integers(0, sum(frame.values())))
    return frame, n


# --- hamilton_allocation -----------------------------------------------------------------


def test_hand_example() -> None:
    # quotas 7/6, 7/3, 7/2 -> floors 1, 2, 3 (=6); largest remainder 0.5 -> c
    assert hamilton_allocation({"a": 10, "b": 20, "c": 30}, 7) == {"a": 1, "b": 2, "c": 4}


def test_tie_goes_to_larger_stratum() -> None:
    # quotas 0.5 and 1.5: equal remainders, b is larger
    assert hamilton_allocation({"a": 1, "b": 3}, 2) == {"a": 0, "b": 2}


def test_tie_then_name_ascending_irrespective_of_input_order() -> None:
    # quotas 0.5, 0.5, 1.0: a and b tie on remainder and size -> a
    assert hamilton_allocation({"b": 10, "c": 20, "a": 10}, 2) == {"a": 1, "b": 0, "c": 1}


def test_result_keys_sorted_and_zero_strata_kept() -> None:
    result = hamilton_allocation({"z": 5, "empty": 0, "m": 5}, 4)
    assert list(result) == ["empty", "m", "z"]
    assert result == {"empty": 0, "m": 2, "z": 2}


def test_minimum_with_small_stratum_capped_at_its_size() -> None:
    # a has only 2 units (< minimum 3) so is taken whole; b, c get 3 each; the last 2 units
    # follow capacities b=47, c=45: quotas 94/92, 90/92 -> floors 1, 0; remainder c wins.
    assert hamilton_allocation({"a": 2, "b": 50, "c": 48}, 10, minimum=3) == {
        "a": 2,
        "b": 4,
        "c": 4,
    }


def test_full_census_and_zero() -> None:
    frame = {"a": 3, "b": 4}
    assert hamilton_allocation(frame, 7) == frame
    assert hamilton_allocation(frame, 0) == {"a": 0, "b": 0}


@pytest.mark.parametrize(
    ("frame", "n", "minimum", "message"),
    [
        ({"a": 3, "b": 4}, 8, 0, "exceeds"),
        ({"a": 3, "b": 4}, -1, 0, "negative"),
        ({"a": 3, "b": 4}, 5, 3, "minimum"),
        ({"a": -1, "b": 4}, 1, 0, "negative"),
        ({"a": 3, "b": 4}, 2, -1, "negative"),
    ],
)
def test_invalid_arguments(frame: dict[str, int], n: int, minimum: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hamilton_allocation(frame, n, minimum=minimum)


@given(frame_and_n())
def test_matches_reference_and_invariants(case: tuple[dict[str, int], int]) -> None:
    frame, n = case
    result = hamilton_allocation(frame, n)
    assert list(result) == sorted(frame)
    assert sum(result.values()) == n
    assert all(0 <= result[h] <= frame[h] for h in frame)
    assert result == reference_hamilton(frame, n)
    # quota property: every stratum is within one unit of its exact quota
    total = sum(frame.values())
    if total:
        for h in frame:
            quota = Fraction(n * frame[h], total)
            assert math.floor(quota) <= result[h] <= math.ceil(quota)


@given(frame_and_n(), st.integers(0, 12), st.randoms(use_true_random=False))
def test_minimum_honoured(
    case: tuple[dict[str, int], int], minimum: int, rng: random.Random
) -> None:
    frame, _ = case
    needed = sum(min(minimum, size) for size in frame.values())
    total = sum(frame.values())
    if needed > total:
        return
    n = rng.randint(needed, total)
    result = hamilton_allocation(frame, n, minimum=minimum)
    assert sum(result.values()) == n
    assert all(min(minimum, frame[h]) <= result[h] <= frame[h] for h in frame)
    # definition: minimum first, then reference Hamilton on the remaining capacity
    floor_part = {h: min(minimum, size) for h, size in frame.items()}
    rest = reference_hamilton({h: frame[h] - floor_part[h] for h in frame}, n - needed)
    assert result == {h: floor_part[h] + rest[h] for h in sorted(frame)}


@given(FRAMES, st.integers(1, 12))
def test_minimum_too_large_is_rejected(frame: dict[str, int], minimum: int) -> None:
    needed = sum(min(minimum, size) for size in frame.values())
    if needed == 0:
        return
    with pytest.raises(ValueError, match="minimum"):
        hamilton_allocation(frame, needed - 1, minimum=minimum)


# --- shortfall_allocation ------------------------------------------------------------------


def test_shortfall_hand_example() -> None:
    # R=15, T=24, equal shares -> target 8 each; shortfalls 6, 4, 0 (sum 10);
    # quotas 9*6/10=5.4, 9*4/10=3.6 -> floors 5, 3; remainder 0.6 -> b
    result = shortfall_allocation(
        {"a": 50, "b": 50, "c": 50}, {"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 4, "c": 9}, 9
    )
    assert result == {"a": 5, "b": 4, "c": 0}


def test_shortfall_float_shares() -> None:
    result = shortfall_allocation({"a": 50, "b": 50}, {"a": 0.5, "b": 0.5}, {"a": 10, "b": 4}, 6)
    assert result == {"a": 0, "b": 6}


def test_shortfall_capped_then_proportional_to_remaining() -> None:
    # b's shortfall is 6 but only 2 households are left there; the other 4 go to a.
    result = shortfall_allocation({"a": 50, "b": 2}, {"a": 0.5, "b": 0.5}, {"a": 10, "b": 4}, 6)
    assert result == {"a": 4, "b": 2}


def test_shortfall_capped_surplus_reproportioned_among_short_strata() -> None:
    # shortfalls a=0, b=10, c=10 (R=10, T=30, shares 1/3); c has 1 left, so its surplus is
    # re-proportioned among the strata that are still short (only b): b gets 19, a nothing.
    result = shortfall_allocation(
        {"a": 40, "b": 40, "c": 1}, {"a": 1, "b": 1, "c": 1}, {"a": 10, "b": 0, "c": 0}, 20
    )
    assert result == {"a": 0, "b": 19, "c": 1}


def test_shortfall_size_larger_than_remaining() -> None:
    result = shortfall_allocation({"a": 2, "b": 3}, {"a": 1, "b": 1}, {"a": 0, "b": 0}, 10)
    assert result == {"a": 2, "b": 3}


def test_shortfall_zero_size_and_errors() -> None:
    assert shortfall_allocation({"a": 2}, {"a": 1}, {"a": 5}, 0) == {"a": 0}
    with pytest.raises(ValueError, match="positive total"):
        shortfall_allocation({"a": 2}, {"a": 0}, {"a": 5}, 1)
    with pytest.raises(ValueError):
        shortfall_allocation({"a": 2}, {"a": 1}, {"a": 5}, -1)
    with pytest.raises(ValueError):
        shortfall_allocation({"a": 2}, {"a": -0.5}, {"a": 5}, 1)


@st.composite
def shortfall_case(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int], dict[str, int], int]:
    strata = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    remaining = {h: draw(st.integers(0, 30)) for h in strata}
    shares = {h: draw(st.integers(0, 20)) for h in strata}
    if sum(shares.values()) == 0:
        shares[strata[0]] = 1
    respondents = {h: draw(st.integers(0, 15)) for h in strata}
    size = draw(st.integers(0, 80))
    return remaining, shares, respondents, size


@given(shortfall_case())
def test_shortfall_invariants(
    case: tuple[dict[str, int], dict[str, int], dict[str, int], int],
) -> None:
    remaining, shares, respondents, size = case
    result = shortfall_allocation(remaining, shares, respondents, size)
    assert list(result) == sorted(remaining)
    assert sum(result.values()) == min(size, sum(remaining.values()))
    assert all(0 <= result[h] <= remaining[h] for h in remaining)
    total_share = sum(shares.values())
    target = sum(respondents.values()) + size
    shortfall = {
        h: max(Fraction(0), Fraction(shares[h] * target, total_share) - respondents[h])
        for h in remaining
    }
    room_in_short = sum(remaining[h] for h in remaining if shortfall[h] > 0)
    if room_in_short >= size:
        # everything goes to strata that are short ...
        assert all(result[h] == 0 for h in remaining if shortfall[h] == 0)
        if all(remaining[h] >= size for h in remaining if shortfall[h] > 0):
            # ... and when no cap can bind, none gets more than ceil(shortfall)
            assert all(result[h] <= math.ceil(shortfall[h]) for h in remaining)
    else:
        # short strata are exhausted first
        assert all(result[h] == remaining[h] for h in remaining if shortfall[h] > 0)


# --- topup_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "got", "rate", "expected"),
    [
        (7, 0, 0.7, 10),  # exact: 7/0.7 is 10 (float division would give 10.000000000000002)
        (50, 30, 0.6, 34),  # 20/0.6 = 33.33 -> 34
        (50, 50, 0.5, 0),
        (50, 60, 0.5, 0),
        (10, 0, 1, 10),
        (3, 1, 0.25, 8),
    ],
)
def test_topup_size(target: int, got: int, rate: float, expected: int) -> None:
    assert topup_size(target, got, rate) == expected


@pytest.mark.parametrize("rate", [0, 0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_topup_size_rejects_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        topup_size(10, 0, rate)


# --- draw_stratified ---------------------------------------------------------------------------


@st.composite
def frame_with_ids(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, int]]:
    strata = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    frame = {h: [f"{h}-{k}" for k in range(draw(st.integers(0, 25)))] for h in strata}
    allocation = {h: draw(st.integers(0, len(ids))) for h, ids in frame.items()}
    return frame, allocation


@given(frame_with_ids(), st.integers(0, 2**32), st.randoms(use_true_random=False))
@settings(max_examples=60)
def test_draw_properties(
    case: tuple[dict[str, list[str]], dict[str, int]], seed: int, rng: random.Random
) -> None:
    frame, allocation = case
    drawn = draw_stratified(frame, allocation, seed)
    assert list(drawn) == sorted(frame)
    for h, ids in drawn.items():
        assert len(ids) == allocation[h]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(frame[h])
        assert ids == sorted(ids)
    # reproducible, and independent of the order of ids and of strata
    assert draw_stratified(frame, allocation, seed) == drawn
    shuffled = {}
    for h in rng.sample(sorted(frame), len(frame)):
        shuffled[h] = rng.sample(frame[h], len(frame[h]))
    assert draw_stratified(shuffled, dict(reversed(allocation.items())), seed) == drawn
    # disjoint strata
    everything = [unit for ids in drawn.values() for unit in ids]
    assert len(everything) == len(set(everything))


def test_draw_depends_on_seed_and_stratum_only() -> None:
    frame = {"a": [f"id{k:03d}" for k in range(100)], "b": [f"x{k}" for k in range(50)]}
    first = draw_stratified(frame, {"a": 10, "b": 5}, 1)
    assert draw_stratified(frame, {"a": 10, "b": 5}, 2) != first
    # stratum a's draw does not change when another stratum's allocation changes
    assert draw_stratified(frame, {"a": 10, "b": 0}, 1)["a"] == first["a"]
    # pinned values: a change of the seeding scheme would silently change published samples
    assert draw_stratified({"s": ["5", "4", "3", "2", "1"]}, {"s": 2}, 7) == {"s": ["3", "5"]}
    ids = [f"id{k:03d}" for k in range(20)]
    assert draw_stratified({"a": ids}, {"a": 4}, 2024) == {
        "a": ["id004", "id006", "id016", "id017"]
    }


def test_draw_errors() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        draw_stratified({"a": ["1"]}, {"a": 2}, 0)
    with pytest.raises(ValueError, match="more than once"):
        draw_stratified({"a": ["1", "1"]}, {"a": 1}, 0)
    with pytest.raises(ValueError, match="more than once"):
        draw_stratified({"a": ["1"], "b": ["1"]}, {"a": 1}, 0)
    with pytest.raises(ValueError, match="exceeds"):
        draw_stratified({}, {"ghost": 1}, 0)
    assert draw_stratified({}, {"ghost": 0}, 0) == {"ghost": []}
