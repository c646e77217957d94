"""Sample allocation and stratified drawing for the household survey.

Pure functions, no Prefect and no I/O. All proportional allocation uses one capped
largest-remainder (Hamilton) routine with exact ``fractions.Fraction`` arithmetic, so the
remainders that decide who gets the last units are never disturbed by float rounding.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from fractions import Fraction

__all__ = [
    "draw_stratified",
    "hamilton_allocation",
    "shortfall_allocation",
    "topup_size",
]


def _count(value: object, what: str) -> int:
    """Return ``value`` as a non-negative int or raise ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def _exact(value: object, what: str) -> Fraction:
    """Return a finite non-negative number as an exact Fraction (floats via their repr)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, int | Fraction):
        result = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        # repr gives the shortest decimal that round-trips, so 0.7 means exactly 7/10.
        result = Fraction(repr(value))
    else:
        raise ValueError(f"{what} must be a number, got {value!r}")
    if result < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return result


def _largest_remainder(
    weights: Mapping[str, Fraction],
    n: int,
    caps: Mapping[str, int],
    tie_sizes: Mapping[str, int],
) -> dict[str, int]:
    """Allocate ``n`` units in proportion to ``weights`` without exceeding ``caps``.

    Capped Hamilton method:

    1. Strata with weight 0 get nothing.
    2. Quotas ``q_h = n_left * w_h / sum(w)`` are computed over the still-active strata; every
       stratum whose quota exceeds its cap is fixed at its cap and leaves the active set, and
       the quotas of the others are recomputed for the units still to place. Repeat until no
       quota exceeds its cap (when no cap binds this is plain Hamilton).
    3. Each active stratum gets ``floor(q_h)``; the units left over go one each to the largest
       remainders ``q_h - floor(q_h)``; ties go to the larger ``tie_sizes[h]``, then to the
       stratum name in ascending order. A stratum with a positive remainder has
       ``floor(q_h) + 1 <= cap_h`` because ``q_h <= cap_h``, so caps always hold.

    Precondition (checked): ``n <= sum(caps[h] for h with weights[h] > 0)``.
    """
    active = {h for h, w in weights.items() if w > 0}
    if n > sum(caps[h] for h in active):
        raise ValueError(f"cannot place {n} units within the caps of the weighted strata")
    capped, quotas = _fix_capped(weights, n, caps, active)
    alloc = dict.fromkeys(weights, 0) | capped
    left = n - sum(capped.values())
    if left == 0:
        return alloc
    floors = {h: math.floor(q) for h, q in quotas.items()}
    alloc.update(floors)
    left -= sum(floors.values())
    order = sorted(quotas, key=lambda h: (-(quotas[h] - floors[h]), -tie_sizes[h], h))
    for h in order[:left]:
        alloc[h] += 1
    return alloc


def _fix_capped(
    weights: Mapping[str, Fraction], n: int, caps: Mapping[str, int], active: set[str]
) -> tuple[dict[str, int], dict[str, Fraction]]:
    """Step 2 of ``_largest_remainder``: strata fixed at their cap, and the quotas of the others.

    Quotas are recomputed for the units still to place each time some strata are fixed at
    their cap, until no quota exceeds its cap (or nothing is left to place).
    """
    active = set(active)
    capped: dict[str, int] = {}
    left = n
    quotas: dict[str, Fraction] = {}
    while active and left > 0:
        total = sum((weights[h] for h in active), Fraction(0))
        quotas = {h: left * weights[h] / total for h in active}
        over = {h for h in active if quotas[h] > caps[h]}
        if not over:
            break
        for h in over:
            capped[h] = caps[h]
            left -= caps[h]
        active -= over
    return capped, {h: q for h, q in quotas.items() if h in active}


def hamilton_allocation(frame: Mapping[str, int], n: int, *, minimum: int = 0) -> dict[str, int]:
    """Allocate n units across strata proportionally to frame size by largest remainder.

    Rule (``minimum == 0``): quota ``q_h = n * N_h / N``; each stratum gets ``floor(q_h)``;
    the ``n - sum(floor)`` units left go one each to the largest remainders
    ``q_h - floor(q_h)``; ties go to the larger ``N_h``, then to the stratum name ascending.
    All arithmetic is exact (``Fraction``). Since ``q_h <= N_h`` no stratum exceeds its size.

    Rule with ``minimum = m > 0``: every stratum first gets ``m_h = min(m, N_h)`` (a stratum
    smaller than ``m`` is taken whole); the remaining ``n - sum(m_h)`` units are allocated by
    the rule above with the remaining capacities ``N_h - m_h`` in place of ``N_h`` (as both
    the proportional weights and the tie-break sizes), so ``n_h <= N_h`` still holds.

    Raises ValueError when ``n < 0``, ``n > sum(N_h)``, ``minimum < 0``, a frame size is
    negative, or ``sum(min(minimum, N_h)) > n`` (equal to ``minimum * strata > n`` whenever
    every stratum has at least ``minimum`` units). The result has every stratum of
    ``frame`` as a key (0 allowed), in sorted key order.
    """
    sizes = {h: _count(frame[h], f"frame size of stratum {h!r}") for h in sorted(frame)}
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"sample size n must be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"sample size n must not be negative, got {n}")
    total = sum(sizes.values())
    if n > total:
        raise ValueError(f"sample size n={n} exceeds the frame total of {total} units")
    minimum = _count(minimum, "minimum")
    floor_alloc = {h: min(minimum, size) for h, size in sizes.items()}
    needed = sum(floor_alloc.values())
    if needed > n:
        raise ValueError(
            f"minimum of {minimum} per stratum needs {needed} units over {len(sizes)} strata "
            f"but n is only {n}"
        )
    capacity = {h: sizes[h] - floor_alloc[h] for h in sizes}
    extra = _largest_remainder(
        {h: Fraction(c) for h, c in capacity.items()}, n - needed, capacity, capacity
    )
    return {h: floor_alloc[h] + extra[h] for h in sizes}


def shortfall_allocation(
    remaining: Mapping[str, int],
    wave1_share: Mapping[str, float | int],
    respondents: Mapping[str, int],
    size: int,
) -> dict[str, int]:
    """Allocate a top-up sample of ``size`` to strata by their respondent shortfall.

    Rule. Strata are the union of the keys of the three mappings (a missing entry counts as
    0). Shares are normalised: ``p_h = wave1_share[h] / sum(wave1_share)`` (floats are read
    exactly via their repr; plain counts such as wave-1 allocations work too). With
    ``R = sum(respondents)`` and ``T = R + size`` the respondent total after the top-up if
    every new household responded:

        shortfall_h = max(0, p_h * T - respondents_h)

    ``sum(shortfall_h) >= size`` always, so each stratum's quota
    ``size * shortfall_h / sum(shortfall)`` never exceeds its shortfall.

    Units: ``U = min(size, sum(remaining))``, with ``remaining[h]`` the never-sampled
    households still available in stratum h (a hard cap).

    1. Stage 1: place ``min(U, sum of remaining over strata with shortfall > 0)`` units by
       the capped largest-remainder method with the shortfalls as weights and
       ``remaining`` as caps (capped strata are fixed at their cap and the rest is
       re-proportioned among the others; ties by larger ``remaining``, then name).
    2. Stage 2 (only when the strata with a shortfall are exhausted): the units still
       unplaced go proportionally to the capacity left, ``remaining_h - stage1_h``, by the
       same method. This is also the "all shortfalls 0" fallback (proportional to
       remaining), which without caps can only arise when ``size == 0``.

    Sum of the result == ``min(size, sum(remaining))``; ``0 <= n_h <= remaining[h]``.
    Raises ValueError for a negative ``size``/count/share or shares summing to 0.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"top-up size must be a non-negative integer, got {size!r}")
    strata = sorted(set(remaining) | set(wave1_share) | set(respondents))
    caps = {h: _count(remaining.get(h, 0), f"remaining in stratum {h!r}") for h in strata}
    resp = {h: _count(respondents.get(h, 0), f"respondents in stratum {h!r}") for h in strata}
    shares = {h: _exact(wave1_share.get(h, 0), f"wave-1 share of stratum {h!r}") for h in strata}
    share_total = sum(shares.values(), Fraction(0))
    if share_total == 0:
        raise ValueError("wave-1 shares must have a positive total")
    target_total = sum(resp.values()) + size
    shortfall = {
        h: max(Fraction(0), shares[h] / share_total * target_total - resp[h]) for h in strata
    }
    units = min(size, sum(caps.values()))
    stage1_units = min(units, sum(caps[h] for h in strata if shortfall[h] > 0))
    stage1 = _largest_remainder(shortfall, stage1_units, caps, caps)
    capacity = {h: caps[h] - stage1[h] for h in strata}
    stage2 = _largest_remainder(
        {h: Fraction(c) for h, c in capacity.items()}, units - stage1_units, capacity, caps
    )
    return {h: stage1[h] + stage2[h] for h in strata}


