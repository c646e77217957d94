"""Synthetic survey returns (survey export v1 layout of extract-v1.md) for tests and the demo.

Scores share one wellbeing factor so the ONS4 and scaling questions correlate as real returns
do; a few answers are missing (more on paper). Each return is dated between its household's
invitation and ``until`` (UTC, to the second), so an import accepts it (a return cannot predate
the invitation nor come from the future). Everything here is fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from schemas.codes import SCORE_QUESTIONS, SURVEY_COLUMNS, SURVEY_MODE, YES_NO_QUESTIONS
from tasks.demo.values import choice, gather, yes_no

__all__ = ["generate_survey_export", "survey_export_csv"]

_SCORE_PARAMS = {  # mean, sd, loading on a shared wellbeing factor
    "q1_life_satisfaction": (6.5, 2.1, 0.6),
    "q2_worthwhile": (7.0, 2.0, 0.55),
    "q3_happy_yesterday": (6.5, 2.4, 0.6),
    "q4_anxious_yesterday": (3.8, 2.8, -0.5),
    "q5_child_wellbeing": (7.2, 1.9, 0.4),
    "q6_parenting_confidence": (6.9, 2.0, 0.45),
    "q7_help_with_difficulties": (6.6, 2.4, 0.35),
    "q8_worker_relationship": (8.1, 1.8, 0.3),
}
_SPREAD_SECONDS = 28 * 86400  # returns drawn over four weeks, then scaled into invitation..until


def _to_second(moment: datetime) -> datetime:
    """UTC, to the second (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def generate_survey_export(
    tokens: Sequence[str],
    *,
    seed: int,
    response_rate: float = 0.5,
    invited: datetime | Mapping[str, datetime] | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """Generate survey returns (export v1 layout) for a seeded subset of the issued tokens.

    A household's return is submitted between its invitation and ``until`` (default: now), both
    to the second: ``invited`` is one time for every token, or a time per token; by default
    ``until`` (every return at that moment). Times are written as UTC ISO 8601 with ``+00:00``.
    """
    if not 0.0 <= response_rate <= 1.0:
        raise ValueError("response_rate must be between 0 and 1")
    rng = np.random.default_rng([seed, 2022])
    pool = list(tokens)
    k = round(len(pool) * response_rate)
    picked = rng.choice(len(pool), size=k, replace=False) if k else np.zeros(0, np.int64)
    seconds = rng.integers(0, 28, k) * 86400 + rng.integers(8 * 3600, 22 * 3600, k)
    sort = np.argsort(seconds, kind="stable")
    picked, seconds = picked[sort], seconds[sort]
    end = _to_second(until or datetime.now(UTC))
    submitted = []
    for i, s in zip(picked, seconds, strict=True):
        opened = invited.get(pool[i], end) if isinstance(invited, Mapping) else (invited or end)
        start = _to_second(opened)
        span = max(0, int((end - start).total_seconds()))
        submitted.append((start + timedelta(seconds=int(span * int(s) / _SPREAD_SECONDS))).isoformat())
    mode = choice(rng, k, (0.70, 0.25, 0.05))
    factor = rng.normal(0.0, 1.0, k)
    columns: dict[str, pl.Series] = {
        "token": pl.Series([pool[i] for i in picked], dtype=pl.String),
        "submitted_at": pl.Series(submitted, dtype=pl.String),
        "mode": gather(SURVEY_MODE, mode),
    }
    for question in SCORE_QUESTIONS:
        mean, sd, loading = _SCORE_PARAMS[question]
        noise = rng.normal(0.0, 1.0, k)
        raw = mean + sd * (loading * factor + np.sqrt(1 - loading**2) * noise)
        score = np.clip(np.rint(raw), 0, 10).astype(np.int64)
        missing = rng.random(k) < np.where(mode == 1, 0.06, 0.02)
        columns[question] = pl.Series(score, dtype=pl.Int64).zip_with(
            pl.Series(~missing, dtype=pl.Boolean), pl.repeat(None, k, dtype=pl.Int64, eager=True)
        )
    q9, q10 = YES_NO_QUESTIONS
    columns[q9] = yes_no(rng.random(k) < 0.08, rng.random(k) >= 0.05)
    columns[q10] = yes_no(rng.random(k) < 0.35, rng.random(k) >= 0.08)
    return pl.DataFrame([columns[c].rename(c) for c in SURVEY_COLUMNS])


def survey_export_csv(df: pl.DataFrame) -> bytes:
    """Render a survey export frame as UTF-8 CSV bytes (empty cell = missing)."""
    return df.write_csv().encode("utf-8")
