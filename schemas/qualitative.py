"""Pandera model of the qualitative participants register (shared/spec/qualitative-v1.md §1).

``RegisterRaw`` checks the register as read: every spec column present as text (trimmed, empty
cells null, code values lower-cased as extract-v1 §1 says), plus the file row number ``_row``.
Every rule is a named check; ``RULES`` maps a check name to the column and rule reported and a
reason that never quotes a value. Rules that span rows (unique ids and pseudonyms, a pseudonym
equal to anyone's real name, one date and one strand per session) are dataframe checks over the
whole register. Dates follow extract-v1 §1 (ISO ``YYYY-MM-DD``, UK ``DD/MM/YYYY``; native Excel
dates arrive as ISO); yes/no cells accept Y/N, Yes/No, TRUE/FALSE, 1/0 (any letter case).
Rules that need the database (an issued survey token with interview opt-in) are in
``tasks.qualitative.register``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.codes import LEAD_WORKER_ROLE, NO_VALUES, YES_VALUES

ROW = "_row"
FAMILY, PRACTITIONER = "family_interview", "practitioner_focus_group"
STRANDS = (FAMILY, PRACTITIONER)
FAMILY_ROLES = ("parent", "carer", "grandparent", "other_adult")
PRACTITIONER_ROLES = (*LEAD_WORKER_ROLE, "manager", "other")
ROLES = {FAMILY: FAMILY_ROLES, PRACTITIONER: PRACTITIONER_ROLES}
YES_NO = tuple(YES_VALUES) + tuple(NO_VALUES)

PARTICIPANT_ID = r"^[A-Za-z0-9-]{1,16}$"
# A session id names its transcript file (<session_id>.docx) and review list: file-name safe.
SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
ISO_DATE = r"^\d{4}-\d{1,2}-\d{1,2}$"
UK_DATE = r"^\d{1,2}/\d{1,2}/\d{4}$"
YEARS = (1900, 2100)
PRACTITIONER_LABEL = "Practitioner"
RESERVED_PSEUDONYM = re.compile(rf"^{PRACTITIONER_LABEL}\s*\d+$", re.IGNORECASE)

COLUMNS = (
    "participant_id", "strand", "session_id", "session_date", "role", "survey_token",
    "full_name", "other_names", "chosen_pseudonym", "consent_form_version",
    "info_sheet_version", "consent_date", "consent_recording", "consent_quotes",
    "withdrawn_date",
)
# Columns the header must have; the others may be left out (then empty for every row).
REQUIRED_COLUMNS = (
    "participant_id", "strand", "session_id", "session_date", "role", "full_name",
    "consent_form_version", "info_sheet_version", "consent_date", "consent_recording",
    "consent_quotes",
)
CODE_COLUMNS = ("strand", "role")
DATE_COLUMNS = ("session_date", "consent_date", "withdrawn_date")
YES_NO_COLUMNS = ("consent_recording", "consent_quotes")
PII_COLUMNS = ("full_name", "other_names")


@dataclass(frozen=True)
class Failure:
    """One broken rule: the row, the participant (when its id is valid), column and rule."""

    row: int
    participant_id: str | None
    column: str
    rule: str
    reason: str


# --------------------------------------------------------------------------- parsing helpers


def parse_date(value: pl.Expr) -> pl.Expr:
    """A date cell (ISO or UK day-first) as a Date; null when missing or not a real date."""
    iso = pl.when(value.str.contains(ISO_DATE)).then(value.str.to_date("%Y-%m-%d", strict=False))
    uk = pl.when(value.str.contains(UK_DATE)).then(value.str.to_date("%d/%m/%Y", strict=False))
    parsed = pl.coalesce(iso, uk)
    return pl.when(parsed.dt.year().is_between(*YEARS)).then(parsed)


def parse_yes_no(value: pl.Expr) -> pl.Expr:
    """A yes/no cell as a Boolean; null when missing or not yes/no."""
    lower = value.str.to_lowercase()
    return pl.when(lower.is_in(list(YES_VALUES))).then(True).when(
        lower.is_in(list(NO_VALUES))).then(False)


def _fold(name: str | None) -> str:
    """A name compared case-insensitively with its spaces normalised."""
    return " ".join((name or "").split()).casefold()


def other_names(cell: str | None) -> tuple[str, ...]:
    """The ``;``-separated other names of a cell, trimmed, empty ones left out."""
    return tuple(part.strip() for part in (cell or "").split(";") if part.strip())


def real_names(full_name: str | None, others: str | None) -> set[str]:
    """Folded forms a pseudonym must not equal: full name, first name, surname, other names."""
    names: set[str] = set()
    words = (full_name or "").split()
    if words:
        names.update({_fold(full_name), _fold(words[0]), _fold(words[-1])})
    for other in other_names(others):
        names.add(_fold(other))
        names.update(_fold(word) for word in other.split())
    return names


def _ok(data: PolarsData, expr: pl.Expr) -> pl.LazyFrame:
    return data.lazyframe.select(expr.fill_null(True).alias("ok"))


def _python_ok(values: Sequence[bool]) -> pl.LazyFrame:
    return pl.LazyFrame({"ok": list(values)}, schema={"ok": pl.Boolean})


def _family() -> pl.Expr:
    return pl.col("strand") == FAMILY


# --------------------------------------------------------------------------- the model


class RegisterRaw(pa.DataFrameModel):
    """The participants register as read: one row per participant, text cells."""

    row: int = pa.Field(alias=ROW, unique=True, ge=1)
    participant_id: str = pa.Field(nullable=False)
    strand: str = pa.Field(nullable=False)
    session_id: str = pa.Field(nullable=False)
    session_date: str = pa.Field(nullable=False)
    role: str = pa.Field(nullable=False)
    survey_token: str = pa.Field(nullable=True)
    full_name: str = pa.Field(nullable=True)
    other_names: str = pa.Field(nullable=True)
    chosen_pseudonym: str = pa.Field(nullable=True)
    consent_form_version: str = pa.Field(nullable=False)
    info_sheet_version: str = pa.Field(nullable=False)
    consent_date: str = pa.Field(nullable=False)
    consent_recording: str = pa.Field(nullable=False)
    consent_quotes: str = pa.Field(nullable=False)
    withdrawn_date: str = pa.Field(nullable=True)

    class Config:
        strict = True

    # -- one cell
    @pa.dataframe_check(name="participant_id_shape")
    @classmethod
    def _participant_id_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("participant_id").str.contains(PARTICIPANT_ID))

    @pa.dataframe_check(name="participant_id_unique")
    @classmethod
    def _participant_id_unique(cls, data: PolarsData) -> pl.LazyFrame:
        pid = pl.col("participant_id")
        return _ok(data, pid.is_null() | ~pid.is_duplicated())

    @pa.dataframe_check(name="strand_code_list")
    @classmethod
    def _strand_codes(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("strand").is_in(list(STRANDS)))

    @pa.dataframe_check(name="session_id_shape")
    @classmethod
    def _session_shape(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("session_id").str.contains(SESSION_ID))

    @pa.dataframe_check(name="role_for_strand")
    @classmethod
    def _role_for_strand(cls, data: PolarsData) -> pl.LazyFrame:
        role, strand = pl.col("role"), pl.col("strand")
        ok = (pl.when(strand == FAMILY).then(role.is_in(list(FAMILY_ROLES)))
              .when(strand == PRACTITIONER).then(role.is_in(list(PRACTITIONER_ROLES))))
        return _ok(data, ok)

    @pa.dataframe_check(name="survey_token_family_only")
    @classmethod
    def _token_family_only(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("survey_token").is_null() | (pl.col("strand") != PRACTITIONER))

    @pa.dataframe_check(name="full_name_required")
    @classmethod
    def _full_name_required(cls, data: PolarsData) -> pl.LazyFrame:
        # A participant who has withdrawn needs no name (it would not be stored anyway).
        return _ok(data, pl.col("full_name").is_not_null() | pl.col("withdrawn_date").is_not_null())

    @pa.dataframe_check(name="session_date_date")
    @classmethod
    def _session_date(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("session_date").is_null() | parse_date(pl.col("session_date")).is_not_null())

    @pa.dataframe_check(name="consent_date_date")
    @classmethod
    def _consent_date(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("consent_date").is_null() | parse_date(pl.col("consent_date")).is_not_null())

    @pa.dataframe_check(name="withdrawn_date_date")
    @classmethod
    def _withdrawn_date(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("withdrawn_date").is_null()
                   | parse_date(pl.col("withdrawn_date")).is_not_null())

    @pa.dataframe_check(name="consent_recording_yes_no")
    @classmethod
    def _recording_yes_no(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("consent_recording").str.to_lowercase().is_in(list(YES_NO)))

    @pa.dataframe_check(name="consent_quotes_yes_no")
    @classmethod
    def _quotes_yes_no(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, pl.col("consent_quotes").str.to_lowercase().is_in(list(YES_NO)))

    # -- several cells of one row
    @pa.dataframe_check(name="consent_before_session")
    @classmethod
    def _consent_before_session(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, parse_date(pl.col("consent_date")) <= parse_date(pl.col("session_date")))

    @pa.dataframe_check(name="pseudonym_required_for_family")
    @classmethod
    def _pseudonym_required(cls, data: PolarsData) -> pl.LazyFrame:
        return _ok(data, ~_family() | pl.col("chosen_pseudonym").is_not_null())

    @pa.dataframe_check(name="pseudonym_reserved")
    @classmethod
    def _pseudonym_reserved(cls, data: PolarsData) -> pl.LazyFrame:
        pseudonyms = data.lazyframe.select("chosen_pseudonym").collect().to_series().to_list()
        return _python_ok([p is None or not RESERVED_PSEUDONYM.match(" ".join(p.split()))
                           for p in pseudonyms])

    # -- across rows
    @pa.dataframe_check(name="pseudonym_unique")
    @classmethod
    def _pseudonym_unique(cls, data: PolarsData) -> pl.LazyFrame:
        pseudonyms = data.lazyframe.select("chosen_pseudonym").collect().to_series().to_list()
        folded = [_fold(p) for p in pseudonyms if p is not None]
        return _python_ok([p is None or folded.count(_fold(p)) == 1 for p in pseudonyms])

    @pa.dataframe_check(name="pseudonym_not_a_real_name")
    @classmethod
    def _pseudonym_not_a_name(cls, data: PolarsData) -> pl.LazyFrame:
        frame = data.lazyframe.select("chosen_pseudonym", "full_name", "other_names").collect()
        names: set[str] = set()
        for full, others in frame.select("full_name", "other_names").iter_rows():
            names |= real_names(full, others)
        return _python_ok([p is None or _fold(p) not in names
                           for p in frame.get_column("chosen_pseudonym").to_list()])

    @pa.dataframe_check(name="session_one_date")
    @classmethod
    def _session_one_date(cls, data: PolarsData) -> pl.LazyFrame:
        day = parse_date(pl.col("session_date"))
        return _ok(data, pl.col("session_id").is_null() | day.is_null()
                   | (day.drop_nulls().n_unique().over("session_id") == 1))

    @pa.dataframe_check(name="session_one_strand")
    @classmethod
    def _session_one_strand(cls, data: PolarsData) -> pl.LazyFrame:
        strand = pl.when(pl.col("strand").is_in(list(STRANDS))).then(pl.col("strand"))
        return _ok(data, pl.col("session_id").is_null() | strand.is_null()
                   | (strand.drop_nulls().n_unique().over("session_id") == 1))


def _codes(values: Iterable[str]) -> str:
    return ", ".join(values)


# Check name -> (column reported, rule, reason). Reasons never quote a value.
RULES: dict[str, tuple[str, str, str]] = {
    "participant_id_shape": ("participant_id", "shape", "must be 1 to 16 of A-Z a-z 0-9 -"),
    "participant_id_unique": ("participant_id", "unique", "the same participant_id is on more than one row"),
    "strand_code_list": ("strand", "code_list", f"not one of {_codes(STRANDS)}"),
    "session_id_shape": ("session_id", "shape",
                         "must be 1 to 32 of A-Z a-z 0-9 - _ starting with a letter or digit"),
    "role_for_strand": ("role", "code_list",
                        f"families: {_codes(FAMILY_ROLES)}; practitioners: {_codes(PRACTITIONER_ROLES)}"),
    "survey_token_family_only": ("survey_token", "family_only",
                                 "a survey token is for family participants only"),
    "full_name_required": ("full_name", "required", "required value missing"),
    "session_date_date": ("session_date", "date", "not a date (YYYY-MM-DD or DD/MM/YYYY)"),
    "consent_date_date": ("consent_date", "date", "not a date (YYYY-MM-DD or DD/MM/YYYY)"),
    "withdrawn_date_date": ("withdrawn_date", "date", "not a date (YYYY-MM-DD or DD/MM/YYYY)"),
    "consent_recording_yes_no": ("consent_recording", "yes_no", "not Y/N (Yes/No, TRUE/FALSE, 1/0)"),
    "consent_quotes_yes_no": ("consent_quotes", "yes_no", "not Y/N (Yes/No, TRUE/FALSE, 1/0)"),
    "consent_before_session": ("consent_date", "consent_before_session",
                               "consent date is after the session date"),
    "pseudonym_required_for_family": ("chosen_pseudonym", "required_for_family",
                                      "family participants must have a chosen pseudonym"),
    "pseudonym_reserved": ("chosen_pseudonym", "reserved",
                           f"'{PRACTITIONER_LABEL} N' is kept for practitioners without a pseudonym"),
    "pseudonym_unique": ("chosen_pseudonym", "unique",
                         "the same pseudonym (ignoring letter case) is chosen by more than one participant"),
    "pseudonym_not_a_real_name": ("chosen_pseudonym", "not_a_real_name",
                                  "equals (ignoring letter case) a full name, first name, surname or "
                                  "other name in the register"),
    "session_one_date": ("session_date", "session_one_date",
                         "participants of one session have different session dates"),
    "session_one_strand": ("strand", "session_one_strand",
                           "participants of one session are in different strands"),
}


def _describe(column: str | None, check: str) -> tuple[str, str, str]:
    if check in RULES:
        return RULES[check]
    if check == "not_nullable" and column:
        return column, "required", "required value missing"
    raise RuntimeError(f"no failure mapping for register check {check} on {column}")


def register_failures(frame: pl.DataFrame) -> list[Failure]:
    """Every broken rule of the register, ordered by row then by column (spec order)."""
    try:
        RegisterRaw.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        # failure_case holds cell values (maybe names): never keep or show it.
        cases = exc.failure_cases.select("column", "check", "index")
    else:
        return []
    valid_id = frame.get_column("participant_id").str.contains(PARTICIPANT_ID).fill_null(False)
    failures: set[Failure] = set()
    for column, check, index in cases.iter_rows():
        if index is None:
            raise RuntimeError(f"register check {check} gave no row")
        out_column, rule, reason = _describe(column, str(check))
        pid = frame.get_column("participant_id")[index] if valid_id[index] else None
        failures.add(Failure(int(frame.get_column(ROW)[index]), pid, out_column, rule, reason))
    order = {c: i for i, c in enumerate(COLUMNS)}
    return sorted(failures, key=lambda f: (f.row, order.get(f.column, len(order)), f.rule))


def empty_frame() -> pl.DataFrame:
    """A register frame with no rows (every column text)."""
    return pl.DataFrame(schema={ROW: pl.Int64, **{c: pl.String for c in COLUMNS}})


def to_clean(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The validated register as typed records (dates as ``date``, yes/no as bool), by participant_id."""
    typed = frame.with_columns(
        *(parse_date(pl.col(c)).alias(c) for c in DATE_COLUMNS),
        *(parse_yes_no(pl.col(c)).alias(c) for c in YES_NO_COLUMNS),
    ).sort("participant_id")
    records = typed.drop(ROW).to_dicts()
    for record in records:
        for column in DATE_COLUMNS:
            value = record[column]
            assert value is None or isinstance(value, date)
    return records
