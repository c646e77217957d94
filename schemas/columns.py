"""The per-column rules of the extract (extract-v1.md §3) as data: one row per spec column.

Read ``RULES`` side by side with the spec tables. Each row says what the column holds
(``kind``), what happens to it (``action``), whether every row needs a value (``required``,
the *value* column: a spec column not marked optional needs one) and which code list its
values come from (``codes``, a key of ``CODE_LISTS``). Ranges and value shapes are in
``LIMITS`` and ``SHAPES`` below; keys and foreign keys in ``KEYS``/``FOREIGN_KEYS``; the
cross-field rules in ``schemas/extract.py``. Everything else is derived from these tables:
the spec column order (``TABLE_COLUMNS``), the columns read (``READ_COLUMNS``), the pandera
models (``schemas/extract.py``) and the columns of the analysis store (``ANALYSIS_COLUMNS``,
which the load inserts), so a column change is one edit here.

Actions:

* ``keep`` — analysis value, loaded as typed (a code list as one row per code in its own
  table, ``CODE_LIST_TABLES``).
* ``pseudonymise`` — an identifier: validated here, replaced by a keyed pseudonym at load
  (``family_id`` is stored as ``family_pid``).
* ``contact_store`` — contact details (PII): validated, then moved to the encrypted contact
  store by the caller; never loaded into the analysis tables.
* ``derive_then_drop`` — ``date_of_birth``: read, turned into ``age_at_referral``, dropped.
* ``drop`` — PII with no use (``child_name``): never read, like ``never_read``.
* ``never_read`` — free text (``case_notes``, ``goal_text``): dropped while parsing.

A file must contain every column that is read (``REQUIRED_COLUMNS``); ``drop`` and
``never_read`` columns may be present or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.codes import (
    CHILDREN,
    CLOSURE_OUTCOME,
    EPISODES,
    ETHNICITY_CODES,
    FAMILIES,
    GENDER,
    GOALS,
    LEAD_CARER_EMPLOYMENT,
    LEAD_WORKER_ROLE,
    ONWARD_REFERRAL,
    PREFERRED_CONTACT,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SCHOOL_PHASE,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_REFERRALS,
    SPECIALIST_SERVICE,
    TABLES,
)

Kind = Literal["text", "code", "code_list", "integer", "date", "yes_no"]
Action = Literal["keep", "pseudonymise", "contact_store", "derive_then_drop", "drop", "never_read"]
NOT_READ: tuple[str, ...] = ("drop", "never_read")

CODE_LISTS: dict[str, tuple[str, ...]] = {
    "preferred_contact": PREFERRED_CONTACT,
    "lead_carer_employment": LEAD_CARER_EMPLOYMENT,
    "ethnicity": ETHNICITY_CODES,
    "gender": GENDER,
    "school_phase": SCHOOL_PHASE,
    "referral_route": REFERRAL_ROUTE,
    "presenting_issues": PRESENTING_ISSUES,
    "services": SERVICES,
    "lead_worker_role": LEAD_WORKER_ROLE,
    "closure_outcome": CLOSURE_OUTCOME,
    "onward_referral": ONWARD_REFERRAL,
    "specialist_service": SPECIALIST_SERVICE,
    "specialist_outcome": SPECIALIST_OUTCOME,
}
# Code lists written in upper case (DfE codes); every other list is lower case.
UPPER_CASE_CODES: frozenset[str] = frozenset({"ethnicity"})


@dataclass(frozen=True)
class ColumnRule:
    """One spec column: its kind, what happens to it, whether a value is required, its codes."""

    table: str
    column: str
    kind: Kind
    action: Action
    required: bool
    codes: str | None = None


_Row = tuple[str, Kind, Action, bool, str | None]


def _table(table: str, rows: tuple[_Row, ...]) -> tuple[ColumnRule, ...]:
    return tuple(ColumnRule(table, *row) for row in rows)


RULES: tuple[ColumnRule, ...] = (
    *_table(FAMILIES, (
        # column                    kind         action             value  codes
        ("family_id",              "text",      "pseudonymise",     True,  None),
        ("lead_carer_name",        "text",      "contact_store",    False, None),
        ("address_line_1",         "text",      "contact_store",    False, None),
        ("address_line_2",         "text",      "contact_store",    False, None),
        ("town",                   "text",      "contact_store",    False, None),
        ("postcode",               "text",      "contact_store",    False, None),
        ("email",                  "text",      "contact_store",    False, None),
        ("phone",                  "text",      "contact_store",    False, None),
        ("preferred_contact",      "code",      "contact_store",    True,  "preferred_contact"),
        ("household_size",         "integer",   "keep",             True,  None),
        ("adults_in_employment",   "integer",   "keep",             True,  None),
        ("lead_carer_employment",  "code",      "keep",             True,  "lead_carer_employment"),
        ("lead_carer_ethnicity",   "code",      "keep",             True,  "ethnicity"),
        ("first_language_english", "yes_no",    "keep",             False, None),
        ("free_school_meals",      "yes_no",    "keep",             True,  None),
        ("imd_decile",             "integer",   "keep",             False, None),
        ("do_not_contact",         "yes_no",    "contact_store",    True,  None),
    )),
    *_table(CHILDREN, (
        ("child_id",               "text",      "pseudonymise",     True,  None),
        ("family_id",              "text",      "pseudonymise",     True,  None),
        ("child_name",             "text",      "drop",             False, None),
        ("date_of_birth",          "date",      "derive_then_drop", True,  None),
        ("gender",                 "code",      "keep",             True,  "gender"),
        ("ethnicity",              "code",      "keep",             True,  "ethnicity"),
        ("school_phase",           "code",      "keep",             True,  "school_phase"),
        ("sen_support",            "yes_no",    "keep",             False, None),
    )),
    *_table(EPISODES, (
        ("episode_id",             "text",      "pseudonymise",     True,  None),
        ("family_id",              "text",      "pseudonymise",     True,  None),
        ("referral_date",          "date",      "keep",             True,  None),
        ("referral_route",         "code",      "keep",             True,  "referral_route"),
        ("allocation_date",        "date",      "keep",             False, None),
        ("presenting_issues",      "code_list", "keep",             True,  "presenting_issues"),
        ("primary_issue",          "code",      "keep",             True,  "presenting_issues"),
        ("services",               "code_list", "keep",             True,  "services"),
        ("lead_worker_role",       "code",      "keep",             True,  "lead_worker_role"),
        ("closure_date",           "date",      "keep",             False, None),
        ("closure_outcome",        "code",      "keep",             False, "closure_outcome"),
        ("onward_referral",        "code",      "keep",             False, "onward_referral"),
        ("case_notes",             "text",      "never_read",       False, None),
    )),
    *_table(GOALS, (
        ("episode_id",             "text",      "pseudonymise",     True,  None),
        ("goal_number",            "integer",   "keep",             True,  None),
        ("goal_area",              "code",      "keep",             True,  "presenting_issues"),
        ("baseline_score",         "integer",   "keep",             True,  None),
        ("latest_score",           "integer",   "keep",             False, None),
        ("latest_review_date",     "date",      "keep",             False, None),
        ("goal_text",              "text",      "never_read",       False, None),
    )),
    *_table(SPECIALIST_REFERRALS, (
        ("referral_id",            "text",      "pseudonymise",     True,  None),
        ("episode_id",             "text",      "pseudonymise",     True,  None),
        ("service",                "code",      "keep",             True,  "specialist_service"),
        ("reason",                 "code",      "keep",             True,  "presenting_issues"),
        ("start_date",             "date",      "keep",             True,  None),
        ("end_date",               "date",      "keep",             False, None),
        ("outcome",                "code",      "keep",             True,  "specialist_outcome"),
    )),
)

# Inclusive integer ranges (None = unbounded). adults_in_employment is also at most
# household_size (a cross-field rule in schemas/extract.py).
LIMITS: dict[tuple[str, str], tuple[int | None, int | None]] = {
    (FAMILIES, "household_size"): (1, 20),
    (FAMILIES, "adults_in_employment"): (0, None),
    (FAMILIES, "imd_decile"): (1, 10),
    (GOALS, "goal_number"): (1, 3),
    (GOALS, "baseline_score"): (0, 10),
    (GOALS, "latest_score"): (0, 10),
}
# Value shapes checked when a value is present (case-insensitive regular expressions).
UK_POSTCODE = r"(?i)^(GIR ?0AA|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
SHAPES: dict[tuple[str, str], tuple[str, str]] = {
    (FAMILIES, "postcode"): ("uk_postcode", UK_POSTCODE),
    (FAMILIES, "email"): ("email", EMAIL),
}
# Unique key of each table, and the column whose value names a row in failure reports.
KEYS: dict[str, tuple[str, ...]] = {
    FAMILIES: ("family_id",),
    CHILDREN: ("child_id",),
    EPISODES: ("episode_id",),
    GOALS: ("episode_id", "goal_number"),
    SPECIALIST_REFERRALS: ("referral_id",),
}
ROW_KEY: dict[str, str] = {table: KEYS[table][0] for table in TABLES}
# child table -> (column, parent table); the parent's key has the same name.
FOREIGN_KEYS: dict[str, tuple[str, str]] = {
    CHILDREN: ("family_id", FAMILIES),
    EPISODES: ("family_id", FAMILIES),
    GOALS: ("episode_id", EPISODES),
    SPECIALIST_REFERRALS: ("episode_id", EPISODES),
}
MAX_GOALS_PER_EPISODE = 3
AGE_LIMITS = (0, 18)  # whole years at the reference referral date, inclusive


def _bands(first_ages: tuple[int, ...], last_age: int) -> tuple[tuple[str, int, int], ...]:
    lasts = (*(age - 1 for age in first_ages[1:]), last_age)
    return tuple((f"{low}-{high}", low, high) for low, high in zip(first_ages, lasts, strict=True))


# (label, first age, last age) of age_at_referral: 0-4, 5-10 (primary school age), 11-15
# (secondary, compulsory), 16-18 (post-16); together they cover AGE_LIMITS exactly.
AGE_BANDS: tuple[tuple[str, int, int], ...] = _bands((AGE_LIMITS[0], 5, 11, 16), AGE_LIMITS[1])


def rules_for(table: str) -> tuple[ColumnRule, ...]:
    """The rules of one table's spec columns, in spec order."""
    return _BY_TABLE[table]


