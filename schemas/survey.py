"""Pandera models of the survey response export (extract-v1.md, "Survey response export").

Raw: every cell as text after trimming, codes lower-cased and empty cells made null, plus the
file row number (header = row 1). Clean: typed values ready to store (scores Int64 0-10,
yes/no Boolean, submitted_at normalised to UTC ISO 8601). ``raw_schema`` adds the checks that
depend on the database: the token was issued, and its household has not withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandera.polars as pa

from schemas.codes import NO_VALUES, SURVEY_MODE, YES_VALUES

SCORE_TEXT = r"^(10|[0-9])$"
# ISO 8601 date-time (T or space, optional seconds/fraction/offset) or UK DD/MM/YYYY HH:MM.
DATETIME_TEXT = (
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?"
    r"|\d{2}/\d{2}/\d{4} \d{2}:\d{2})$"
)
UTC_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$"
YES_NO = tuple(YES_VALUES) + tuple(NO_VALUES)
TOKEN_ISSUED = "token_issued"  # noqa: S105 - a check name, not a secret
NOT_WITHDRAWN = "household_not_withdrawn"


class SurveyExportRaw(pa.DataFrameModel):
    """One returned questionnaire as text, shape-checked cell by cell."""

    row: int = pa.Field(ge=2)
    token: str = pa.Field(nullable=False)
    submitted_at: str = pa.Field(nullable=False, str_matches=DATETIME_TEXT)
    mode: str = pa.Field(nullable=False, isin=list(SURVEY_MODE))
    q1_life_satisfaction: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q2_worthwhile: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q3_happy_yesterday: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q4_anxious_yesterday: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q5_child_wellbeing: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q6_parenting_confidence: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q7_help_with_difficulties: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q8_worker_relationship: str = pa.Field(nullable=True, str_matches=SCORE_TEXT)
    q9_negative_effects: str = pa.Field(nullable=True, isin=list(YES_NO))
    q10_interview_opt_in: str = pa.Field(nullable=True, isin=list(YES_NO))

    class Config:
        strict = True


class SurveyResponseClean(SurveyExportRaw):
    """A valid response, typed for storage; one per token."""

    token: str = pa.Field(nullable=False, unique=True)
    submitted_at: str = pa.Field(nullable=False, str_matches=UTC_ISO)
    # pandera reads these annotations as the columns' new dtypes (text -> typed), its documented
    # way to refine a model by inheritance; mypy takes them for attribute overrides (a typing gap).
    q1_life_satisfaction: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q2_worthwhile: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q3_happy_yesterday: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q4_anxious_yesterday: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q5_child_wellbeing: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q6_parenting_confidence: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q7_help_with_difficulties: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q8_worker_relationship: int = pa.Field(nullable=True, ge=0, le=10)  # type: ignore[assignment]
    q9_negative_effects: bool = pa.Field(nullable=True)  # type: ignore[assignment]
    q10_interview_opt_in: bool = pa.Field(nullable=True)  # type: ignore[assignment]


def raw_schema(issued: Iterable[str], withdrawn: Iterable[str]) -> pa.DataFrameSchema:
    """The raw model plus: the token was issued, and its household has not withdrawn."""
    schema = SurveyExportRaw.to_schema()
    return schema.update_column("token", checks=[
        pa.Check.isin(sorted(set(issued)), name=TOKEN_ISSUED),
        pa.Check.notin(sorted(set(withdrawn)), name=NOT_WITHDRAWN),
    ])


def clean_schema() -> pa.DataFrameSchema:
    """The clean model as a schema."""
    return SurveyResponseClean.to_schema()