def topup_size(target_respondents: int, respondents: int, expected_response_rate: float) -> int:
    """Households to issue: ceil(max(0, target - respondents) / rate), computed exactly.

    The rate is read exactly from its repr (0.7 is 7/10), so 7 / 0.7 gives 10, not 11.
    Raises ValueError unless ``0 < rate <= 1`` and both counts are non-negative integers.
    """
    target = _count(target_respondents, "target_respondents")
    got = _count(respondents, "respondents")
    if isinstance(expected_response_rate, bool):
        raise ValueError("expected_response_rate must be a number")
    rate = _exact(expected_response_rate, "expected_response_rate")
    if not 0 < rate <= 1:
        raise ValueError(
            f"expected_response_rate must be in (0, 1], got {expected_response_rate!r}"
        )
    return math.ceil(max(0, target - got) / rate)


def _stratum_rng(seed: int, stratum: str) -> random.Random:
    """A Random seeded from SHA-256 of "seed:stratum" (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}:{stratum}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def draw_stratified(
    frame: Mapping[str, Sequence[str]], allocation: Mapping[str, int], seed: int
) -> dict[str, list[str]]:
    """Draw allocation[h] ids per stratum by simple random sampling without replacement.

    Within stratum h the ids are sorted, then ``random.Random(int(sha256(f"{seed}:{h}")))``
    ``.sample(sorted_ids, allocation[h])`` is taken, so the draw depends only on the seed,
    the stratum name and the set of ids (not on input order or on other strata). Each
    stratum's sample is returned sorted. Strata missing from ``allocation`` get 0; a
    stratum in ``allocation`` but not in ``frame`` is treated as empty. Keys: all strata,
    sorted. Raises ValueError for a duplicate id (within or across strata), a negative
    allocation, or an allocation larger than the stratum.
    """
    seen: dict[str, str] = {}
    result: dict[str, list[str]] = {}
    for h in sorted(set(frame) | set(allocation)):
        ids = sorted(frame.get(h, ()))
        for unit in ids:
            if unit in seen:
                raise ValueError(
                    f"id {unit!r} appears more than once (strata {seen[unit]!r} and {h!r})"
                )
            seen[unit] = h
        k = _count(allocation.get(h, 0), f"allocation of stratum {h!r}")
        if k > len(ids):
            raise ValueError(f"allocation {k} for stratum {h!r} exceeds its {len(ids)} ids")
        result[h] = sorted(_stratum_rng(seed, h).sample(ids, k))
    return result