def rule(table: str, column: str) -> ColumnRule:
    """The rule of one spec column."""
    return _BY_NAME[(table, column)]


def columns_for(table: str, action: str | tuple[str, ...] | None = None,
                *, kind: str | None = None) -> tuple[str, ...]:
    """Spec columns of a table, optionally only those with an action (or actions) or kind."""
    actions = (action,) if isinstance(action, str) else action
    return tuple(
        r.column for r in _BY_TABLE[table]
        if (actions is None or r.action in actions) and (kind is None or r.kind == kind)
    )


_BY_TABLE: dict[str, tuple[ColumnRule, ...]] = {
    table: tuple(r for r in RULES if r.table == table) for table in TABLES
}
_BY_NAME: dict[tuple[str, str], ColumnRule] = {(r.table, r.column): r for r in RULES}

ROW = "_row"  # the source row number the reader adds (1 = first data row under the header)
# Every spec column of each table, in spec order (what a complete file holds).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(r.column for r in _BY_TABLE[table]) for table in TABLES
}
# Columns the reader keeps (everything but drop/never_read); a file must have all of them.
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(r.column for r in _BY_TABLE[table] if r.action not in NOT_READ)
    for table in TABLES
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = READ_COLUMNS


# --- the analysis store ----------------------------------------------------------------------
EPISODE_ISSUES = "episode_issues"
EPISODE_SERVICES = "episode_services"
# A kept code-list column is stored as one row per code: (table, column) -> (table, column).
CODE_LIST_TABLES: dict[tuple[str, str], tuple[str, str]] = {
    (EPISODES, "presenting_issues"): (EPISODE_ISSUES, "issue"),
    (EPISODES, "services"): (EPISODE_SERVICES, "service"),
}
# Columns computed at ingest (tasks/ingest/transform.py), stored after the kept columns.
DERIVED: dict[str, tuple[str, ...]] = {
    FAMILIES: ("in_population",),
    CHILDREN: ("age_at_referral", "age_band"),
    EPISODES: (
        "in_window", "length_of_support_days", "days_to_allocation", "goal_count",
        "stepped_up_res_team", "stepped_up_early_help_hub", "stepped_up_social_care",
    ),
    GOALS: ("score_change",),
    SPECIALIST_REFERRALS: (),
}


