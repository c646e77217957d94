"""The protocol's tables: database -> polars frames -> restricted and publication tables.

Plain functions, no Prefect, no files. ``load_study_data`` runs the ``analysis_*`` queries for
one cluster; ``build_analysis`` turns the frames into the restricted tables (exact figures);
``publication_tables`` applies small-number suppression (``tasks.analysis.disclosure``) table by table
following each table's rules in ``TABLES``; ``format_table`` renders any table as strings with
fixed decimals, which is what the CSV files hold.

Conventions (the report's methods section says the same):

* the population is the in-window episodes (extract-v1.md section 2), their families and
  those families' children; closure, onward-referral and length-of-support tables use the
  closed in-window episodes;
* percentages: ``tasks.analysis.stats.percent`` of the table's own base, one decimal, halves up;
* medians and quartiles: Hyndman-Fan type 7 (``tasks.analysis.stats.quartiles``, Excel QUARTILE.INC);
* every code of a table's code list is a row, 0 when none; ``not_recorded`` counts missing
  values (always shown in the demographics tables, only when non-zero elsewhere);
* rows are in code-list order, so two runs on the same data give identical tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from io import BytesIO
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors
from sqlalchemy import Connection

from schemas.codes import (
    CLOSURE_OUTCOME,
    ETHNICITY_CODES,
    GENDER,
    LEAD_CARER_EMPLOYMENT,
    ONS4_MEASURES,
    ONWARD_REFERRAL,
    PREFERRED_CONTACT,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SCALING_QUESTIONS,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_SERVICE,
)
from tasks.analysis.disclosure import SUPPRESSED, suppress_one_way, suppress_two_way
from tasks.analysis.stats import (
    ONS4_BANDS_ANXIETY,
    ONS4_BANDS_POSITIVE,
    band_counts,
    mean,
    percent,
    quartiles,
    round_half_up,
    stratified_estimate,
)
from tasks.core.audit import append_audit
from tasks.core.db import query, rows
from tasks.core.errors import UserFacingError

NOT_RECORDED = "not_recorded"
ALL = "all"
#: Survey means (and spreads) from fewer respondents than this are never published.
SURVEY_MIN_RESPONDENTS = 5

HOUSEHOLD_SIZE_BANDS = ("1", "2", "3", "4", "5", "6+")
ADULTS_IN_EMPLOYMENT_BANDS = ("0", "1", "2", "3+")
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-4", 0, 4), ("5-10", 5, 10), ("11-15", 11, 15), ("16-18", 16, 18),
)
LENGTH_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-30", 0, 30), ("31-90", 31, 90), ("91-180", 91, 180), ("181-365", 181, 365),
    ("366+", 366, None),
)
YES_NO = ("yes", "no")
IMD_DECILES = tuple(str(d) for d in range(1, 11))
OTHER_SERVICES = (
    "camhs", "adult_mental_health", "housing_service", "domestic_abuse_service", "other",
)
CLOSURE_REFERRALS = ("childrens_social_care", "other_services", "no_onward_referral")
NEGATIVE_EFFECT_ANSWERS = ("yes", "no", "not_answered")
STRATUM_CODES: dict[str, tuple[str, ...]] = {
    "primary_issue": PRESENTING_ISSUES,
    "referral_route": REFERRAL_ROUTE,
    "lead_carer_ethnicity": ETHNICITY_CODES,
}


# --- suppression rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class OneWay:
    """Counts in ``column`` form one-way tables (per ``group_by`` group) with a published total.

    Primary and secondary suppression by ``tasks.analysis.disclosure.suppress_one_way``; ``linked``
    columns (percentages, statistics) are hidden with their count. ``total`` names the
    (column, value) of a group's own total row, which is checked on its own.
    """

    column: str
    linked: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    total: tuple[str, str] | None = None


@dataclass(frozen=True)
class CrossTab:
    """A cross-tab, long (``rows`` x ``cols`` with counts in ``value``) or wide (``values``)."""

    rows: str
    cols: str | None = None
    value: str | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class MinBase:
    """Hide ``hides`` where the base ``column`` is below the survey minimum (or threshold+1)."""

    column: str
    hides: tuple[str, ...]


Rule = OneWay | CrossTab | MinBase


@dataclass(frozen=True)
class TableInfo:
    """One output table: file stem, sheet name, section, title, meaning, columns, rules."""

    name: str
    sheet: str
    section: str
    title: str
    description: str
    columns: tuple[str, ...]
    decimals: Mapping[str, int] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()


_PCT = {"percent": 1}
_DAYS = {"mean_days": 1, "median_days": 1, "q1_days": 1, "q3_days": 1}
_STATS_DAYS = ("mean_days", "median_days", "q1_days", "q3_days")
_ONS4_FIGURES = ("mean", "weighted_mean", "standard_error", "ci_low", "ci_high")
_SCALING_FIGURES = ("mean", "median", "q1", "q3")


def _count_table(name: str, sheet: str, section: str, title: str, description: str,
                 code: str, unit: str) -> TableInfo:
    return TableInfo(name, sheet, section, title, description, (code, unit, "percent"), _PCT,
                     (OneWay(unit, ("percent",)),))


def _demographic(name: str, sheet: str, title: str, code: str, unit: str) -> TableInfo:
    base = "study-population families" if unit == "families" else "children of those families"
    return _count_table(
        name, sheet, "demographics", title,
        f"{unit.capitalize()} by {code.replace('_', ' ')}; percent of all {base}; "
        "not_recorded counts missing values.", code, unit,
    )


TABLES: tuple[TableInfo, ...] = (
    TableInfo("population", "population", "administrative", "Study population",
              "In-window episodes, their families and children, and how many episodes are closed.",
              ("families", "children", "episodes", "closed_episodes"),
              rules=(OneWay("families"), OneWay("children"), OneWay("episodes"),
                     OneWay("closed_episodes"))),
    _count_table("referral_routes", "referral_routes", "administrative", "Referral routes",
                 "In-window episodes by referral route; percent of in-window episodes.",
                 "referral_route", "episodes"),
    _count_table("presenting_issues", "presenting_issues", "administrative", "Presenting issues",
                 "In-window episodes with each presenting issue (an episode counts under each of "
                 "its issues); percent of in-window episodes, so percentages can add to over 100.",
                 "issue", "episodes"),
    TableInfo("presenting_issues_by_service", "issues_by_service", "administrative",
              "Presenting issues by service offered",
              "In-window episodes with both the issue and the service (multiple counting).",
              ("issue", *SERVICES), rules=(CrossTab("issue", values=SERVICES),)),
    _count_table("closure_outcomes", "closure_outcomes", "closure", "Outcomes at closure",
                 "Closed in-window episodes by closure outcome; percent of closed episodes.",
                 "closure_outcome", "episodes"),
    _count_table("onward_referrals", "onward_referrals", "closure", "Onward referrals at closure",
                 "Closed in-window episodes by onward referral; percent of closed episodes.",
                 "onward_referral", "episodes"),
    _count_table("closure_referrals", "closure_referrals", "closure",
                 "Referred to children's social care or other services at closure",
                 "Closed in-window episodes: childrens_social_care = onward referral to "
                 "children's social care or closure outcome stepped_up_to_social_care; "
                 "other_services = onward referral to CAMHS, adult mental health, housing, "
                 "domestic abuse or other services; no_onward_referral = neither. Percent of "
                 "closed episodes (rows can overlap).",
                 "referral", "episodes"),
    TableInfo("length_of_support", "length_of_support", "support", "Length of support (days)",
              "closure_date - referral_date of closed in-window episodes; quartiles type 7.",
              ("n", *_STATS_DAYS), _DAYS, (OneWay("n", _STATS_DAYS),)),
    _count_table("length_of_support_bands", "length_bands", "support",
                 "Length of support, banded",
                 "Closed in-window episodes by days from referral to closure; percent of closed "
                 "episodes.", "band", "episodes"),
    TableInfo("length_of_support_by_issue", "length_by_issue", "support",
              "Length of support by primary issue",
              "Days from referral to closure of closed in-window episodes, by primary issue.",
              ("primary_issue", "n", *_STATS_DAYS), _DAYS, (OneWay("n", _STATS_DAYS),)),
    TableInfo("length_of_support_by_service", "length_by_service", "support",
              "Length of support by service",
              "Days from referral to closure of closed in-window episodes that were offered the "
              "service (an episode counts under each of its services).",
              ("service", "n", *_STATS_DAYS), _DAYS, (OneWay("n", _STATS_DAYS),)),
    TableInfo("days_to_allocation", "days_to_allocation", "support",
              "Days from referral to allocation",
              "allocation_date - referral_date of in-window episodes with an allocation date; "
              "not_allocated counts those without one.",
              ("n", "not_allocated", *_STATS_DAYS), _DAYS,
              (OneWay("n", _STATS_DAYS), OneWay("not_allocated"))),
    TableInfo("goal_score_change", "goal_score_change", "support",
              "Goal scaling-score change by goal area",
              "Goals of in-window episodes; reviewed = goals with a latest score; means and "
              "median of latest - baseline over reviewed goals (0-10 scaling scores).",
              ("goal_area", "goals", "reviewed", "mean_baseline", "mean_latest", "mean_change",
               "median_change"),
              {"mean_baseline": 2, "mean_latest": 2, "mean_change": 2, "median_change": 2},
              (OneWay("goals"),
               OneWay("reviewed", ("mean_baseline", "mean_latest", "mean_change",
                                   "median_change")))),
    TableInfo("specialist_referrals", "specialist_referrals", "specialist",
              "Specialist referrals by service and outcome",
              "Referrals to the RES Team or Early Help Hub made for in-window episodes.",
              ("service", "outcome", "referrals"),
              rules=(CrossTab("service", "outcome", "referrals"),)),
    TableInfo("specialist_referral_reasons", "specialist_reasons", "specialist",
              "Specialist referrals by service and reason",
              "Referrals to the RES Team or Early Help Hub for in-window episodes, by reason.",
              ("service", "reason", "referrals"),
              rules=(CrossTab("service", "reason", "referrals"),)),
    _count_table("stepped_up_issues", "stepped_up_issues", "specialist",
                 "Presenting issues of episodes stepped up to a specialist service",
                 "In-window episodes with at least one RES Team or Early Help Hub referral, by "
                 "presenting issue (multiple counting); percent of those episodes.",
                 "issue", "episodes"),
    _demographic("demographics_lead_carer_ethnicity", "demo_carer_ethnicity",
                 "Lead carer ethnicity", "lead_carer_ethnicity", "families"),
    _demographic("demographics_child_ethnicity", "demo_child_ethnicity",
                 "Children's ethnicity", "ethnicity", "children"),
    _demographic("demographics_child_gender", "demo_child_gender", "Children's gender",
                 "gender", "children"),
    _demographic("demographics_child_age_band", "demo_child_age", "Children's age at referral",
                 "age_band", "children"),
    _demographic("demographics_household_size", "demo_household_size", "Household size",
                 "household_size", "families"),
    _demographic("demographics_adults_in_employment", "demo_adults_employed",
                 "Adults in employment", "adults_in_employment", "families"),
    _demographic("demographics_lead_carer_employment", "demo_carer_employment",
                 "Lead carer employment", "lead_carer_employment", "families"),
    _demographic("demographics_free_school_meals", "demo_free_school_meals",
                 "Free school meals (any child eligible)", "free_school_meals", "families"),
    _demographic("demographics_imd_decile", "demo_imd_decile",
                 "IMD decile of the home area (1 = most deprived)", "imd_decile", "families"),
    _demographic("demographics_first_language", "demo_first_language",
                 "First language English", "first_language_english", "families"),
    TableInfo("response_rates", "response_rates", "survey", "Survey response rates",
              "Households issued (sampled, withdrawn included) and responded per wave and stratum; "
              "response_rate = responded / issued as a proportion (3 decimals); stratum 'all' is "
              "the wave's total.",
              ("wave", "stratum", "issued", "responded", "response_rate"), {"response_rate": 3},
              (OneWay("issued", ("response_rate",), ("wave",), ("stratum", ALL)),
               OneWay("responded", ("response_rate",), ("wave",), ("stratum", ALL)))),
    TableInfo("response_rates_by_route", "response_by_route", "survey",
              "Survey response rates by contact route",
              "Households issued and responded per wave and contact route; response_rate = "
              "responded / issued (proportion, 3 decimals).",
              ("wave", "route", "issued", "responded", "response_rate"), {"response_rate": 3},
              (OneWay("issued", ("response_rate",), ("wave",)),
               OneWay("responded", ("response_rate",), ("wave",)))),
    TableInfo("nonresponse_check", "nonresponse_check", "survey",
              "Non-response check: respondents against the frame",
              "Distribution of the frame, the households issued and the respondents. Frame: the "
              "wave-1 sampling frame sizes for stratum, the study-population families otherwise "
              "(referral route of the family's first in-window episode).",
              ("characteristic", "category", "frame", "frame_percent", "issued", "issued_percent",
               "respondents", "respondents_percent"),
              {"frame_percent": 1, "issued_percent": 1, "respondents_percent": 1},
              (OneWay("frame", ("frame_percent",), ("characteristic",)),
               OneWay("issued", ("issued_percent",), ("characteristic",)),
               OneWay("respondents", ("respondents_percent",), ("characteristic",)))),
    TableInfo("ons4", "ons4", "survey", "ONS4 personal well-being",
              "Respondents answering each measure, unweighted mean, design-weighted stratified "
              "mean with standard error and 95% CI (3 decimals), and the UK mean (APS, year "
              "ending March 2022).",
              ("measure", "respondents", *_ONS4_FIGURES, "uk_mean"),
              {"mean": 3, "weighted_mean": 3, "standard_error": 3, "ci_low": 3, "ci_high": 3,
               "uk_mean": 2},
              (OneWay("respondents", _ONS4_FIGURES, group_by=("measure",)),
               MinBase("respondents", _ONS4_FIGURES))),
    TableInfo("ons4_strata", "ons4_strata", "survey", "ONS4 by sampling stratum",
              "Frame size (wave 1) and respondents per stratum and measure, with the stratum "
              "mean used in the weighted estimate.",
              ("measure", "stratum", "frame_n", "respondents", "mean"), {"mean": 3},
              (OneWay("frame_n", group_by=("measure",)),
               OneWay("respondents", ("mean",), ("measure",)), MinBase("respondents", ("mean",)))),
    TableInfo("ons4_bands", "ons4_bands", "survey", "ONS4 thresholds",
              "Respondents in each ONS threshold band (life satisfaction, worthwhile, happiness: "
              "0-4 low, 5-6 medium, 7-8 high, 9-10 very high; anxiety: 0-1 very low, 2-3 low, "
              "4-5 medium, 6-10 high); percent of respondents answering the measure.",
              ("measure", "band", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",), ("measure",)),)),
    TableInfo("scaling_questions", "scaling_questions", "survey", "Scaling questions (q5-q8)",
              "Respondents, mean, median and quartiles (type 7) of each 0-10 scaling question.",
              ("question", "respondents", *_SCALING_FIGURES),
              {"mean": 2, "median": 2, "q1": 2, "q3": 2},
              (OneWay("respondents", _SCALING_FIGURES, group_by=("question",)),
               MinBase("respondents", _SCALING_FIGURES))),
    TableInfo("scaling_bands", "scaling_bands", "survey", "Scaling questions, banded",
              "Respondents per band (0-4 low, 5-6 medium, 7-8 high, 9-10 very high); percent of "
              "respondents answering the question.",
              ("question", "band", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",), ("question",)),)),
    TableInfo("negative_effects", "negative_effects", "survey",
              "Negative effects of support (q9)",
              "Did anything about getting support make things harder? Percent of respondents "
              "who answered q9 (the proportion answering yes).",
              ("answer", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",)),)),
)
TABLES_BY_NAME: dict[str, TableInfo] = {info.name: info for info in TABLES}
#: Restricted tables whose columns shared/spec/cli.md fixes.
CLI_TABLES = ("population", "referral_routes", "presenting_issues", "closure_outcomes",
              "onward_referrals", "length_of_support", "specialist_referrals", "ons4",
              "response_rates")


# --- loading ----------------------------------------------------------------------------------

_SCHEMAS: dict[str, dict[str, Any]] = {
    "analysis_families": {
        "family_pid": pl.String, "household_size": pl.Int64, "adults_in_employment": pl.Int64,
        "lead_carer_employment": pl.String, "lead_carer_ethnicity": pl.String,
        "first_language_english": pl.Int64, "free_school_meals": pl.Int64, "imd_decile": pl.Int64,
    },
    "analysis_children": {
        "child_pid": pl.String, "family_pid": pl.String, "gender": pl.String,
        "ethnicity": pl.String, "age_at_referral": pl.Int64,
    },
    "analysis_episodes": {
        "episode_pid": pl.String, "family_pid": pl.String, "referral_date": pl.String,
        "referral_route": pl.String, "allocation_date": pl.String, "primary_issue": pl.String,
        "closure_date": pl.String, "closure_outcome": pl.String, "onward_referral": pl.String,
    },
    "analysis_episode_issues": {"episode_pid": pl.String, "issue": pl.String},
    "analysis_episode_services": {"episode_pid": pl.String, "service": pl.String},
    "analysis_goals": {
        "episode_pid": pl.String, "goal_number": pl.Int64, "goal_area": pl.String,
        "baseline_score": pl.Int64, "latest_score": pl.Int64,
    },
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
    return pl.col(column).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=True)


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
    )
    validate_study_data(data)
    return data


# --- input contract (pandera) -----------------------------------------------------------------


def _codes(values: Iterable[str], nullable: bool = False) -> Any:
    return pa.Field(isin=list(values), nullable=nullable)


class FamilyFrame(pa.DataFrameModel):
    """Families of the study population as the analysis reads them."""

    family_pid: str = pa.Field(unique=True)
    household_size: int = pa.Field(ge=1)
    adults_in_employment: int = pa.Field(ge=0, nullable=True)
    lead_carer_employment: str = _codes(LEAD_CARER_EMPLOYMENT, nullable=True)
    lead_carer_ethnicity: str = _codes(ETHNICITY_CODES, nullable=True)
    first_language_english: int = pa.Field(isin=[0, 1], nullable=True)
    free_school_meals: int = pa.Field(isin=[0, 1], nullable=True)
    imd_decile: int = pa.Field(ge=1, le=10, nullable=True)


class ChildFrame(pa.DataFrameModel):
    """Children of study-population families."""

    gender: str = _codes(GENDER, nullable=True)
    ethnicity: str = _codes(ETHNICITY_CODES, nullable=True)
    age_at_referral: int = pa.Field(ge=0, le=18, nullable=True)


class EpisodeFrame(pa.DataFrameModel):
    """In-window episodes with the day counts the analysis derives."""

    episode_pid: str = pa.Field(unique=True)
    referral_route: str = _codes(REFERRAL_ROUTE)
    primary_issue: str = _codes(PRESENTING_ISSUES)
    closure_outcome: str = _codes(CLOSURE_OUTCOME, nullable=True)
    onward_referral: str = _codes(ONWARD_REFERRAL, nullable=True)
    length_days: int = pa.Field(ge=0, nullable=True)
    allocation_days: int = pa.Field(ge=0, nullable=True)


class IssueFrame(pa.DataFrameModel):
    """Presenting issues of in-window episodes."""

    issue: str = _codes(PRESENTING_ISSUES)


class ServiceFrame(pa.DataFrameModel):
    """Services offered to in-window episodes."""

    service: str = _codes(SERVICES)


class GoalFrame(pa.DataFrameModel):
    """Goals of in-window episodes."""

    goal_area: str = _codes(PRESENTING_ISSUES)
    baseline_score: int = pa.Field(ge=0, le=10)
    latest_score: int = pa.Field(ge=0, le=10, nullable=True)


class SpecialistFrame(pa.DataFrameModel):
    """Specialist referrals of in-window episodes."""

    service: str = _codes(SPECIALIST_SERVICE)
    reason: str = _codes(PRESENTING_ISSUES)
    outcome: str = _codes(SPECIALIST_OUTCOME)


class SurveyFrame(pa.DataFrameModel):
    """Sampled households with their answers (null when not responded)."""

    wave: int = pa.Field(ge=1)
    q1_life_satisfaction: int = pa.Field(ge=0, le=10, nullable=True)
    q2_worthwhile: int = pa.Field(ge=0, le=10, nullable=True)
    q3_happy_yesterday: int = pa.Field(ge=0, le=10, nullable=True)
    q4_anxious_yesterday: int = pa.Field(ge=0, le=10, nullable=True)
    q5_child_wellbeing: int = pa.Field(ge=0, le=10, nullable=True)
    q6_parenting_confidence: int = pa.Field(ge=0, le=10, nullable=True)
    q7_help_with_difficulties: int = pa.Field(ge=0, le=10, nullable=True)
    q8_worker_relationship: int = pa.Field(ge=0, le=10, nullable=True)


_CONTRACTS: tuple[tuple[str, type[pa.DataFrameModel]], ...] = (
    ("families", FamilyFrame), ("children", ChildFrame), ("episodes", EpisodeFrame),
    ("issues", IssueFrame), ("services", ServiceFrame), ("goals", GoalFrame),
    ("specialist", SpecialistFrame), ("survey", SurveyFrame),
)


def validate_study_data(data: StudyData) -> None:
    """Check every frame against its contract; one UserFacingError listing all failures."""
    problems: list[str] = []
    for attribute, model in _CONTRACTS:
        try:
            model.validate(getattr(data, attribute), lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
            for (column, check), group in sorted(
                Counter(zip(cases["column"].to_list(), cases["check"].to_list(),
                            strict=True)).items(), key=lambda item: (str(item[0][0]), item[0][1])
            ):
                problems.append(f"{attribute}.{column} fails {check} in {group} row(s)")
    if problems:
        raise UserFacingError(
            "the database holds values the analysis cannot use (" + "; ".join(problems)
            + "); re-ingest the extract with this version of cluster-eval"
        )


# --- helpers ----------------------------------------------------------------------------------


def _code_counts(values: Iterable[str | None], codes: Sequence[str], *,
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


def _percent_table(code_col: str, unit: str, counts: list[tuple[str, int]],
                   base: int) -> pl.DataFrame:
    return pl.DataFrame(
        {code_col: [c for c, _ in counts], unit: [n for _, n in counts],
         "percent": [percent(n, base) for _, n in counts]},
        schema={code_col: pl.String, unit: pl.Int64, "percent": pl.Float64},
    )


def _day_summary(values: Sequence[int]) -> dict[str, float | int | None]:
    """n, mean, median and type-7 quartiles of day counts, one decimal; None when n is 0."""
    if not values:
        return {"n": 0, **{col: None for col in _STATS_DAYS}}
    q1, median, q3 = quartiles(values)
    return {"n": len(values), "mean_days": round_half_up(mean(values), 1),
            "median_days": round_half_up(median, 1), "q1_days": round_half_up(q1, 1),
            "q3_days": round_half_up(q3, 1)}


_DAY_SCHEMA = {"n": pl.Int64, **{col: pl.Float64 for col in _STATS_DAYS}}


def _band(value: int | None, bands: Sequence[tuple[str, int, int | None]]) -> str | None:
    if value is None:
        return None
    for label, low, high in bands:
        if value >= low and (high is None or value <= high):
            return label
    raise ValueError(f"value {value} is in none of the bands")


def household_size_band(size: int | None) -> str | None:
    """Household size as its band: 1..5 as themselves, 6 or more as ``6+``."""
    return None if size is None else (str(size) if size < 6 else "6+")


def _adults_band(adults: int | None) -> str | None:
    return None if adults is None else (str(adults) if adults < 3 else "3+")


def _yes_no(flag: int | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


# --- administrative tables --------------------------------------------------------------------


def population_table(data: StudyData) -> pl.DataFrame:
    """families, children, episodes, closed_episodes of the in-window study population."""
    return pl.DataFrame({
        "families": [data.families.height], "children": [data.children.height],
        "episodes": [data.episodes.height],
        "closed_episodes": [int(data.episodes["closed"].sum())],
    }, schema={c: pl.Int64 for c in TABLES_BY_NAME["population"].columns})


def _closed(episodes: pl.DataFrame) -> pl.DataFrame:
    return episodes.filter(pl.col("closed"))


def referral_routes_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """In-window episodes by referral route."""
    counts = _code_counts(episodes["referral_route"], REFERRAL_ROUTE, not_recorded=False)
    return _percent_table("referral_route", "episodes", counts, episodes.height)


def presenting_issues_table(episodes: pl.DataFrame, issues: pl.DataFrame) -> pl.DataFrame:
    """In-window episodes with each presenting issue; percent of in-window episodes."""
    counts = _code_counts(issues["issue"], PRESENTING_ISSUES, not_recorded=False)
    return _percent_table("issue", "episodes", counts, episodes.height)


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
    counts = _code_counts(closed["closure_outcome"], CLOSURE_OUTCOME, not_recorded=None)
    return _percent_table("closure_outcome", "episodes", counts, closed.height)


def onward_referrals_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed in-window episodes by onward referral."""
    closed = _closed(episodes)
    counts = _code_counts(closed["onward_referral"], ONWARD_REFERRAL, not_recorded=None)
    return _percent_table("onward_referral", "episodes", counts, closed.height)


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
    return _percent_table("referral", "episodes", counts, closed.height)


