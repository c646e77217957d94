"""Counting helpers shared by the table builders: code-list counts, percent tables, bands, days."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import polars as pl

from tasks.analysis.registry import NOT_RECORDED, STATS_DAYS
from tasks.analysis.stats import mean, percent, quartiles, round_half_up

HOUSEHOLD_SIZE_BANDS = ("1", "2", "3", "4", "5", "6+")
ADULTS_IN_EMPLOYMENT_BANDS = ("0", "1", "2", "3+")
LENGTH_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-30", 0, 30), ("31-90", 31, 90), ("91-180", 91, 180), ("181-365", 181, 365),
    ("366+", 366, None),
)
YES_NO = ("yes", "no")
IMD_DECILES = tuple(str(d) for d in range(1, 11))


def code_counts(values: Iterable[str | None], codes: Sequence[str], *,
                not_recorded: bool | None) -> list[tuple[str, int]]:
    """Counts per code in code-list order; missing values under not_recorded.

    ``not_recorded``: True always adds the row, None adds it only when non-zero, False
    refuses missing values. A value outside the codes is a bug upstream: ValueError.
    """
    counts = Counter(values)
    unknown = sorted(str(v) for v in counts if v is not None and v not in codes)
    if unknown:
        raise ValueError(f"values outside the code list: {unknown}")
    out = [(code, counts.get(code, 0)) for code in codes]
    missing = counts.get(None, 0)
    if not_recorded or (not_recorded is None and missing):
        out.append((NOT_RECORDED, missing))
    elif missing and not_recorded is False:
        raise ValueError("missing values where none are allowed")
    return out


def percent_table(code_col: str, unit: str, counts: list[tuple[str, int]],
                  base: int) -> pl.DataFrame:
    """Code, count and percent of ``base`` as a three-column table."""
    return pl.DataFrame(
        {code_col: [c for c, _ in counts], unit: [n for _, n in counts],
         "percent": [percent(n, base) for _, n in counts]},
        schema={code_col: pl.String, unit: pl.Int64, "percent": pl.Float64},
    )


def day_summary(values: Sequence[int]) -> dict[str, float | int | None]:
    """n, mean, median and type-7 quartiles of day counts, one decimal; None when n is 0."""
    if not values:
        return {"n": 0, **{col: None for col in STATS_DAYS}}
    q1, median, q3 = quartiles(values)
    return {"n": len(values), "mean_days": round_half_up(mean(values), 1),
            "median_days": round_half_up(median, 1), "q1_days": round_half_up(q1, 1),
            "q3_days": round_half_up(q3, 1)}


DAY_SCHEMA = {"n": pl.Int64, **{col: pl.Float64 for col in STATS_DAYS}}


def band_label(value: int | None, bands: Sequence[tuple[str, int, int | None]]) -> str | None:
    """The label of the inclusive band (label, low, high or None) holding ``value``."""
    if value is None:
        return None
    for label, low, high in bands:
        if value >= low and (high is None or value <= high):
            return label
    raise ValueError(f"value {value} is in none of the bands")


def household_size_band(size: int | None) -> str | None:
    """Household size as its band: 1..5 as themselves, 6 or more as ``6+``."""
    return None if size is None else (str(size) if size < 6 else "6+")


def adults_band(adults: int | None) -> str | None:
    """Adults in employment as its band: 0..2 as themselves, 3 or more as ``3+``."""
    return None if adults is None else (str(adults) if adults < 3 else "3+")


def yes_no(flag: int | None) -> str | None:
    """A 0/1 flag as ``no``/``yes``."""
    return None if flag is None else ("yes" if flag else "no")

