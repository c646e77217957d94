"""Descriptive statistics and the ONS4 design-weighted stratified mean.

Pure functions, no Prefect and no I/O. Published figures are rounded half away from zero
(``decimal.ROUND_HALF_UP`` applied to the float's shortest repr), not with Python's
``round`` (which rounds half to even and works on the binary value, e.g. ``round(2.675, 2)``
is 2.67).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

__all__ = [
    "ONS4_BANDS_ANXIETY",
    "ONS4_BANDS_POSITIVE",
    "StratifiedEstimate",
    "band_counts",
    "mean",
    "percent",
    "quartiles",
    "round_half_up",
    "stratified_estimate",
]

#: ONS thresholds for life satisfaction, worthwhile and happiness (0-10 scale, inclusive).
ONS4_BANDS_POSITIVE: list[tuple[str, int, int]] = [
    ("low", 0, 4),
    ("medium", 5, 6),
    ("high", 7, 8),
    ("very_high", 9, 10),
]
#: ONS thresholds for anxiety (0-10 scale, inclusive; higher means more anxious).
ONS4_BANDS_ANXIETY: list[tuple[str, int, int]] = [
    ("very_low", 0, 1),
    ("low", 2, 3),
    ("medium", 4, 5),
    ("high", 6, 10),
]

_Z_95 = 1.96


def round_half_up(value: float, places: int = 3) -> float:
    """Round to ``places`` decimals, halves away from zero, via Decimal(repr(value)).

    ``round_half_up(2.675, 2) == 2.68`` and ``round_half_up(-0.5, 0) == -1.0``; a result
    of negative zero is returned as ``0.0``. Raises ValueError for NaN or infinity.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot round {value!r}")
    with localcontext() as ctx:
        ctx.prec = 400  # enough digits for any finite double at any sensible number of places
        rounded = Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return float(rounded) + 0.0


