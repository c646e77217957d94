"""Pandera models of the extract tables, one per table and stage (raw -> clean), built from the rules.

``*Raw``: what ``tasks.ingest.reader`` hands over — every read column present, all strings, plus
the source row number ``_row``. ``*Clean`` (a subclass of its ``*Raw``): the same columns typed by
``tasks.ingest.validate`` and checked against the rules of ``schemas/columns.py`` (required
values, code lists, ranges, shapes, unique keys) and the within-table cross-field rules of
``CROSS_FIELD_RULES`` as named dataframe checks. Both are ``DataFrameModel`` classes generated
from the rules table, so no column is written down twice. Validate collected DataFrames with
``lazy=True``; ``CHECK_RULES`` maps every custom check name to the (column, rule, reason)
reported for a failing row. Rules that span tables (foreign keys, dates against the parent
episode, goals per episode) are in tasks/ingest/validate.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.codes import CHILDREN, EPISODES, FAMILIES, SPECIALIST_REFERRALS, TABLES
from schemas.columns import (
    AGE_LIMITS,
    CODE_LISTS,
    KEYS,
    LIMITS,
    NOT_READ,
    READ_COLUMNS,
    ROW,
    RULES,
    SHAPES,
    Kind,
    rule,
    rules_for,
)

CodeList = Annotated[pl.List, pl.Utf8()]
AGE = "age_at_referral"
# The type of each column kind once typed by tasks.ingest.validate.
CLEAN_TYPES: dict[Kind, Any] = {
    "text": str, "code": str, "code_list": CodeList, "integer": int, "date": date, "yes_no": bool,
}
# Columns tasks.ingest.validate derives before the clean check: table -> column -> (type, field).
CLEAN_DERIVED: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {
    CHILDREN: {AGE: (int, {"nullable": True,
                           "in_range": {"min_value": AGE_LIMITS[0], "max_value": AGE_LIMITS[1]}})},
}


def _not_before(later: str, earlier: str) -> pl.Expr:
    return pl.col(later).is_null() | pl.col(earlier).is_null() | (pl.col(later) >= pl.col(earlier))


@dataclass(frozen=True)
class CrossFieldRule:
    """A within-table rule over several columns: a row fails where ``ok`` is false (null passes).

    ``name`` is the check's name and the rule reported; ``column`` is the column reported and
    ``reason`` never quotes a value. ``missing_means`` names an input whose absence means
    something (no closure_date = open): when that input is missing only because its value failed
    to type, the rule's failure is a knock-on and is not reported.
    """

    table: str
    name: str
    column: str
    reason: str
    ok: pl.Expr
    missing_means: str | None = None


CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    CrossFieldRule(FAMILIES, "adults_within_household", "adults_in_employment",
                   "more adults in employment than people in the household",
                   _not_before("household_size", "adults_in_employment")),
    CrossFieldRule(EPISODES, "allocation_after_referral", "allocation_date",
                   "allocation date is before referral date",
                   _not_before("allocation_date", "referral_date")),
    CrossFieldRule(EPISODES, "closure_after_referral", "closure_date",
                   "closure date is before referral date",
                   _not_before("closure_date", "referral_date")),
    CrossFieldRule(EPISODES, "primary_issue_presenting", "primary_issue",
                   "primary issue is not one of the episode's presenting issues",
                   pl.col("presenting_issues").list.contains(pl.col("primary_issue"))),
    CrossFieldRule(EPISODES, "outcome_when_closed", "closure_outcome",
                   "closure outcome missing for a closed episode",
                   pl.col("closure_date").is_null() | pl.col("closure_outcome").is_not_null()),
    CrossFieldRule(EPISODES, "outcome_empty_when_open", "closure_outcome",
                   "closure outcome given for an open episode",
                   pl.col("closure_date").is_not_null() | pl.col("closure_outcome").is_null(),
                   missing_means="closure_date"),
    CrossFieldRule(EPISODES, "onward_empty_when_open", "onward_referral",
                   "onward referral given for an open episode",
                   pl.col("closure_date").is_not_null() | pl.col("onward_referral").is_null(),
                   missing_means="closure_date"),
    CrossFieldRule(SPECIALIST_REFERRALS, "end_after_start", "end_date",
                   "end date is before start date", _not_before("end_date", "start_date")),
)


def _codes_check_name(column: str) -> str:
    return f"{column}_codes"


# Custom check name -> (column reported, rule, reason). Reasons never quote a value.
CHECK_RULES: dict[str, tuple[str, str, str]] = {
    **{r.name: (r.column, r.name, r.reason) for r in CROSS_FIELD_RULES},
    **{_codes_check_name(r.column): (r.column, "code_list", f"not in code list {r.codes}")
       for r in RULES if r.kind == "code_list"},
    "multiple_fields_uniqueness": (
        "goal_number", "unique", "duplicate goal_number within the episode"),
}
# Checks for which a missing input means something (see CrossFieldRule.missing_means).
MISSING_MEANS: dict[str, str] = {
    r.name: r.missing_means for r in CROSS_FIELD_RULES if r.missing_means is not None
}


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


def _codes_check(column: str, codes: tuple[str, ...]) -> classmethod[Any, Any, Any]:
    """A column check: every code of a code-list value is in its code list."""

    def check(cls: Any, data: PolarsData) -> pl.LazyFrame:
        every = pl.col(data.key).list.eval(pl.element().is_in(list(codes))).list.all()
        return _ok(data, every)

    return pa.check(column, name=_codes_check_name(column))(check)


def _cross_field_check(cross: CrossFieldRule) -> classmethod[Any, Any, Any]:
    """A dataframe check of one cross-field rule."""

    def check(cls: Any, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, cross.ok)

    return pa.dataframe_check(name=cross.name)(check)


def _model(name: str, base: type[pa.DataFrameModel], doc: str, fields: dict[str, tuple[Any, Any]],
           extra: dict[str, Any]) -> type[pa.DataFrameModel]:
    """A DataFrameModel subclass with typed fields ``{name: (type, Field)}`` and extra members."""
    namespace: dict[str, Any] = {
        "__module__": __name__, "__qualname__": name, "__doc__": doc,
        "__annotations__": {field: kind for field, (kind, _) in fields.items()},
        **{field: info for field, (_, info) in fields.items()},
        **extra,
    }
    model: type[pa.DataFrameModel] = type(name, (base,), namespace)
    return model


def _class_name(table: str, stage: str) -> str:
    return "".join(word.capitalize() for word in table.split("_")) + stage


def raw_model(table: str) -> type[pa.DataFrameModel]:
    """The ``*Raw`` model of a table: the row number and every read column, text, may be empty."""
    fields: dict[str, tuple[Any, Any]] = {
        "row": (int, pa.Field(alias=ROW, unique=True, ge=1)),
        **{column: (str, pa.Field(nullable=True)) for column in READ_COLUMNS[table]},
    }
    config = type("Config", (), {"strict": True})
    return _model(_class_name(table, "Raw"), pa.DataFrameModel,
                  f"{table} as read: every read column, text.", fields, {"Config": config})


def clean_model(table: str, raw: type[pa.DataFrameModel]) -> type[pa.DataFrameModel]:
    """The ``*Clean`` model of a table: its raw model's columns typed and checked by the rules."""
    read = [r for r in rules_for(table) if r.action not in NOT_READ]
    fields: dict[str, tuple[Any, Any]] = {
        r.column: (CLEAN_TYPES[r.kind], clean_field(table, r.column)) for r in read}
    for column, (kind, field_options) in CLEAN_DERIVED.get(table, {}).items():
        fields[column] = (kind, pa.Field(**field_options))
    checks: dict[str, classmethod[Any, Any, Any]] = {
        _codes_check_name(r.column): _codes_check(r.column, CODE_LISTS[r.codes])
        for r in read if r.kind == "code_list" and r.codes is not None}
    checks.update({c.name: _cross_field_check(c) for c in CROSS_FIELD_RULES if c.table == table})
    options: dict[str, Any] = {"strict": True}
    if len(KEYS[table]) > 1:
        options["unique"] = list(KEYS[table])
    return _model(_class_name(table, "Clean"), raw, f"{table} typed and checked.", fields,
                  {**checks, "Config": type("Config", (), options)})


RAW_MODELS: dict[str, type[pa.DataFrameModel]] = {table: raw_model(table) for table in TABLES}
CLEAN_MODELS: dict[str, type[pa.DataFrameModel]] = {
    table: clean_model(table, RAW_MODELS[table]) for table in TABLES
}
