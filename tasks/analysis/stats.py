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
from typing import TYPE_CHECKING, Literal, get_args

from scipy.stats import t as student_t

if TYPE_CHECKING:
    from tasks.core.settings import SurveySettings

__all__ = [
    "ONS4_BANDS_ANXIETY",
    "ONS4_BANDS_POSITIVE",
    "CiMethod",
    "LONELY_EFFECT",
    "EstimatorOptions",
    "LonelyStratum",
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

#: How a stratum with a single respondent enters the variance (R ``survey``'s lonely.psu).
LonelyStratum = Literal["certainty", "adjust", "conservative"]
#: How the 95% CI is formed from the standard error.
CiMethod = Literal["normal", "t"]

_LONELY_TEXT = {
    "certainty": "a stratum with a single respondent adds no variance (as R survey's "
                 'lonely.psu = "certainty")',
    "adjust": "a stratum with a single respondent adds its squared deviation from the weighted "
              'mean, with the finite population correction (R survey\'s lonely.psu = "adjust")',
    "conservative": "a stratum with a single respondent adds the average variance contribution "
                    "of the other strata (R survey's lonely.psu = \"average\")",
}
#: What single-respondent strata add, per option, as the end of "... add <this> the SE".
LONELY_EFFECT = {
    "certainty": "no variance to",
    "adjust": "their deviation from the weighted mean (R survey's lonely.psu \"adjust\") to",
    "conservative": "the other strata's average variance (R survey's lonely.psu \"average\") to",
}
_CI_TEXT = {
    "normal": "95% CI = weighted mean -/+ 1.96 x SE (normal)",
    "t": "95% CI = weighted mean -/+ t(0.975; n - H) x SE, with n respondents and H responding "
         "strata (Student t)",
}


@dataclass(frozen=True)
class EstimatorOptions:
    """The survey estimator's choices (settings ``survey.lonely_stratum`` and ``survey.ci``)."""

    lonely_stratum: LonelyStratum = "certainty"
    ci: CiMethod = "normal"

    def __post_init__(self) -> None:
        if self.lonely_stratum not in get_args(LonelyStratum):
            raise ValueError(f"lonely_stratum must be one of {get_args(LonelyStratum)}, "
                             f"got {self.lonely_stratum!r}")
        if self.ci not in get_args(CiMethod):
            raise ValueError(f"ci must be one of {get_args(CiMethod)}, got {self.ci!r}")

    @classmethod
    def from_settings(cls, survey: SurveySettings) -> EstimatorOptions:
        """The options of one run's settings."""
        return cls(survey.lonely_stratum, survey.ci)

    def as_dict(self) -> dict[str, str]:
        """The options and what they mean, for the manifest and the methods section."""
        return {"lonely_stratum": self.lonely_stratum, "ci": self.ci,
                "lonely_stratum_means": _LONELY_TEXT[self.lonely_stratum],
                "ci_means": _CI_TEXT[self.ci]}


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
    responses: Mapping[str, Sequence[float | None]], frame_sizes: Mapping[str, int],
    options: EstimatorOptions | None = None,
) -> StratifiedEstimate:
    """Stratified mean, standard error and 95% CI of one measure (e.g. an ONS4 question).

    Missing values (None/NaN) are dropped per measure. Only strata with at least one
    remaining value ("responding strata", r_h >= 1) are used, and the weights use the frame
    sizes of the responding strata only:

    * ``W_h = N_h / sum(N_k over responding k)``
    * ``weighted_mean = sum(W_h * ybar_h)``
    * ``SE = sqrt(sum(V_h))`` with ``V_h = W_h**2 * (1 - r_h / N_h) * s_h**2 / r_h`` for
      ``r_h >= 2`` (``s_h**2`` the sample variance, ddof=1). Strata with ``r_h == 1`` are
      listed in ``single_respondent_strata`` (sorted) and enter as R ``survey``'s
      ``svymean`` with ``fpc = N_h`` does for ``options.lonely_stratum`` (the design taken
      per measure on the answered values):

      - ``certainty`` (default, ``lonely.psu = "certainty"``): ``V_h = 0``;
      - ``adjust`` (``"adjust"``): centred at the weighted mean instead of the stratum mean,
        ``V_h = W_h**2 * (1 - 1/N_h) * (y_h - weighted_mean)**2``;
      - ``conservative`` (``"average"``): ``V_h`` unknown, and the sum of the known ``V_k``
        is scaled by ``H / H_known`` (H responding strata), i.e. each single-respondent
        stratum gets the average contribution of the others.

      A stratum with ``r_h == N_h`` (fully enumerated, also ``N_h == 1``) adds 0 and counts
      as known. If no responding stratum has ``r_h >= 2`` (``adjust``: fewer than 2
      respondents) nothing can be estimated and SE and the CI are None (not 0).
    * ``CI = weighted_mean -/+ c * SE`` (computed before rounding), ``c = 1.96`` for
      ``options.ci == "normal"`` (default), ``c = t.ppf(0.975, n - H)`` for ``"t"`` (scipy;
      the CI is None when ``n - H < 1``).
    * ``mean`` is the plain mean of all values; ``respondents = n = sum(r_h)``.

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
    options = options or EstimatorOptions()
    se = _standard_error(data, means, weights, sizes, weighted, options.lonely_stratum)
    singles = tuple(h for h, values in data.items() if len(values) == 1)
    factor = _critical_value(options.ci, respondents - len(data))
    half = None if se is None or factor is None else factor * se
    low, high = (None, None) if half is None else (weighted - half, weighted + half)
    return StratifiedEstimate(
        respondents=respondents,
        mean=round_half_up(unweighted),
        weighted_mean=round_half_up(weighted),
        standard_error=_rounded(se),
        ci_low=_rounded(low),
        ci_high=_rounded(high),
        single_respondent_strata=singles,
    )


def _rounded(value: float | None) -> float | None:
    """:func:`round_half_up` to 3 decimals, None stays None."""
    return None if value is None else round_half_up(value)


def _critical_value(ci: CiMethod, degrees_of_freedom: int) -> float | None:
    """1.96 (normal), or the t quantile 0.975 on n - H degrees of freedom (None if below 1)."""
    if ci == "normal":
        return _Z_95
    if degrees_of_freedom < 1:
        return None
    return float(student_t.ppf(0.975, degrees_of_freedom))


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


def _stratum_variance(values: Sequence[float], stratum_mean: float, weight: float, size: int,
                      grand_mean: float, lonely: LonelyStratum) -> float | None:
    """One stratum's variance term V_h; None for a single respondent under ``conservative``."""
    r = len(values)
    fpc = 1 - r / size
    if r >= 2:
        s2 = math.fsum((x - stratum_mean) ** 2 for x in values) / (r - 1)
        return weight**2 * fpc * s2 / r
    if r == size or lonely == "certainty":  # fully enumerated, or a certainty unit
        return 0.0
    if lonely == "adjust":
        return weight**2 * fpc * (values[0] - grand_mean) ** 2
    return None


def _standard_error(data: Mapping[str, Sequence[float]], means: Mapping[str, float],
                    weights: Mapping[str, float], sizes: Mapping[str, int], grand_mean: float,
                    lonely: LonelyStratum) -> float | None:
    """sqrt of the summed V_h (see :func:`stratified_estimate`); None if nothing is estimable."""
    if lonely == "adjust":
        estimable = sum(len(v) for v in data.values()) >= 2
    else:
        estimable = any(len(v) >= 2 for v in data.values())
    if not estimable:
        return None
    terms = [_stratum_variance(values, means[h], weights[h], sizes[h], grand_mean, lonely)
             for h, values in data.items()]
    known = [v for v in terms if v is not None]
    return math.sqrt(math.fsum(known) * len(terms) / len(known))


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