def length_of_support_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """n, mean, median, q1, q3 of days from referral to closure (closed in-window episodes)."""
    days = _closed(episodes)["length_days"].to_list()
    return pl.DataFrame([_day_summary(days)], schema=_DAY_SCHEMA)


def length_of_support_bands_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Closed in-window episodes by banded length of support."""
    closed = _closed(episodes)
    labels = [_band(d, LENGTH_BANDS) for d in closed["length_days"]]
    counts = _code_counts(labels, [b[0] for b in LENGTH_BANDS], not_recorded=False)
    return _percent_table("band", "episodes", counts, closed.height)


def length_of_support_by_issue_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Length-of-support summary per primary issue (closed in-window episodes)."""
    closed = _closed(episodes)
    out = []
    for issue in PRESENTING_ISSUES:
        days = closed.filter(pl.col("primary_issue") == issue)["length_days"].to_list()
        out.append({"primary_issue": issue, **_day_summary(days)})
    return pl.DataFrame(out, schema={"primary_issue": pl.String, **_DAY_SCHEMA})


def length_of_support_by_service_table(episodes: pl.DataFrame,
                                       services: pl.DataFrame) -> pl.DataFrame:
    """Length-of-support summary per service offered (an episode counts under each)."""
    closed = _closed(episodes).join(services, on="episode_pid")
    out = []
    for service in SERVICES:
        days = closed.filter(pl.col("service") == service)["length_days"].to_list()
        out.append({"service": service, **_day_summary(days)})
    return pl.DataFrame(out, schema={"service": pl.String, **_DAY_SCHEMA})


