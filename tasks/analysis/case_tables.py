"""Tables from the case extract: referrals, issues, support, closure, specialist referrals, demographics.

All of the in-window study population; closure, onward-referral and length-of-support tables use
its closed episodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from schemas.codes import (
    CLOSURE_OUTCOME,
    ETHNICITY_CODES,
    GENDER,
    LEAD_CARER_EMPLOYMENT,
    ONWARD_REFERRAL,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_SERVICE,
)
from schemas.columns import AGE_BANDS
from tasks.analysis.counts import (
    ADULTS_IN_EMPLOYMENT_BANDS,
    DAY_SCHEMA,
    HOUSEHOLD_SIZE_BANDS,
    IMD_DECILES,
    LENGTH_BANDS,
    YES_NO,
    adults_band,
    band_label,
    code_counts,
    day_summary,
    household_size_band,
    percent_table,
    yes_no,
)
from tasks.analysis.registry import STATS_DAYS, TABLES_BY_NAME
from tasks.analysis.stats import mean, quartiles, round_half_up
from tasks.analysis.study_data import StudyData

OTHER_SERVICES = (
    "camhs", "adult_mental_health", "housing_service", "domestic_abuse_service", "other",
)
CLOSURE_REFERRALS = ("childrens_social_care", "other_services", "no_onward_referral")


# --- administrative tables --------------------------------------------------------------------


def population_table(data: StudyData) -> pl.DataFrame:
    """families, children, episodes, closed_episodes of the in-window study population."""
    return pl.DataFrame({
        "families": [data.families.height], "children": [data.children.height],
        "episodes": [data.episodes.height],
        "closed_episodes": [int(data.episodes["closed"].sum())],
    }, schema={c: pl.Int64 for c in TABLES_BY_NAME["population"].columns})


def _closed(episodes: pl.DataFrame) -> pl.DataFrame:
    """The closed episodes."""
    return episodes.filter(pl.col("closed"))


def referral_routes_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """In-window episodes by referral route."""
    counts = code_counts(episodes["referral_route"], REFERRAL_ROUTE, not_recorded=False)
    return percent_table("referral_route", "episodes", counts, episodes.height)


def presenting_issues_table(episodes: pl.DataFrame, issues: pl.DataFrame) -> pl.DataFrame:
    """In-window episodes with each presenting issue; percent of in-window episodes."""
    counts = code_counts(issues["issue"], PRESENTING_ISSUES, not_recorded=False)
    return percent_table("issue", "episodes", counts, episodes.height)


def issues_by_service_table(issues: pl.DataFrame, services: pl.DataFrame) -> pl.DataFrame:
    """Cross-tab: in-window episodes having both the presenting issue and the service."""
    pairs = Counter(zip(*issues.join(services, on="episode_pid").select("issue", "service")
                        .get_columns(), strict=True))
    data: dict[str, list[Any]] = {"issue": list(PRESENTING_ISSUES)}
    for service in SERVICES:
        data[service] = [pairs.get((issue, service), 0) for issue in PRESENTING_ISSUES]
    return pl.DataFrame(data, schema={"issue": pl.String, **{s: pl.Int64 for s in SERVICES}})


def closure_outcomes_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed in-window episodes by closure outcome."""
    closed = _closed(episodes)
    counts = code_counts(closed["closure_outcome"], CLOSURE_OUTCOME, not_recorded=None)
    return percent_table("closure_outcome", "episodes", counts, closed.height)


def onward_referrals_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed in-window episodes by onward referral."""
    closed = _closed(episodes)
    counts = code_counts(closed["onward_referral"], ONWARD_REFERRAL, not_recorded=None)
    return percent_table("onward_referral", "episodes", counts, closed.height)


def closure_referrals_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed episodes referred to children's social care, to other services, or neither."""
    closed = _closed(episodes)
    social = other = neither = 0
    for outcome, onward in zip(closed["closure_outcome"], closed["onward_referral"], strict=True):
        to_social = onward == "childrens_social_care" or outcome == "stepped_up_to_social_care"
        to_other = onward in OTHER_SERVICES
        social += to_social
        other += to_other
        neither += onward == "none" and not to_social
    counts = list(zip(CLOSURE_REFERRALS, (social, other, neither), strict=True))
    return percent_table("referral", "episodes", counts, closed.height)


def length_of_support_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """n, mean, median, q1, q3 of days from referral to closure (closed in-window episodes)."""
    days = _closed(episodes)["length_days"].to_list()
    return pl.DataFrame([day_summary(days)], schema=DAY_SCHEMA)


def length_of_support_bands_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed in-window episodes by banded length of support."""
    closed = _closed(episodes)
    labels = [band_label(d, LENGTH_BANDS) for d in closed["length_days"]]
    counts = code_counts(labels, [b[0] for b in LENGTH_BANDS], not_recorded=False)
    return percent_table("band", "episodes", counts, closed.height)


def length_of_support_by_issue_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Length-of-support summary per primary issue (closed in-window episodes)."""
    closed = _closed(episodes)
    out = []
    for issue in PRESENTING_ISSUES:
        days = closed.filter(pl.col("primary_issue") == issue)["length_days"].to_list()
        out.append({"primary_issue": issue, **day_summary(days)})
    return pl.DataFrame(out, schema={"primary_issue": pl.String, **DAY_SCHEMA})


def length_of_support_by_service_table(episodes: pl.DataFrame,
                                       services: pl.DataFrame) -> pl.DataFrame:
    """Length-of-support summary per service offered (an episode counts under each)."""
    closed = _closed(episodes).join(services, on="episode_pid")
    out = []
    for service in SERVICES:
        days = closed.filter(pl.col("service") == service)["length_days"].to_list()
        out.append({"service": service, **day_summary(days)})
    return pl.DataFrame(out, schema={"service": pl.String, **DAY_SCHEMA})


