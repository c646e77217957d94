"""The analysis's input: one cluster's study population and survey, read into typed polars frames.

The ``analysis_*`` queries select the in-window episodes (extract-v1.md section 2), their
families and those families' children (with every valid episode of those families, for
re-referrals, and the latest date of the extract data), the survey and the extract list;
every frame is then checked against its contract (``tasks.analysis.contracts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection

from schemas.codes import ONS4_MEASURES, SCALING_QUESTIONS
from tasks.analysis.contracts import validate_study_data
from tasks.core.db import rows

_SCHEMAS: dict[str, dict[str, Any]] = {
    "analysis_families": {
        "family_pid": pl.String, "household_size": pl.Int64, "adults_in_employment": pl.Int64,
        "lead_carer_employment": pl.String, "lead_carer_ethnicity": pl.String,
        "first_language_english": pl.Int64, "free_school_meals": pl.Int64, "imd_decile": pl.Int64,
    },
    "analysis_children": {
        "child_pid": pl.String, "family_pid": pl.String, "gender": pl.String,
        "ethnicity": pl.String, "age_at_referral": pl.Int64, "sen_support": pl.Int64,
    },
    "analysis_episodes": {
        "episode_pid": pl.String, "family_pid": pl.String, "referral_date": pl.String,
        "referral_route": pl.String, "allocation_date": pl.String, "primary_issue": pl.String,
        "lead_worker_role": pl.String, "closure_date": pl.String, "closure_outcome": pl.String,
        "onward_referral": pl.String,
    },
    "analysis_episode_issues": {"episode_pid": pl.String, "issue": pl.String},
    "analysis_episode_services": {"episode_pid": pl.String, "service": pl.String},
    "analysis_goals": {
        "episode_pid": pl.String, "goal_number": pl.Int64, "goal_area": pl.String,
        "baseline_score": pl.Int64, "latest_score": pl.Int64, "latest_review_date": pl.String,
    },
    "analysis_family_episodes": {
        "family_pid": pl.String, "episode_pid": pl.String, "referral_date": pl.String,
        "closure_date": pl.String, "in_window": pl.Int64,
    },
    "analysis_latest_date": {"latest_date": pl.String},
    "analysis_specialist_referrals": {
        "referral_pid": pl.String, "episode_pid": pl.String, "service": pl.String,
        "reason": pl.String, "outcome": pl.String,
    },
    "analysis_waves": {
        "wave": pl.Int64, "seed": pl.Int64, "size": pl.Int64, "stratify_by": pl.String,
        "drawn_at": pl.String,
    },
    "analysis_wave_strata": {
        "wave": pl.Int64, "stratum": pl.String, "frame_n": pl.Int64, "allocated": pl.Int64,
    },
    "analysis_survey": {
        "family_pid": pl.String, "wave": pl.Int64, "stratum": pl.String, "route": pl.String,
        "withdrawn": pl.Int64, "responded": pl.Int64,
        **{q: pl.Int64 for q in (*ONS4_MEASURES, *SCALING_QUESTIONS)},
        "q9_negative_effects": pl.Int64,
    },
    "analysis_extracts": {"sha256": pl.String, "status": pl.String, "received_at": pl.String},
}


@dataclass(frozen=True)
class StudyData:
    """The in-window study population and the survey of one cluster, as polars frames."""

    families: pl.DataFrame
    children: pl.DataFrame
    episodes: pl.DataFrame
    issues: pl.DataFrame
    services: pl.DataFrame
    goals: pl.DataFrame
    specialist: pl.DataFrame
    waves: pl.DataFrame
    strata: pl.DataFrame
    survey: pl.DataFrame
    extracts: pl.DataFrame
    #: every valid episode (in the window or not) of the study-population families
    family_episodes: pl.DataFrame
    #: the latest date found in the cluster's extract data (ISO), None when there is none
    latest_date: str | None


def _frame(conn: Connection, name: str, cluster: str) -> pl.DataFrame:
    """Run one named query and return its rows as a frame with the declared column types."""
    schema = _SCHEMAS[name]
    found = rows(conn, name, {"cluster": cluster})
    data = {col: [_plain(row[col]) for row in found] for col in schema}
    return pl.DataFrame(data, schema=schema)


def _plain(value: Any) -> Any:
    """Database values as plain Python: booleans as 0/1, dates and instants as ISO text."""
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _day(column: str) -> pl.Expr:
    """An ISO date or instant text column as a date."""
    return pl.col(column).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=True)


def _latest_date(conn: Connection, cluster: str) -> str | None:
    """The latest date found in the cluster's extract data (ISO text), None when none."""
    found = _frame(conn, "analysis_latest_date", cluster)["latest_date"].to_list()
    return found[0] if found and found[0] is not None else None


def load_study_data(conn: Connection, cluster: str) -> StudyData:
    """Read the in-window study population, the survey and the extract list of one cluster."""
    episodes = _frame(conn, "analysis_episodes", cluster).with_columns(
        closed=pl.col("closure_date").is_not_null(),
        length_days=(_day("closure_date") - _day("referral_date")).dt.total_days(),
        allocation_days=(_day("allocation_date") - _day("referral_date")).dt.total_days(),
    )
    data = StudyData(
        families=_frame(conn, "analysis_families", cluster),
        children=_frame(conn, "analysis_children", cluster),
        episodes=episodes,
        issues=_frame(conn, "analysis_episode_issues", cluster),
        services=_frame(conn, "analysis_episode_services", cluster),
        goals=_frame(conn, "analysis_goals", cluster),
        specialist=_frame(conn, "analysis_specialist_referrals", cluster),
        waves=_frame(conn, "analysis_waves", cluster),
        strata=_frame(conn, "analysis_wave_strata", cluster),
        survey=_frame(conn, "analysis_survey", cluster),
        extracts=_frame(conn, "analysis_extracts", cluster),
        family_episodes=_frame(conn, "analysis_family_episodes", cluster),
        latest_date=_latest_date(conn, cluster),
    )
    validate_study_data(data)
    return data

