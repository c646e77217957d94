"""Derived fields of the analysis store, computed once at ingest (polars, vectorised).

Input: the validated, pseudonymised tables (``tasks.ingest.pseudonymise``). Output: one frame per
analysis table, with exactly the columns of ``schemas.columns.ANALYSIS_COLUMNS`` (kept and
pseudonymised columns of the rules table, then the derived ones below). The rules:

* ``episodes.in_window`` (extract-v1.md §2): ``referral_date <= window_end`` and
  (``closure_date`` missing or ``closure_date >= window_start``), both ends inclusive.
* ``families.in_population``: the family has at least one loaded episode in the window.
* ``episodes.length_of_support_days``: ``closure_date − referral_date`` in days; missing while
  the episode is open.
* ``episodes.days_to_allocation``: ``allocation_date − referral_date`` in days; missing when
  there is no allocation date.
* ``children.age_band`` from ``age_at_referral`` (whole years at the episode's referral date):
  ``0-4``, ``5-10`` (primary school age), ``11-15`` (secondary, compulsory), ``16-18``
  (post-16); missing when the age is missing.
* ``goals.score_change``: ``latest_score − baseline_score``; missing without a latest score.
* ``episodes.goal_count``: the episode's loaded goals (0 when none).
* ``episodes.stepped_up_res_team`` / ``stepped_up_early_help_hub``: the episode has at least
  one loaded specialist referral to that service.
* ``episodes.stepped_up_social_care``: ``closure_outcome`` is ``stepped_up_to_social_care``,
  or ``onward_referral`` is ``childrens_social_care``, or a loaded specialist referral of the
  episode has outcome ``stepped_up_to_social_care``.
* ``episode_issues`` / ``episode_services``: one row per distinct code of the episode's
  ``presenting_issues`` / ``services`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS
from schemas.columns import AGE_BANDS, ANALYSIS_COLUMNS, CODE_LIST_TABLES

STEPPED_UP = "stepped_up_to_social_care"
SOCIAL_CARE = "childrens_social_care"


@dataclass(frozen=True)
class Population:
    """The in-window study population of one extract after validation."""

    families: int
    episodes: int


@dataclass(frozen=True)
class AnalysisTables:
    """The frames to load (columns as in the schema) and the population they hold."""

    tables: dict[str, pl.DataFrame] = field(repr=False)
    population: Population
    outside_window: dict[str, int]


def in_window(window_start: date, window_end: date) -> pl.Expr:
    """True when an episode was open at any time in the window (spec §2)."""
    return (pl.col("referral_date") <= window_end) & (
        pl.col("closure_date").is_null() | (pl.col("closure_date") >= window_start)
    )


def age_band(age: pl.Expr) -> pl.Expr:
    """The age band of a whole-year age (``schemas.columns.AGE_BANDS``); missing outside them."""
    band = pl.lit(None, dtype=pl.String)
    for label, low, high in reversed(AGE_BANDS):
        band = pl.when(age.is_between(low, high)).then(pl.lit(label)).otherwise(band)
    return band


def _days(later: str, earlier: str) -> pl.Expr:
    return (pl.col(later) - pl.col(earlier)).dt.total_days().cast(pl.Int64)


def derive_episodes(episodes: pl.DataFrame, goals: pl.DataFrame, referrals: pl.DataFrame,
                    window_start: date, window_end: date) -> pl.DataFrame:
    """Episodes with the window flag, durations, goal count and step-up flags."""
    goal_counts = goals.group_by("episode_pid").agg(pl.len().cast(pl.Int64).alias("goal_count"))
    specialist = referrals.group_by("episode_pid").agg(
        (pl.col("service") == "res_team").any().alias("_res_team"),
        (pl.col("service") == "early_help_hub").any().alias("_early_help_hub"),
        (pl.col("outcome") == STEPPED_UP).any().alias("_specialist_step_up"),
    )
    return (
        episodes.join(goal_counts, on="episode_pid", how="left")
        .join(specialist, on="episode_pid", how="left")
        .with_columns(
            in_window(window_start, window_end).alias("in_window"),
            _days("closure_date", "referral_date").alias("length_of_support_days"),
            _days("allocation_date", "referral_date").alias("days_to_allocation"),
            pl.col("goal_count").fill_null(0),
            pl.col("_res_team").fill_null(False).alias("stepped_up_res_team"),
            pl.col("_early_help_hub").fill_null(False).alias("stepped_up_early_help_hub"),
            (
                (pl.col("closure_outcome") == STEPPED_UP).fill_null(False)
                | (pl.col("onward_referral") == SOCIAL_CARE).fill_null(False)
                | pl.col("_specialist_step_up").fill_null(False)
            ).alias("stepped_up_social_care"),
        )
    )


def _code_rows(parents: pl.DataFrame, key: str, source: str, target: str) -> pl.DataFrame:
    return (
        parents.select(key, pl.col(source).list.unique().alias(target))
        .explode(target)
        .drop_nulls(target)
    )  # unsorted: the load inserts every table in primary-key order


def code_list_tables(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """One row per distinct code of each kept code-list column (``CODE_LIST_TABLES``)."""
    out = {}
    for (table, column), (stored, value) in CODE_LIST_TABLES.items():
        key = ANALYSIS_COLUMNS[stored][0]  # the parent row's pseudonymised key
        out[stored] = _code_rows(tables[table], key, column, value)
    return out


def derive_tables(tables: dict[str, pl.DataFrame], window_start: date, window_end: date
                  ) -> AnalysisTables:
    """All analysis tables with their derived fields, and the study population."""
    goals = tables[GOALS].with_columns(
        (pl.col("latest_score") - pl.col("baseline_score")).cast(pl.Int64).alias("score_change"))
    referrals = tables[SPECIALIST_REFERRALS]
    episodes = derive_episodes(tables[EPISODES], goals, referrals, window_start, window_end)
    in_population = episodes.filter(pl.col("in_window")).get_column("family_pid").unique()
    families = tables[FAMILIES].with_columns(
        pl.col("family_pid").is_in(in_population.implode()).alias("in_population"))
    children = tables[CHILDREN].with_columns(age_band(pl.col("age_at_referral")).alias("age_band"))
    out = {
        FAMILIES: families,
        CHILDREN: children,
        EPISODES: episodes,
        GOALS: goals,
        SPECIALIST_REFERRALS: referrals,
    }
    out |= code_list_tables(out)
    out = {name: out[name].select(columns) for name, columns in ANALYSIS_COLUMNS.items()}
    population = Population(
        families=int(families.get_column("in_population").sum()),
        episodes=int(episodes.get_column("in_window").sum()),
    )
    outside = {
        FAMILIES: families.height - population.families,
        EPISODES: episodes.height - population.episodes,
    }
    return AnalysisTables(tables=out, population=population, outside_window=outside)