def days_to_allocation_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Summary of days from referral to allocation, and episodes never allocated."""
    days = episodes["allocation_days"].drop_nulls().to_list()
    summary = day_summary(days)
    row = {"n": summary["n"], "not_allocated": episodes.height - len(days),
           **{col: summary[col] for col in STATS_DAYS}}
    return pl.DataFrame([row], schema={"n": pl.Int64, "not_allocated": pl.Int64,
                                       **{col: pl.Float64 for col in STATS_DAYS}})


def goal_score_change_table(goals: pl.DataFrame) -> pl.DataFrame:
    """Goals per area and the change from baseline to latest score of reviewed goals."""
    out = []
    for area in PRESENTING_ISSUES:
        in_area = goals.filter(pl.col("goal_area") == area)
        reviewed = in_area.filter(pl.col("latest_score").is_not_null())
        row: dict[str, Any] = {"goal_area": area, "goals": in_area.height,
                               "reviewed": reviewed.height}
        if reviewed.height:
            base = reviewed["baseline_score"].to_list()
            latest = reviewed["latest_score"].to_list()
            change = [b2 - b1 for b1, b2 in zip(base, latest, strict=True)]
            row |= {"mean_baseline": round_half_up(mean(base), 2),
                    "mean_latest": round_half_up(mean(latest), 2),
                    "mean_change": round_half_up(mean(change), 2),
                    "median_change": round_half_up(quartiles(change)[1], 2)}
        out.append(row)
    schema = {"goal_area": pl.String, "goals": pl.Int64, "reviewed": pl.Int64,
              "mean_baseline": pl.Float64, "mean_latest": pl.Float64, "mean_change": pl.Float64,
              "median_change": pl.Float64}
    return pl.DataFrame(out, schema=schema)


def _service_by(specialist: pl.DataFrame, column: str, codes: Sequence[str],
                count: str) -> pl.DataFrame:
    """Specialist referrals by service and ``column`` (every combination a row, 0 when none)."""
    pairs = Counter(zip(specialist["service"], specialist[column], strict=True))
    data = [(s, c, pairs.get((s, c), 0)) for s in SPECIALIST_SERVICE for c in codes]
    return pl.DataFrame(data, schema={"service": pl.String, column: pl.String, count: pl.Int64},
                        orient="row")


def specialist_referrals_table(specialist: pl.DataFrame) -> pl.DataFrame:
    """Specialist referrals by service and outcome (every combination a row)."""
    return _service_by(specialist, "outcome", SPECIALIST_OUTCOME, "referrals")


def specialist_reasons_table(specialist: pl.DataFrame) -> pl.DataFrame:
    """Specialist referrals by service and reason (every combination a row)."""
    return _service_by(specialist, "reason", PRESENTING_ISSUES, "referrals")


def stepped_up_issues_table(issues: pl.DataFrame, specialist: pl.DataFrame) -> pl.DataFrame:
    """Presenting issues of the in-window episodes with any specialist referral."""
    stepped = set(specialist["episode_pid"].to_list())
    counts = code_counts(issues.filter(pl.col("episode_pid").is_in(sorted(stepped)))["issue"],
                          PRESENTING_ISSUES, not_recorded=False)
    return percent_table("issue", "episodes", counts, len(stepped))


# --- demographics -----------------------------------------------------------------------------

_Recode = Callable[[Any], str | None]
_FAMILY_DEMOGRAPHICS: tuple[tuple[str, str, Sequence[str], _Recode], ...] = (
    ("demographics_lead_carer_ethnicity", "lead_carer_ethnicity", ETHNICITY_CODES, lambda v: v),
    ("demographics_household_size", "household_size", HOUSEHOLD_SIZE_BANDS, household_size_band),
    ("demographics_adults_in_employment", "adults_in_employment", ADULTS_IN_EMPLOYMENT_BANDS,
     adults_band),
    ("demographics_lead_carer_employment", "lead_carer_employment", LEAD_CARER_EMPLOYMENT,
     lambda v: v),
    ("demographics_free_school_meals", "free_school_meals", YES_NO, yes_no),
    ("demographics_imd_decile", "imd_decile", IMD_DECILES,
     lambda v: None if v is None else str(v)),
    ("demographics_first_language", "first_language_english", YES_NO, yes_no),
)
_CHILD_DEMOGRAPHICS: tuple[tuple[str, str, str, Sequence[str], _Recode], ...] = (
    ("demographics_child_ethnicity", "ethnicity", "ethnicity", ETHNICITY_CODES, lambda v: v),
    ("demographics_child_gender", "gender", "gender", GENDER, lambda v: v),
    ("demographics_child_age_band", "age_band", "age_at_referral", [b[0] for b in AGE_BANDS],
     lambda v: band_label(v, AGE_BANDS)),
)


def demographics_tables(families: pl.DataFrame, children: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Families and children by each demographic characteristic, with percent."""
    out: dict[str, pl.DataFrame] = {}
    for name, column, codes, recode in _FAMILY_DEMOGRAPHICS:
        counts = code_counts((recode(v) for v in families[column]), codes, not_recorded=True)
        out[name] = percent_table(column, "families", counts, families.height)
    for name, label, column, codes, recode in _CHILD_DEMOGRAPHICS:
        counts = code_counts((recode(v) for v in children[column]), codes, not_recorded=True)
        out[name] = percent_table(label, "children", counts, children.height)
    return out