def days_to_allocation_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """Summary of days from referral to allocation, and episodes never allocated."""
    days = episodes["allocation_days"].drop_nulls().to_list()
    summary = _day_summary(days)
    row = {"n": summary["n"], "not_allocated": episodes.height - len(days),
           **{col: summary[col] for col in _STATS_DAYS}}
    return pl.DataFrame([row], schema={"n": pl.Int64, "not_allocated": pl.Int64,
                                       **{col: pl.Float64 for col in _STATS_DAYS}})


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
    counts = _code_counts(issues.filter(pl.col("episode_pid").is_in(sorted(stepped)))["issue"],
                          PRESENTING_ISSUES, not_recorded=False)
    return _percent_table("issue", "episodes", counts, len(stepped))


# --- demographics -----------------------------------------------------------------------------

_Recode = Callable[[Any], str | None]
_FAMILY_DEMOGRAPHICS: tuple[tuple[str, str, Sequence[str], _Recode], ...] = (
    ("demographics_lead_carer_ethnicity", "lead_carer_ethnicity", ETHNICITY_CODES, lambda v: v),
    ("demographics_household_size", "household_size", HOUSEHOLD_SIZE_BANDS, household_size_band),
    ("demographics_adults_in_employment", "adults_in_employment", ADULTS_IN_EMPLOYMENT_BANDS,
     _adults_band),
    ("demographics_lead_carer_employment", "lead_carer_employment", LEAD_CARER_EMPLOYMENT,
     lambda v: v),
    ("demographics_free_school_meals", "free_school_meals", YES_NO, _yes_no),
    ("demographics_imd_decile", "imd_decile", IMD_DECILES,
     lambda v: None if v is None else str(v)),
    ("demographics_first_language", "first_language_english", YES_NO, _yes_no),
)
_CHILD_DEMOGRAPHICS: tuple[tuple[str, str, str, Sequence[str], _Recode], ...] = (
    ("demographics_child_ethnicity", "ethnicity", "ethnicity", ETHNICITY_CODES, lambda v: v),
    ("demographics_child_gender", "gender", "gender", GENDER, lambda v: v),
    ("demographics_child_age_band", "age_band", "age_at_referral", [b[0] for b in AGE_BANDS],
     lambda v: _band(v, AGE_BANDS)),
)


