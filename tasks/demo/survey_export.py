"""Synthetic survey returns (survey export v1 layout of extract-v1.md) for tests and the demo.

Scores share one wellbeing factor so the ONS4 and scaling questions correlate as real returns
do; a few answers are missing (more on paper). Everything here is fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

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


def generate_survey_export(
    tokens: Sequence[str],
    *,
    seed: int,
    response_rate: float = 0.5,
    submitted_on: date = date(2022, 2, 1),
) -> pl.DataFrame:
    """Generate survey returns (export v1 layout) for a seeded subset of the issued tokens."""
    if not 0.0 <= response_rate <= 1.0:
        raise ValueError("response_rate must be between 0 and 1")
    rng = np.random.default_rng([seed, 2022])
    pool = list(tokens)
    k = round(len(pool) * response_rate)
    picked = rng.choice(len(pool), size=k, replace=False) if k else np.zeros(0, np.int64)
    start = datetime(submitted_on.year, submitted_on.month, submitted_on.day)
    seconds = rng.integers(0, 28, k) * 86400 + rng.integers(8 * 3600, 22 * 3600, k)
    sort = np.argsort(seconds, kind="stable")
    picked, seconds = picked[sort], seconds[sort]
    submitted = [(start + timedelta(seconds=int(s))).isoformat() for s in seconds]
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
