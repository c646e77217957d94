"""The analysis's input contract: one pandera model per study frame and the check of them all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandera.polars as pa
from pandera.errors import SchemaErrors

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
from schemas.columns import AGE_LIMITS
from tasks.core.errors import UserFacingError

if TYPE_CHECKING:
    from tasks.analysis.study_data import StudyData


def _codes(values: Iterable[str], nullable: bool = False) -> Any:
    """A field that must hold one of ``values``."""
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
    age_at_referral: int = pa.Field(ge=AGE_LIMITS[0], le=AGE_LIMITS[1], nullable=True)


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