def _is_missing(value: object) -> bool:
    """True for None and float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite_values(values: Iterable[float], what: str) -> list[float]:
    """Return the values as floats, refusing missing and infinite values."""
    out: list[float] = []
    for value in values:
        if _is_missing(value):
            raise ValueError(f"{what}: missing value (None/NaN); drop missing values first")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{what}: value {number!r} is not finite")
        out.append(number)
    return out


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (math.fsum); ValueError if empty or any value is missing/infinite."""
    data = _finite_values(values, "mean")
    if not data:
        raise ValueError("mean of an empty sequence")
    return math.fsum(data) / len(data)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) by linear interpolation between closest ranks (Hyndman-Fan type 7).

    This is numpy's default ``quantile`` method and Excel ``QUARTILE.INC``: with the sorted
    values ``x[0..n-1]`` and ``h = (n - 1) * p``, ``Q(p) = x[floor(h)] + (h - floor(h)) *
    (x[floor(h) + 1] - x[floor(h)])``. Not rounded. ValueError if empty or any value is
    missing (None/NaN) or infinite.
    """
    data = sorted(_finite_values(values, "quartiles"))
    if not data:
        raise ValueError("quartiles of an empty sequence")

    def quantile(p: float) -> float:
        h = (len(data) - 1) * p
        lo = math.floor(h)
        if lo + 1 >= len(data):
            return data[lo]
        return data[lo] + (h - lo) * (data[lo + 1] - data[lo])

    return quantile(0.25), quantile(0.5), quantile(0.75)


@dataclass(frozen=True)
class StratifiedEstimate:
    """Design-weighted stratified mean of one measure, every float rounded to 3 decimals."""

    respondents: int
    mean: float | None  # unweighted
    weighted_mean: float | None
    standard_error: float | None
    ci_low: float | None
    ci_high: float | None
    single_respondent_strata: tuple[str, ...]


def stratified_estimate(
    responses: Mapping[str, Sequence[float | None]], frame_sizes: Mapping[str, int]
) -> StratifiedEstimate:
    """Stratified mean, standard error and 95% CI of one measure (e.g. an ONS4 question).

    Missing values (None/NaN) are dropped per measure. Only strata with at least one
    remaining value ("responding strata", r_h >= 1) are used, and the weights use the frame
    sizes of the responding strata only:

    * ``W_h = N_h / sum(N_k over responding k)``
    * ``weighted_mean = sum(W_h * ybar_h)``
    * ``SE = sqrt(sum(W_h**2 * (1 - r_h / N_h) * s_h**2 / r_h))`` with ``s_h**2`` the sample
      variance (ddof=1). Strata with ``r_h == 1`` add no variance and are listed in
      ``single_respondent_strata`` (sorted). If *every* responding stratum has
      ``r_h == 1`` nothing can be estimated and SE and the CI are None (not 0).
    * ``CI = weighted_mean -/+ 1.96 * SE`` (computed before rounding).
    * ``mean`` is the plain mean of all values; ``respondents = sum(r_h)``.

    Every float is rounded to 3 decimals by :func:`round_half_up`. No values at all gives
    ``respondents=0`` and every other field None/empty. Raises ValueError when a
    responding stratum has no frame size, a frame size is below its r_h, or a value is
    infinite.
    """
    data = _answered_by_stratum(responses)
    if not data:
        return StratifiedEstimate(0, None, None, None, None, None, ())
    sizes = _responding_frame_sizes(data, frame_sizes)

    frame_total = sum(sizes.values())
    respondents = sum(len(v) for v in data.values())
    all_values = [x for values in data.values() for x in values]
    unweighted = math.fsum(all_values) / respondents

    means: dict[str, float] = {h: math.fsum(v) / len(v) for h, v in data.items()}
    weights = {h: sizes[h] / frame_total for h in data}
    weighted = math.fsum(weights[h] * means[h] for h in data)
    se = _standard_error(data, means, weights, sizes)
    singles = tuple(h for h, values in data.items() if len(values) == 1)
    return StratifiedEstimate(
        respondents=respondents,
        mean=round_half_up(unweighted),
        weighted_mean=round_half_up(weighted),
        standard_error=None if se is None else round_half_up(se),
        ci_low=None if se is None else round_half_up(weighted - _Z_95 * se),
        ci_high=None if se is None else round_half_up(weighted + _Z_95 * se),
        single_respondent_strata=singles,
    )


def _answered_by_stratum(responses: Mapping[str, Sequence[float | None]]) -> dict[str, list[float]]:
    """The non-missing values per stratum, strata in sorted order, strata without any left out."""
    data: dict[str, list[float]] = {}
    for stratum in sorted(responses):
        values: list[float] = []
        for value in responses[stratum]:
            if value is None or _is_missing(value):
                continue
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"stratum {stratum!r}: value {number!r} is not finite")
            values.append(number)
        if values:
            data[stratum] = values
    return data


def _responding_frame_sizes(data: Mapping[str, Sequence[float]],
                            frame_sizes: Mapping[str, int]) -> dict[str, int]:
    """N_h of every responding stratum, refusing a missing size or one below its respondents."""
    sizes: dict[str, int] = {}
    for stratum, values in data.items():
        if stratum not in frame_sizes:
            raise ValueError(f"no frame size for responding stratum {stratum!r}")
        size = frame_sizes[stratum]
        if isinstance(size, bool) or not isinstance(size, int) or size < len(values):
            raise ValueError(
                f"frame size of stratum {stratum!r} must be an integer >= its "
                f"{len(values)} respondents, got {size!r}"
            )
        sizes[stratum] = size
    return sizes


def _standard_error(data: Mapping[str, Sequence[float]], means: Mapping[str, float],
                    weights: Mapping[str, float], sizes: Mapping[str, int]) -> float | None:
    """sqrt(sum(W_h**2 * (1 - r_h/N_h) * s_h**2 / r_h)) over strata with r_h >= 2; None if none."""
    variance_terms: list[float] = []
    for h, values in data.items():
        r = len(values)
        if r < 2:
            continue
        s2 = math.fsum((x - means[h]) ** 2 for x in values) / (r - 1)
        variance_terms.append(weights[h] ** 2 * (1 - r / sizes[h]) * s2 / r)
    return math.sqrt(math.fsum(variance_terms)) if variance_terms else None


def band_counts(
    values: Iterable[float | None], bands: Sequence[tuple[str, int, int]]
) -> list[tuple[str, int]]:
    """Count values in each inclusive band (label, low, high), in band order.

    Missing values (None/NaN) are skipped. Raises ValueError if a band has low > high,
    bands overlap, or a non-missing value falls in no band (e.g. 11 or 4.5 with the ONS4
    bands), so a bad score can never silently drop out of a table.
    """
    ordered = sorted(bands, key=lambda band: band[1])
    for label, low, high in ordered:
        if low > high:
            raise ValueError(f"band {label!r} has low {low} > high {high}")
    for (label_a, _, high_a), (label_b, low_b, _) in zip(ordered, ordered[1:], strict=False):
        if low_b <= high_a:
            raise ValueError(f"bands {label_a!r} and {label_b!r} overlap")
    counts = [0] * len(bands)
    for value in values:
        if value is None or _is_missing(value):
            continue
        for index, (_, low, high) in enumerate(bands):
            if low <= value <= high:
                counts[index] += 1
                break
        else:
            raise ValueError(f"value {value!r} is in none of the bands")
    return [(label, count) for (label, _, _), count in zip(bands, counts, strict=True)]


def percent(part: int, whole: int) -> float | None:
    """100 * part / whole to one decimal, halves rounded up (exact); None when whole is 0.

    Computed exactly with fractions, so 1/16 gives 6.3 and 1/80 gives 1.3. Raises
    ValueError for negative counts.
    """
    if part < 0 or whole < 0:
        raise ValueError(f"percent needs non-negative counts, got {part}/{whole}")
    if whole == 0:
        return None
    tenths = math.floor(Fraction(1000 * part, whole) + Fraction(1, 2))
    return tenths / 10
