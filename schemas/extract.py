"""Pandera models of the extract tables, one per table and stage (raw -> clean).

``*Raw``: what ``tasks.ingest.reader`` hands over — every read column present, all strings, plus the
source row number ``_row``. ``*Clean``: the same columns typed by ``tasks.ingest.validate`` and
checked against the rules of ``schemas/columns.py`` (required values, code lists, ranges,
shapes, unique keys) and the within-table cross-field rules as named dataframe checks.
Field arguments come from the rules table through ``clean_field`` so the rules live in one
place. Validate collected DataFrames with ``lazy=True``; ``CHECK_RULES`` maps every custom
check name to the (column, rule, reason) reported for a failing row. Rules that span tables
(foreign keys, dates against the parent episode, goals per episode) are in tasks/validate.py.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS
from schemas.columns import AGE_LIMITS, CODE_LISTS, KEYS, LIMITS, SHAPES, rule

CodeList = Annotated[pl.List, pl.Utf8()]

# Custom check name -> (column reported, rule, reason). Reasons never quote a value.
CHECK_RULES: dict[str, tuple[str, str, str]] = {
    "adults_within_household": (
        "adults_in_employment", "adults_within_household",
        "more adults in employment than people in the household"),
    "presenting_issues_codes": (
        "presenting_issues", "code_list", "not in code list presenting_issues"),
    "services_codes": ("services", "code_list", "not in code list services"),
    "allocation_after_referral": (
        "allocation_date", "allocation_after_referral", "allocation date is before referral date"),
    "closure_after_referral": (
        "closure_date", "closure_after_referral", "closure date is before referral date"),
    "primary_issue_presenting": (
        "primary_issue", "primary_issue_presenting",
        "primary issue is not one of the episode's presenting issues"),
    "outcome_when_closed": (
        "closure_outcome", "outcome_when_closed", "closure outcome missing for a closed episode"),
    "outcome_empty_when_open": (
        "closure_outcome", "outcome_empty_when_open", "closure outcome given for an open episode"),
    "onward_empty_when_open": (
        "onward_referral", "onward_empty_when_open", "onward referral given for an open episode"),
    "end_after_start": ("end_date", "end_after_start", "end date is before start date"),
    "multiple_fields_uniqueness": (
        "goal_number", "unique", "duplicate goal_number within the episode"),
}

# Checks for which a missing input means something (no closure_date = open). When that input
# is missing only because its value failed to type, their failure is a knock-on: not reported.
MISSING_MEANS: dict[str, str] = {
    "outcome_empty_when_open": "closure_date",
    "onward_empty_when_open": "closure_date",
}


def raw_field() -> Any:
    """A raw column: present, text, may be empty."""
    return pa.Field(nullable=True)


def row_field() -> Any:
    """The source row number column ``_row`` (1 = first data row)."""
    return pa.Field(alias="_row", unique=True, ge=1)


def clean_field(table: str, column: str) -> Any:
    """A typed column whose checks come from the rules table (schemas/columns.py)."""
    r = rule(table, column)
    kwargs: dict[str, Any] = {"nullable": not r.required}
    if r.kind == "code" and r.codes is not None:
        kwargs["isin"] = list(CODE_LISTS[r.codes])
    low, high = LIMITS.get((table, column), (None, None))
    if low is not None and high is not None:
        kwargs["in_range"] = {"min_value": low, "max_value": high}
    elif low is not None:
        kwargs["ge"] = low
    elif high is not None:
        kwargs["le"] = high
    if (table, column) in SHAPES:
        kwargs["str_matches"] = SHAPES[(table, column)][1]
    if KEYS[table] == (column,):
        kwargs["unique"] = True
    return pa.Field(**kwargs)


def _ok(data: PolarsData, expr: pl.Expr) -> pl.LazyFrame:
    return data.lazyframe.select(expr.fill_null(True).alias("ok"))


def _codes_ok(data: PolarsData, codes: tuple[str, ...]) -> pl.LazyFrame:
    every = pl.col(data.key).list.eval(pl.element().is_in(list(codes))).list.all()
    return _ok(data, every)


def _not_before(later: str, earlier: str) -> pl.Expr:
    return pl.col(later).is_null() | pl.col(earlier).is_null() | (pl.col(later) >= pl.col(earlier))


# --- families -------------------------------------------------------------------------------
class FamiliesRaw(pa.DataFrameModel):
    """families as read: every read column, text."""

    row: int = row_field()
    family_id: str = raw_field()
    lead_carer_name: str = raw_field()
    address_line_1: str = raw_field()
    address_line_2: str = raw_field()
    town: str = raw_field()
    postcode: str = raw_field()
    email: str = raw_field()
    phone: str = raw_field()
    preferred_contact: str = raw_field()
    household_size: str = raw_field()
    adults_in_employment: str = raw_field()
    lead_carer_employment: str = raw_field()
    lead_carer_ethnicity: str = raw_field()
    first_language_english: str = raw_field()
    free_school_meals: str = raw_field()
    imd_decile: str = raw_field()
    do_not_contact: str = raw_field()

    class Config:
        strict = True


class FamiliesClean(FamiliesRaw):
    """families typed and checked (contact columns still here for the contact store)."""

    family_id: str = clean_field(FAMILIES, "family_id")
    lead_carer_name: str = clean_field(FAMILIES, "lead_carer_name")
    address_line_1: str = clean_field(FAMILIES, "address_line_1")
    address_line_2: str = clean_field(FAMILIES, "address_line_2")
    town: str = clean_field(FAMILIES, "town")
    postcode: str = clean_field(FAMILIES, "postcode")
    email: str = clean_field(FAMILIES, "email")
    phone: str = clean_field(FAMILIES, "phone")
    preferred_contact: str = clean_field(FAMILIES, "preferred_contact")
    household_size: int = clean_field(FAMILIES, "household_size")
    adults_in_employment: int = clean_field(FAMILIES, "adults_in_employment")
    lead_carer_employment: str = clean_field(FAMILIES, "lead_carer_employment")
    lead_carer_ethnicity: str = clean_field(FAMILIES, "lead_carer_ethnicity")
    first_language_english: bool = clean_field(FAMILIES, "first_language_english")
    free_school_meals: bool = clean_field(FAMILIES, "free_school_meals")
    imd_decile: int = clean_field(FAMILIES, "imd_decile")
    do_not_contact: bool = clean_field(FAMILIES, "do_not_contact")

    @pa.dataframe_check(name="adults_within_household")
    def adults_within_household(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, _not_before("household_size", "adults_in_employment"))

    class Config:
        strict = True


# --- children -------------------------------------------------------------------------------
class ChildrenRaw(pa.DataFrameModel):
    """children as read (child_name is never read)."""

    row: int = row_field()
    child_id: str = raw_field()
    family_id: str = raw_field()
    date_of_birth: str = raw_field()
    gender: str = raw_field()
    ethnicity: str = raw_field()
    school_phase: str = raw_field()
    sen_support: str = raw_field()

    class Config:
        strict = True


class ChildrenClean(ChildrenRaw):
    """children typed, with age_at_referral derived (date_of_birth is dropped after this)."""

    child_id: str = clean_field(CHILDREN, "child_id")
    family_id: str = clean_field(CHILDREN, "family_id")
    date_of_birth: date = clean_field(CHILDREN, "date_of_birth")
    gender: str = clean_field(CHILDREN, "gender")
    ethnicity: str = clean_field(CHILDREN, "ethnicity")
    school_phase: str = clean_field(CHILDREN, "school_phase")
    sen_support: bool = clean_field(CHILDREN, "sen_support")
    age_at_referral: int = pa.Field(
        nullable=True, in_range={"min_value": AGE_LIMITS[0], "max_value": AGE_LIMITS[1]}
    )

    class Config:
        strict = True


# --- episodes -------------------------------------------------------------------------------
class EpisodesRaw(pa.DataFrameModel):
    """episodes as read (case_notes is never read)."""

    row: int = row_field()
    episode_id: str = raw_field()
    family_id: str = raw_field()
    referral_date: str = raw_field()
    referral_route: str = raw_field()
    allocation_date: str = raw_field()
    presenting_issues: str = raw_field()
    primary_issue: str = raw_field()
    services: str = raw_field()
    lead_worker_role: str = raw_field()
    closure_date: str = raw_field()
    closure_outcome: str = raw_field()
    onward_referral: str = raw_field()

    class Config:
        strict = True


class EpisodesClean(EpisodesRaw):
    """episodes typed and checked; code lists are lists of canonical codes."""

    episode_id: str = clean_field(EPISODES, "episode_id")
    family_id: str = clean_field(EPISODES, "family_id")
    referral_date: date = clean_field(EPISODES, "referral_date")
    referral_route: str = clean_field(EPISODES, "referral_route")
    allocation_date: date = clean_field(EPISODES, "allocation_date")
    presenting_issues: CodeList = clean_field(EPISODES, "presenting_issues")
    primary_issue: str = clean_field(EPISODES, "primary_issue")
    services: CodeList = clean_field(EPISODES, "services")
    lead_worker_role: str = clean_field(EPISODES, "lead_worker_role")
    closure_date: date = clean_field(EPISODES, "closure_date")
    closure_outcome: str = clean_field(EPISODES, "closure_outcome")
    onward_referral: str = clean_field(EPISODES, "onward_referral")

    @pa.check("presenting_issues", name="presenting_issues_codes")
    def presenting_issues_codes(cls, data: PolarsData) -> pl.LazyFrame:
        return _codes_ok(data, CODE_LISTS["presenting_issues"])

    @pa.check("services", name="services_codes")
    def services_codes(cls, data: PolarsData) -> pl.LazyFrame:
        return _codes_ok(data, CODE_LISTS["services"])

    @pa.dataframe_check(name="allocation_after_referral")
    def allocation_after_referral(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, _not_before("allocation_date", "referral_date"))

    @pa.dataframe_check(name="closure_after_referral")
    def closure_after_referral(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, _not_before("closure_date", "referral_date"))

    @pa.dataframe_check(name="primary_issue_presenting")
    def primary_issue_presenting(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("presenting_issues").list.contains(pl.col("primary_issue")))

    @pa.dataframe_check(name="outcome_when_closed")
    def outcome_when_closed(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("closure_date").is_null() | pl.col("closure_outcome").is_not_null())

    @pa.dataframe_check(name="outcome_empty_when_open")
    def outcome_empty_when_open(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("closure_date").is_not_null() | pl.col("closure_outcome").is_null())

    @pa.dataframe_check(name="onward_empty_when_open")
    def onward_empty_when_open(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("closure_date").is_not_null() | pl.col("onward_referral").is_null())

    class Config:
        strict = True


# --- goals ----------------------------------------------------------------------------------
class GoalsRaw(pa.DataFrameModel):
    """goals as read (goal_text is never read)."""

    row: int = row_field()
    episode_id: str = raw_field()
    goal_number: str = raw_field()
    goal_area: str = raw_field()
    baseline_score: str = raw_field()
    latest_score: str = raw_field()
    latest_review_date: str = raw_field()

    class Config:
        strict = True


class GoalsClean(GoalsRaw):
    """goals typed and checked; (episode_id, goal_number) is unique."""

    episode_id: str = clean_field(GOALS, "episode_id")
    goal_number: int = clean_field(GOALS, "goal_number")
    goal_area: str = clean_field(GOALS, "goal_area")
    baseline_score: int = clean_field(GOALS, "baseline_score")
    latest_score: int = clean_field(GOALS, "latest_score")
    latest_review_date: date = clean_field(GOALS, "latest_review_date")

    class Config:
        strict = True
        unique = list(KEYS[GOALS])


# --- specialist referrals -------------------------------------------------------------------
class SpecialistReferralsRaw(pa.DataFrameModel):
    """specialist_referrals as read."""

    row: int = row_field()
    referral_id: str = raw_field()
    episode_id: str = raw_field()
    service: str = raw_field()
    reason: str = raw_field()
    start_date: str = raw_field()
    end_date: str = raw_field()
    outcome: str = raw_field()

    class Config:
        strict = True


class SpecialistReferralsClean(SpecialistReferralsRaw):
    """specialist_referrals typed and checked."""

    referral_id: str = clean_field(SPECIALIST_REFERRALS, "referral_id")
    episode_id: str = clean_field(SPECIALIST_REFERRALS, "episode_id")
    service: str = clean_field(SPECIALIST_REFERRALS, "service")
    reason: str = clean_field(SPECIALIST_REFERRALS, "reason")
    start_date: date = clean_field(SPECIALIST_REFERRALS, "start_date")
    end_date: date = clean_field(SPECIALIST_REFERRALS, "end_date")
    outcome: str = clean_field(SPECIALIST_REFERRALS, "outcome")

    @pa.dataframe_check(name="end_after_start")
    def end_after_start(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, _not_before("end_date", "start_date"))

    class Config:
        strict = True


RAW_MODELS: dict[str, type[pa.DataFrameModel]] = {
    FAMILIES: FamiliesRaw,
    CHILDREN: ChildrenRaw,
    EPISODES: EpisodesRaw,
    GOALS: GoalsRaw,
    SPECIALIST_REFERRALS: SpecialistReferralsRaw,
}
CLEAN_MODELS: dict[str, type[pa.DataFrameModel]] = {
    FAMILIES: FamiliesClean,
    CHILDREN: ChildrenClean,
    EPISODES: EpisodesClean,
    GOALS: GoalsClean,
    SPECIALIST_REFERRALS: SpecialistReferralsClean,
}