def pseudonym_kind(column: str) -> str:
    """The kind of a pseudonymised id column (``family_id`` -> ``family``), part of its pseudonym."""
    return column.removesuffix("_id")


def pseudonym_column(column: str) -> str:
    """The stored name of a pseudonymised id column (``family_id`` -> ``family_pid``)."""
    return f"{pseudonym_kind(column)}_pid"


def _stored_columns(table: str) -> tuple[str, ...]:
    kept = [pseudonym_column(r.column) if r.action == "pseudonymise" else r.column
            for r in _BY_TABLE[table]
            if r.action == "pseudonymise" or (r.action == "keep" and r.kind != "code_list")]
    return (*kept, *DERIVED[table])


def _analysis_columns() -> dict[str, tuple[str, ...]]:
    columns: dict[str, tuple[str, ...]] = {}
    for table in TABLES:
        columns[table] = _stored_columns(table)
        key = pseudonym_column(KEYS[table][0])
        for (parent, _column), (stored, value) in CODE_LIST_TABLES.items():
            if parent == table:
                columns[stored] = (key, value)
    return columns


# Analysis tables in load order (parents first), with the columns the load inserts; the
# load adds cluster_id (and the extract's SHA-256 for families) itself.
ANALYSIS_COLUMNS: dict[str, tuple[str, ...]] = _analysis_columns()