def demographics_tables(families: pl.DataFrame, children: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Families and children by each demographic characteristic, with percent."""
    out: dict[str, pl.DataFrame] = {}
    for name, column, codes, recode in _FAMILY_DEMOGRAPHICS:
        counts = _code_counts((recode(v) for v in families[column]), codes, not_recorded=True)
        out[name] = _percent_table(column, "families", counts, families.height)
    for name, label, column, codes, recode in _CHILD_DEMOGRAPHICS:
        counts = _code_counts((recode(v) for v in children[column]), codes, not_recorded=True)
        out[name] = _percent_table(label, "children", counts, children.height)
    return out


# --- survey -----------------------------------------------------------------------------------


def ons4_reference() -> dict[str, float]:
    """UK ONS4 means (APS, year ending March 2022) from ``schemas/ons4_uk.csv``."""
    text = (files("schemas") / "ons4_uk.csv").read_bytes()
    ref = pl.read_csv(BytesIO(text), schema_overrides={"uk_mean": pl.Float64})
    return dict(zip(ref["measure"].to_list(), ref["uk_mean"].to_list(), strict=True))


def _stratum_order(strata: Iterable[str], stratify_by: str | None) -> list[str]:
    known = STRATUM_CODES.get(stratify_by or "", ())
    present = set(strata)
    return [s for s in known if s in present] + sorted(present - set(known))


def _stratify_by(waves: pl.DataFrame) -> str | None:
    return waves["stratify_by"][0] if waves.height else None


def frame_sizes(strata: pl.DataFrame) -> dict[str, int]:
    """N_h per stratum: wave 1's frame sizes; a stratum missing there takes its largest later."""
    first: dict[str, int] = {}
    later: dict[str, int] = {}
    for wave, stratum, n in strata.select("wave", "stratum", "frame_n").iter_rows():
        if wave == 1:
            first[stratum] = n
        else:
            later[stratum] = max(later.get(stratum, 0), n)
    return {**later, **first}


def _respondents(survey: pl.DataFrame) -> pl.DataFrame:
    return survey.filter((pl.col("responded") == 1) & (pl.col("withdrawn") == 0))


def _rate(responded: int, issued: int) -> float | None:
    return round_half_up(responded / issued, 3) if issued else None


def response_rates_table(survey: pl.DataFrame, strata: pl.DataFrame,
                         waves: pl.DataFrame) -> pl.DataFrame:
    """Issued, responded and response rate per wave and stratum, plus each wave's total."""
    out = []
    wave_list = sorted(set(waves["wave"].to_list()) | set(survey["wave"].to_list()))
    for wave in wave_list:
        in_wave = survey.filter(pl.col("wave") == wave)
        names = set(strata.filter(pl.col("wave") == wave)["stratum"].to_list())
        names |= set(in_wave["stratum"].to_list())
        for stratum in _stratum_order(names, _stratify_by(waves)):
            part = in_wave.filter(pl.col("stratum") == stratum)
            issued, responded = part.height, int(part["responded"].sum())
            out.append((wave, stratum, issued, responded, _rate(responded, issued)))
        issued, responded = in_wave.height, int(in_wave["responded"].sum())
        out.append((wave, ALL, issued, responded, _rate(responded, issued)))
    schema = {"wave": pl.Int64, "stratum": pl.String, "issued": pl.Int64, "responded": pl.Int64,
              "response_rate": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def response_rates_by_route_table(survey: pl.DataFrame, waves: pl.DataFrame) -> pl.DataFrame:
    """Issued, responded and response rate per wave and contact route."""
    out = []
    routes = list(PREFERRED_CONTACT) + sorted(set(survey["route"]) - set(PREFERRED_CONTACT))
    for wave in sorted(set(waves["wave"].to_list()) | set(survey["wave"].to_list())):
        in_wave = survey.filter(pl.col("wave") == wave)
        for route in routes:
            part = in_wave.filter(pl.col("route") == route)
            issued, responded = part.height, int(part["responded"].sum())
            out.append((wave, route, issued, responded, _rate(responded, issued)))
    schema = {"wave": pl.Int64, "route": pl.String, "issued": pl.Int64, "responded": pl.Int64,
              "response_rate": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def family_characteristics(data: StudyData) -> dict[str, dict[str, str | None]]:
    """Per family: referral route of its first in-window episode, ethnicity, household size."""
    first_route: dict[str, str] = {}
    ordered = data.episodes.sort("family_pid", "referral_date", "episode_pid")
    for family, route in ordered.select("family_pid", "referral_route").iter_rows():
        first_route.setdefault(family, route)
    out: dict[str, dict[str, str | None]] = {}
    for family, ethnicity, size in data.families.select(
            "family_pid", "lead_carer_ethnicity", "household_size").iter_rows():
        out[family] = {"referral_route": first_route.get(family),
                       "lead_carer_ethnicity": ethnicity,
                       "household_size": household_size_band(size)}
    return out


def nonresponse_check_table(data: StudyData) -> pl.DataFrame:
    """Frame, issued and respondents side by side on stratum, route, ethnicity and size."""
    traits = family_characteristics(data)
    issued = data.survey
    responded = _respondents(data.survey)
    out: list[tuple[Any, ...]] = []

    def add(characteristic: str, counts: list[tuple[str, int, int, int]]) -> None:
        totals = [sum(c[i] for c in counts) for i in (1, 2, 3)]
        for category, frame, iss, resp in counts:
            out.append((characteristic, category, frame, percent(frame, totals[0]), iss,
                        percent(iss, totals[1]), resp, percent(resp, totals[2])))

    sizes = {s: n for w, s, n in data.strata.select("wave", "stratum", "frame_n").iter_rows()
             if w == 1}
    issued_by = Counter(issued["stratum"].to_list())
    resp_by = Counter(responded["stratum"].to_list())
    names = _stratum_order(set(sizes) | set(issued_by), _stratify_by(data.waves))
    add("stratum", [(s, sizes.get(s, 0), issued_by.get(s, 0), resp_by.get(s, 0)) for s in names])

    for characteristic, codes in (("referral_route", REFERRAL_ROUTE),
                                  ("lead_carer_ethnicity", ETHNICITY_CODES),
                                  ("household_size", HOUSEHOLD_SIZE_BANDS)):
        def values(families: Iterable[str], key: str = characteristic) -> list[str | None]:
            return [traits.get(f, {}).get(key) for f in families]

        frame_c = dict(_code_counts(values(traits), codes, not_recorded=True))
        iss_c = dict(_code_counts(values(issued["family_pid"]), codes, not_recorded=True))
        resp_c = dict(_code_counts(values(responded["family_pid"]), codes, not_recorded=True))
        keep = [*codes] + ([NOT_RECORDED] if frame_c[NOT_RECORDED] or iss_c[NOT_RECORDED] else [])
        add(characteristic, [(c, frame_c[c], iss_c[c], resp_c[c]) for c in keep])
    schema = {"characteristic": pl.String, "category": pl.String, "frame": pl.Int64,
              "frame_percent": pl.Float64, "issued": pl.Int64, "issued_percent": pl.Float64,
              "respondents": pl.Int64, "respondents_percent": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


@dataclass(frozen=True)
class Ons4Result:
    """The ONS4 tables and the strata that had a single respondent, per measure."""

    ons4: pl.DataFrame
    strata: pl.DataFrame
    bands: pl.DataFrame
    single_respondent_strata: dict[str, tuple[str, ...]]


def ons4_tables(survey: pl.DataFrame, strata: pl.DataFrame, waves: pl.DataFrame,
                reference: Mapping[str, float]) -> Ons4Result:
    """Unweighted and design-weighted ONS4 means with SE and CI, per-stratum detail, bands."""
    respondents = _respondents(survey)
    sizes = frame_sizes(strata)
    names = _stratum_order(set(sizes) | set(respondents["stratum"]), _stratify_by(waves))
    main, detail, band_rows = [], [], []
    singles: dict[str, tuple[str, ...]] = {}
    for measure in ONS4_MEASURES:
        by_stratum = {s: respondents.filter(pl.col("stratum") == s)[measure].to_list()
                      for s in names}
        try:
            est = stratified_estimate(by_stratum, sizes)
        except ValueError as exc:
            raise UserFacingError(f"survey weights for {measure}: {exc}") from None
        singles[measure] = est.single_respondent_strata
        main.append((measure, est.respondents, est.mean, est.weighted_mean, est.standard_error,
                     est.ci_low, est.ci_high, reference.get(measure)))
        for stratum in names:
            answered = [v for v in by_stratum[stratum] if v is not None]
            detail.append((measure, stratum, sizes.get(stratum, 0), len(answered),
                           round_half_up(mean(answered), 3) if answered else None))
        answered_all = [v for v in respondents[measure].to_list() if v is not None]
        bands = ONS4_BANDS_ANXIETY if measure == "q4_anxious_yesterday" else ONS4_BANDS_POSITIVE
        for band, count in band_counts(answered_all, bands):
            band_rows.append((measure, band, count, percent(count, len(answered_all))))
    ons4 = pl.DataFrame(main, orient="row", schema={
        "measure": pl.String, "respondents": pl.Int64, "mean": pl.Float64,
        "weighted_mean": pl.Float64, "standard_error": pl.Float64, "ci_low": pl.Float64,
        "ci_high": pl.Float64, "uk_mean": pl.Float64})
    detail_df = pl.DataFrame(detail, orient="row", schema={
        "measure": pl.String, "stratum": pl.String, "frame_n": pl.Int64, "respondents": pl.Int64,
        "mean": pl.Float64})
    bands_df = pl.DataFrame(band_rows, orient="row", schema={
        "measure": pl.String, "band": pl.String, "respondents": pl.Int64, "percent": pl.Float64})
    return Ons4Result(ons4, detail_df, bands_df, singles)


def scaling_tables(survey: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Summaries (mean, median, quartiles) and bands of the scaling questions q5-q8."""
    respondents = _respondents(survey)
    summary, band_rows = [], []
    for question in SCALING_QUESTIONS:
        answered = [v for v in respondents[question].to_list() if v is not None]
        if answered:
            q1, median, q3 = quartiles(answered)
            figures = [round_half_up(x, 2) for x in (mean(answered), median, q1, q3)]
        else:
            figures = [None] * 4
        summary.append((question, len(answered), *figures))
        for band, count in band_counts(answered, ONS4_BANDS_POSITIVE):
            band_rows.append((question, band, count, percent(count, len(answered))))
    summary_df = pl.DataFrame(summary, orient="row", schema={
        "question": pl.String, "respondents": pl.Int64, "mean": pl.Float64,
        "median": pl.Float64, "q1": pl.Float64, "q3": pl.Float64})
    bands_df = pl.DataFrame(band_rows, orient="row", schema={
        "question": pl.String, "band": pl.String, "respondents": pl.Int64, "percent": pl.Float64})
    return summary_df, bands_df


def negative_effects_table(survey: pl.DataFrame) -> pl.DataFrame:
    """q9 answers: yes, no, not answered; percent of those who answered."""
    answers = _respondents(survey)["q9_negative_effects"].to_list()
    yes, no = answers.count(1), answers.count(0)
    missing = len(answers) - yes - no
    return pl.DataFrame(
        list(zip(NEGATIVE_EFFECT_ANSWERS, (yes, no, missing),
                 (percent(yes, yes + no), percent(no, yes + no), None), strict=True)),
        schema={"answer": pl.String, "respondents": pl.Int64, "percent": pl.Float64},
        orient="row",
    )


# --- the whole analysis -----------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """Restricted tables in ``TABLES`` order plus what the report needs to say about them."""

    tables: dict[str, pl.DataFrame]
    issued: int
    respondents: int
    single_respondent_strata: dict[str, tuple[str, ...]]
    notes: tuple[str, ...]

    @property
    def survey_status(self) -> str:
        """``no_sample``, ``no_responses`` or ``responses``."""
        if not self.issued:
            return "no_sample"
        return "responses" if self.respondents else "no_responses"


def build_analysis(data: StudyData, reference: Mapping[str, float] | None = None) -> Analysis:
    """Every restricted table from the study data; UserFacingError when there is no population."""
    if data.episodes.height == 0:
        raise UserFacingError(
            "the study population is empty: no in-window episodes for this cluster; ingest an "
            "extract first (cluster-eval ingest FILE) or check study.window_start/window_end"
        )
    ep = data.episodes
    ons4 = ons4_tables(data.survey, data.strata, data.waves, reference or ons4_reference())
    scaling, scaling_bands = scaling_tables(data.survey)
    tables: dict[str, pl.DataFrame] = {
        "population": population_table(data),
        "referral_routes": referral_routes_table(ep),
        "presenting_issues": presenting_issues_table(ep, data.issues),
        "presenting_issues_by_service": issues_by_service_table(data.issues, data.services),
        "closure_outcomes": closure_outcomes_table(ep),
        "onward_referrals": onward_referrals_table(ep),
        "closure_referrals": closure_referrals_table(ep),
        "length_of_support": length_of_support_table(ep),
        "length_of_support_bands": length_of_support_bands_table(ep),
        "length_of_support_by_issue": length_of_support_by_issue_table(ep),
        "length_of_support_by_service": length_of_support_by_service_table(ep, data.services),
        "days_to_allocation": days_to_allocation_table(ep),
        "goal_score_change": goal_score_change_table(data.goals),
        "specialist_referrals": specialist_referrals_table(data.specialist),
        "specialist_referral_reasons": specialist_reasons_table(data.specialist),
        "stepped_up_issues": stepped_up_issues_table(data.issues, data.specialist),
        **demographics_tables(data.families, data.children),
        "response_rates": response_rates_table(data.survey, data.strata, data.waves),
        "response_rates_by_route": response_rates_by_route_table(data.survey, data.waves),
        "nonresponse_check": nonresponse_check_table(data),
        "ons4": ons4.ons4,
        "ons4_strata": ons4.strata,
        "ons4_bands": ons4.bands,
        "scaling_questions": scaling,
        "scaling_bands": scaling_bands,
        "negative_effects": negative_effects_table(data.survey),
    }
    ordered = {info.name: tables[info.name] for info in TABLES}
    for info in TABLES:
        if tuple(ordered[info.name].columns) != info.columns:
            raise AssertionError(f"table {info.name} has columns {ordered[info.name].columns}")
    issued = data.survey.height
    respondents = _respondents(data.survey).height
    notes: list[str] = []
    if not issued:
        notes.append("No survey wave has been drawn yet: the survey tables are empty and the "
                     "ONS4 rows show 0 respondents.")
    elif not respondents:
        notes.append("No survey responses have been imported yet: the ONS4 and scaling rows "
                     "show 0 respondents and no figures.")
    if not int(ep["closed"].sum()):
        notes.append("No in-window episode is closed yet: closure, onward-referral and length "
                     "of support tables are all zero.")
    for measure, singles in ons4.single_respondent_strata.items():
        if singles:  # counted, not named: the report is publication-safe
            notes.append(f"{measure}: {len(singles)} stratum(a) with a single respondent add "
                         "no variance to the standard error (restricted/ons4_strata.csv).")
    return Analysis(ordered, issued, respondents, ons4.single_respondent_strata, tuple(notes))


# --- formatting and suppression ---------------------------------------------------------------


def _text(value: Any, places: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if places is None:
            raise ValueError("a float column needs its number of decimals in TableInfo.decimals")
        if math.isnan(value):
            return None
        return f"{value:.{places}f}"
    return str(value)


def format_table(info: TableInfo, df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: floats with the table's fixed decimals, null stays null."""
    return pl.DataFrame(
        {col: [_text(v, info.decimals.get(col)) if df.schema[col] != pl.String else v
               for v in df[col].to_list()] for col in df.columns},
        schema={col: pl.String for col in df.columns},
    )


def _groups(df: pl.DataFrame, keys: Sequence[str]) -> list[list[int]]:
    """Row indexes per group of ``keys`` in first-appearance order (one group without keys)."""
    if not keys:
        return [list(range(df.height))]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(df.select(keys).iter_rows()):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def survey_minimum(threshold: int) -> int:
    """Smallest base from which a survey mean is published: 5, or threshold + 1 if higher."""
    return max(SURVEY_MIN_RESPONDENTS, threshold + 1)


def suppression_mask(info: TableInfo, df: pl.DataFrame, threshold: int) -> dict[str, list[bool]]:
    """Which cells of a restricted table to publish as "c", column by column."""
    mask = {col: [False] * df.height for col in df.columns}

    def hide(col: str, index: int) -> None:
        mask[col][index] = True

    for rule in info.rules:
        if isinstance(rule, OneWay):
            counts = df[rule.column].to_list()
            for group in _groups(df, rule.group_by):
                total_at = None
                if rule.total is not None:
                    col, value = rule.total
                    total_at = next((i for i in group if df[col][i] == value), None)
                cells = [i for i in group if i != total_at]
                hidden = suppress_one_way([counts[i] for i in cells], threshold=threshold,
                                          total_published=True)
                flagged = [i for i, h in zip(cells, hidden, strict=True) if h]
                if total_at is not None and 1 <= counts[total_at] <= threshold:
                    flagged.append(total_at)
                for i in flagged:
                    for col in (rule.column, *rule.linked):
                        hide(col, i)
        elif isinstance(rule, CrossTab):
            if rule.values:
                matrix = [list(row) for row in df.select(rule.values).iter_rows()]
                result = suppress_two_way(matrix, threshold=threshold)
                for i, line in enumerate(result.cells):
                    for j, hidden in enumerate(line):
                        if hidden:
                            hide(rule.values[j], i)
            else:
                assert rule.cols is not None and rule.value is not None
                row_keys = list(dict.fromkeys(df[rule.rows].to_list()))
                col_keys = list(dict.fromkeys(df[rule.cols].to_list()))
                where = {(r, c): i for i, (r, c) in
                         enumerate(df.select(rule.rows, rule.cols).iter_rows())}
                values = df[rule.value].to_list()
                matrix = [[values[where[(r, c)]] if (r, c) in where else 0 for c in col_keys]
                          for r in row_keys]
                result = suppress_two_way(matrix, threshold=threshold)
                for a, r in enumerate(row_keys):
                    for b, c in enumerate(col_keys):
                        if result.cells[a][b] and (r, c) in where:
                            hide(rule.value, where[(r, c)])
        else:
            minimum = survey_minimum(threshold)
            for i, base in enumerate(df[rule.column].to_list()):
                if base and base < minimum:
                    for col in rule.hides:
                        hide(col, i)
    return mask


def publication_table(info: TableInfo, df: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """The table as published: text, with suppressed cells shown as "c"."""
    mask = suppression_mask(info, df, threshold)
    text = format_table(info, df)
    return pl.DataFrame(
        {col: [SUPPRESSED if hidden else value
               for value, hidden in zip(text[col].to_list(), mask[col], strict=True)]
         for col in text.columns},
        schema={col: pl.String for col in text.columns},
    )


def publication_tables(tables: Mapping[str, pl.DataFrame],
                       threshold: int) -> dict[str, pl.DataFrame]:
    """Every restricted table with small-number suppression applied (same names and columns)."""
    return {name: publication_table(TABLES_BY_NAME[name], df, threshold)
            for name, df in tables.items()}


# --- bookkeeping ------------------------------------------------------------------------------

OUTPUT_CATEGORY = "analysis_output"


def record_analysis_run(conn: Connection, cluster: str, out: Any, manifest: Mapping[str, Any],
                        flow_run_id: str | None = None) -> None:
    """Register the output folder for the retention schedule and audit the run (no PII)."""
    now = datetime.now(UTC).isoformat()
    conn.execute(query("analysis_register_output"), {
        "cluster": cluster, "path": str(out), "category": OUTPUT_CATEGORY, "registered_at": now,
    })
    append_audit(conn, cluster, "analysis_written", {
        "out": str(out), "tables": len(manifest["tables"]), "files": len(manifest["files"]),
        "survey_status": manifest["survey_status"],
    }, flow_run_id)
