"""Type and validate the extract's tables; failing rows become failures, never exceptions.

Steps, all vectorised polars (no per-row Python):

1. Coerce each raw text column by its kind (schemas/columns.py): codes to canonical case,
   code lists to ``List(Utf8)``, integers, dates (ISO ``YYYY-MM-DD``, UK ``DD/MM/YYYY`` or a
   native Excel date; a date that is valid only read the US way is refused as such), yes/no.
   A value that does not coerce is a ``type`` failure.
2. Check the typed frame against the table's ``*Clean`` pandera model with ``lazy=True``
   (required values, code lists, ranges, shapes, unique keys, within-table cross-field
   rules); every failure case maps to (column, rule, reason) — its value is never kept.
3. Cross-table rules, in parent-to-child order so orphans cascade: a row whose parent row
   failed is an orphan too. children/episodes need a valid family; goals/specialist referrals
   need a valid episode, dates on or after that episode's referral date, and at most three
   goal rows per episode (the 4th and later rows, in file order, fail).

``age_at_referral`` replaces ``date_of_birth``: whole years at the referral date of the
family's reference episode = its latest valid in-window episode by referral date, else its
latest valid episode (in-window: referral on or before window end and not closed before window
start, extract-v1 §2). Children of a family without a valid episode get no age.

Duplicate keys fail every row that shares the key (none can be told apart). A failure's
``row_key`` is the row's source id (families.family_id, children.child_id, episodes and goals
episode_id, specialist_referrals.referral_id), or ``row <n>`` when that key is missing or
duplicated; ``row`` is the 1-based data row number in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandera.errors
import polars as pl

from schemas.codes import (
    CHILDREN,
    EPISODES,
    FAMILIES,
    GOALS,
    NO_VALUES,
    SPECIALIST_REFERRALS,
    TABLES,
    YES_VALUES,
)
from schemas.columns import (
    AGE_LIMITS,
    FOREIGN_KEYS,
    KEYS,
    LIMITS,
    MAX_GOALS_PER_EPISODE,
    NOT_READ,
    ROW,
    ROW_KEY,
    SHAPES,
    UPPER_CASE_CODES,
    rule,
    rules_for,
)
from schemas.extract import AGE, CHECK_RULES, CLEAN_MODELS, MISSING_MEANS, RAW_MODELS
from tasks.ingest.reader import RawTables
from tasks.ingest.transform import in_window

FAILURE_SCHEMA = pl.Schema({
    "table": pl.String(),
    "row": pl.Int64(),
    "row_key": pl.String(),
    "column": pl.String(),
    "rule": pl.String(),
    "reason": pl.String(),
})
_CELL_SCHEMA = pl.Schema({
    ROW: pl.Int64(), "column": pl.String(), "rule": pl.String(), "reason": pl.String(),
})
US_DATE_REASON = "not a valid date (US MM/DD/YYYY is not accepted)"
BAD_DATE_REASON = "not a valid date (use YYYY-MM-DD or DD/MM/YYYY)"
YEAR_RANGE = (1900, 2100)  # a date outside these years is a typing slip, not a real date
_SHAPE_REASONS = {"uk_postcode": "not a UK postcode shape", "email": "not an e-mail address shape"}
_PARENT_NOUN = {FAMILIES: "family", EPISODES: "episode"}
_TABLE_ORDER = pl.Enum(list(TABLES))
_PROBLEM = "\x00problem:"  # prefix of the type-problem columns while coercing (never a header)
# Dates that must not be before the referral date of the row's episode: (column, rule, reason).
AFTER_EPISODE_REFERRAL: dict[str, tuple[tuple[str, str, str], ...]] = {
    GOALS: (("latest_review_date", "review_after_referral",
             "latest review date is before the episode's referral date"),),
    SPECIALIST_REFERRALS: (("start_date", "start_after_referral",
                            "start date is before the episode's referral date"),),
}


@dataclass(frozen=True)
class ValidatedTables:
    """Typed rows that passed, and every failure as (table, row, row_key, column, rule, reason).

    ``tables["families"]`` still holds the contact_store columns: the caller moves them out.
    """

    tables: dict[str, pl.DataFrame]
    failures: pl.DataFrame
    rows_read: dict[str, int]
    quarantined: dict[str, int]


def validate_tables(raw: RawTables, *, window_start: date, window_end: date,
                    consume: bool = False) -> ValidatedTables:
    """Type and validate all five tables; failing rows (and their orphans) are set aside.

    ``consume=True`` (the pipeline) drops each table's text frame from ``raw.frames`` once it
    is typed, so the text and typed forms of all tables never coexist.
    """
    for table in TABLES:
        RAW_MODELS[table].validate(raw.frames[table])  # a contract check on the reader, no data
    failed: dict[str, pl.DataFrame] = {}
    cells: dict[str, pl.DataFrame] = {}
    passing: dict[str, pl.DataFrame] = {}
    # Parents before children, and episodes before children (ages need valid episodes).
    for table in (FAMILIES, EPISODES, CHILDREN, GOALS, SPECIALIST_REFERRALS):
        text = raw.frames.pop(table) if consume else raw.frames[table]
        frame, type_failures = coerce_table(table, text)
        del text
        if table == CHILDREN:
            references = reference_referrals(passing[EPISODES], window_start, window_end)
            frame = with_age_at_referral(frame, references)
        found = [type_failures, schema_failures(table, frame)]
        if table in FOREIGN_KEYS:
            found.append(orphan_failures(table, frame, passing[FOREIGN_KEYS[table][1]]))
        for column, rule_name, reason in AFTER_EPISODE_REFERRAL.get(table, ()):
            found.append(before_episode_referral(frame, column, passing[EPISODES], rule_name,
                                                 reason))
        if table == GOALS:
            found.append(too_many_goals(frame))
        cells[table] = _tidy(pl.concat(found))
        failed[table] = _with_row_keys(table, frame, cells[table])
        bad_rows = cells[table].get_column(ROW).unique()
        passing[table] = (frame.filter(~pl.col(ROW).is_in(bad_rows.implode()))
                          if bad_rows.len() else frame)
        del frame

    failures = pl.concat([failed[table] for table in TABLES]).sort(
        pl.col("table").cast(_TABLE_ORDER), "row", "column", "rule")
    quarantined = {table: cells[table].get_column(ROW).n_unique() for table in TABLES}
    tables = {table: passing.pop(table).select(output_columns(table)) for table in TABLES}
    return ValidatedTables(tables, failures, dict(raw.rows_read), quarantined)


def output_columns(table: str) -> list[str]:
    """Columns of a validated table: read columns, date_of_birth replaced by age_at_referral."""
    columns = []
    for r in rules_for(table):
        if r.action in NOT_READ:
            continue
        columns.append(AGE if r.action == "derive_then_drop" else r.column)
    return columns


# --- 1. coercion ----------------------------------------------------------------------------
def coerce_table(table: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Type every read column by its kind; return the typed frame and the type failures.

    Values and problems are one lazy query, so what they share (a parsed date) is computed once.
    Whole numbers and dates are first read by a plain form (a cast; an ISO date), which accepts a
    subset of what the full rule accepts, with the same values; only a column where the plain
    form leaves a value unread ("5.0", "+-5", a UK date, or a real error) is read again by the
    full rule, which also gives the reasons.
    """
    read = [r for r in rules_for(table) if r.action not in NOT_READ]
    exact = {r.column: _coerce(r.column, r.kind, r.codes) for r in read}
    plain = {r.column: _plain_form(r.column, r.kind) for r in read}
    first = {column: plain[column] or coerced for column, coerced in exact.items()}
    both = _coerced(frame, first)
    unread = [column for column, form in plain.items()
              if form is not None and both.get_column(_PROBLEM + column).null_count() < both.height]
    if unread:
        both = both.with_columns(_coerced(frame, {c: exact[c] for c in unread}).drop(ROW))
    typed_columns = [ROW, *exact]
    typed = both.select(typed_columns)
    found = [
        both.filter(pl.col(_PROBLEM + c).is_not_null()).select(
            pl.col(ROW), pl.lit(c).alias("column"), pl.lit("type").alias("rule"),
            pl.col(_PROBLEM + c).alias("reason"))
        for c in exact if _PROBLEM + c in both.columns
    ]
    return typed, pl.concat(found).cast(_CELL_SCHEMA) if found else _empty_cells()


def _coerced(frame: pl.DataFrame, coerced: dict[str, tuple[pl.Expr, pl.Expr | None]]
             ) -> pl.DataFrame:
    """``_row``, each typed column, then each column's type problem (one lazy query)."""
    values = [value.alias(column) for column, (value, _) in coerced.items()]
    problems = [problem.alias(_PROBLEM + column) for column, (_, problem) in coerced.items()
                if problem is not None]
    return frame.lazy().select(pl.col(ROW), *values, *problems).collect()


def _plain_form(column: str, kind: str) -> tuple[pl.Expr, pl.Expr] | None:
    """The cheap first reading of a whole number or date (None: no cheap form), and a
    marker that is set where it read nothing from a value (the full rule then decides)."""
    text = pl.col(column)
    if kind == "integer":
        value = text.cast(pl.Int64, strict=False)  # "5", "-5", "+5": as the full rule reads them
    elif kind == "date":
        iso = pl.when(text.str.contains(r"^\d{4}-\d{1,2}-\d{1,2}$")).then(
            text.str.to_date("%Y-%m-%d", strict=False))
        value = pl.when(iso.dt.year().is_between(*YEAR_RANGE)).then(iso)
    else:
        return None
    return value, pl.when(text.is_not_null() & value.is_null()).then(pl.lit("unread"))


def _coerce(column: str, kind: str, codes: str | None) -> tuple[pl.Expr, pl.Expr | None]:
    text = pl.col(column)
    if kind == "code":
        upper = codes in UPPER_CASE_CODES
        return (text.str.to_uppercase() if upper else text.str.to_lowercase()), None
    if kind == "code_list":
        return _code_list(text), None
    if kind == "integer":
        number = text.str.strip_prefix("+").str.replace(r"\.0+$", "")
        number_value = pl.when(number.str.contains(r"^-?\d+$")).then(
            number.cast(pl.Int64, strict=False))
        return number_value, _problem(text, number_value, "not a whole number")
    if kind == "yes_no":
        lower = text.str.to_lowercase()
        flag = pl.when(lower.is_in(YES_VALUES)).then(True).when(lower.is_in(NO_VALUES)).then(False)
        return flag, _problem(text, flag, "not a yes/no value (Y/N, Yes/No, TRUE/FALSE, 1/0)")
    if kind == "date":
        return _date(text)
    return text, None


def _problem(text: pl.Expr, value: pl.Expr, reason: str) -> pl.Expr:
    return pl.when(text.is_not_null() & value.is_null()).then(pl.lit(reason))


def _code_list(text: pl.Expr) -> pl.Expr:
    items = text.str.split(";").list.eval(
        pl.element().str.strip_chars().str.to_lowercase().filter(pl.element() != "")
    ).list.unique(maintain_order=True)
    return pl.when(items.list.len() > 0).then(items)


def _date(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    iso_shape = text.str.contains(r"^\d{4}-\d{1,2}-\d{1,2}$")
    slash_shape = text.str.contains(r"^\d{1,2}/\d{1,2}/\d{4}$")
    iso = pl.when(iso_shape).then(text.str.to_date("%Y-%m-%d", strict=False))
    uk = pl.when(slash_shape).then(text.str.to_date("%d/%m/%Y", strict=False))
    us = pl.when(slash_shape).then(text.str.to_date("%m/%d/%Y", strict=False))
    parsed = pl.coalesce(iso, uk)
    plausible = parsed.dt.year().is_between(*YEAR_RANGE)
    value = pl.when(plausible).then(parsed)
    problem = (
        pl.when(text.is_null() | value.is_not_null()).then(None)
        .when(uk.is_null() & us.is_not_null()).then(pl.lit(US_DATE_REASON))
        .otherwise(pl.lit(BAD_DATE_REASON))
    )
    return value, problem


# --- 2. schema checks -----------------------------------------------------------------------
def schema_failures(table: str, typed: pl.DataFrame) -> pl.DataFrame:
    """Run the table's Clean model (lazy) and map each failure case to (column, rule, reason)."""
    model = CLEAN_MODELS[table]
    try:
        model.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        # failure_case holds cell values (maybe personal data): never keep or show it.
        cases = exc.failure_cases.select("schema_context", "column", "check", "index")
    else:
        return _empty_cells()
    if cases.get_column("index").null_count():
        broken = sorted(set(cases.filter(pl.col("index").is_null()).get_column("check")))
        raise RuntimeError(f"{model.__name__} does not fit the typed {table} frame: {broken}")
    kinds = cases.select("schema_context", "column", "check").unique()
    meaning = pl.DataFrame(
        [(*key, *_describe(table, *key)) for key in kinds.iter_rows()],
        schema=["schema_context", "column", "check", "out_column", "rule", "reason"],
        orient="row",
    )
    rows = typed.select(pl.col(ROW)).with_row_index("index")
    return (
        cases.with_columns(pl.col("index").cast(pl.UInt32))
        .join(meaning, on=["schema_context", "column", "check"])
        .join(rows, on="index")
        .select(pl.col(ROW), pl.col("out_column").alias("column"), "rule", "reason")
    )


def _describe(table: str, context: str, column: str, check: str) -> tuple[str, str, str]:
    """(column, rule, reason) for one kind of pandera failure case."""
    if check in CHECK_RULES:
        return CHECK_RULES[check]
    if column == AGE:
        youngest, oldest = AGE_LIMITS
        return ("date_of_birth", "age_at_referral",
                f"age at the reference referral date is outside {youngest} to {oldest}")
    if check == "not_nullable":
        return column, "required", "required value missing"
    if check == "field_uniqueness":
        return column, "unique", f"duplicate {column}"
    if check.startswith("isin"):
        return column, "code_list", f"not in code list {rule(table, column).codes}"
    if check.startswith(("in_range", "greater_than", "less_than")):
        low, high = LIMITS[(table, column)]
        if high is None:
            return column, "range", f"less than {low}"
        return column, "range", f"outside the range {low} to {high}"
    if check.startswith("str_matches"):
        return column, "shape", _SHAPE_REASONS[SHAPES[(table, column)][0]]
    raise RuntimeError(f"no failure mapping for {table} {context} {column} {check}")


# --- 3. cross-table rules -------------------------------------------------------------------
def orphan_failures(table: str, typed: pl.DataFrame, parents: pl.DataFrame) -> pl.DataFrame:
    """Rows whose foreign key has no valid (passing) parent row."""
    column, parent = FOREIGN_KEYS[table]
    keys = parents.select(pl.col(KEYS[parent][0]).alias(column)).unique()
    orphans = typed.filter(pl.col(column).is_not_null()).join(keys, on=column, how="anti")
    return _cells(orphans, column, "foreign_key",
                  f"{column} has no valid {_PARENT_NOUN[parent]} row")


def too_many_goals(goals: pl.DataFrame) -> pl.DataFrame:
    """Goal rows after the third of their episode, in file order."""
    busy = (goals.group_by("episode_id").len()
            .filter(pl.col("episode_id").is_not_null() & (pl.col("len") > MAX_GOALS_PER_EPISODE)))
    ranked = goals.join(busy.select("episode_id"), on="episode_id", how="semi").sort(ROW).with_columns(
        pl.int_range(pl.len()).over("episode_id").alias("_nth")
    )
    extra = ranked.filter(pl.col("_nth") >= MAX_GOALS_PER_EPISODE)
    return _cells(extra, "goal_number", "max_goals",
                  f"more than {MAX_GOALS_PER_EPISODE} goals for the episode")


def before_episode_referral(typed: pl.DataFrame, column: str, episodes: pl.DataFrame,
                            rule_name: str, reason: str) -> pl.DataFrame:
    """Rows whose date is before the referral date of their (valid) episode."""
    referrals = episodes.select("episode_id", pl.col("referral_date").alias("_referral"))
    early = typed.join(referrals, on="episode_id").filter(pl.col(column) < pl.col("_referral"))
    return _cells(early, column, rule_name, reason)


def reference_referrals(episodes: pl.DataFrame, window_start: date,
                        window_end: date) -> pl.DataFrame:
    """Each family's reference referral date: latest in-window episode, else latest episode."""
    return episodes.group_by("family_id").agg(
        pl.col("referral_date").filter(in_window(window_start, window_end)).max()
        .fill_null(pl.col("referral_date").max()).alias("_reference")
    )


def with_age_at_referral(children: pl.DataFrame, references: pl.DataFrame) -> pl.DataFrame:
    """Add age_at_referral: whole years from date_of_birth to the family's reference date."""
    dob, ref = pl.col("date_of_birth"), pl.col("_reference")
    before_birthday = _month_day(ref) < _month_day(dob)
    age = ref.dt.year().cast(pl.Int64) - dob.dt.year().cast(pl.Int64) - before_birthday.cast(
        pl.Int64)
    return (
        children.join(references, on="family_id", how="left", maintain_order="left")
        .with_columns(age.alias(AGE))
        .drop("_reference")
    )


def _month_day(day: pl.Expr) -> pl.Expr:
    return day.dt.month().cast(pl.Int32) * 100 + day.dt.day().cast(pl.Int32)  # Int8 would wrap


# --- failures -------------------------------------------------------------------------------
def _cells(rows: pl.DataFrame, column: str, rule_name: str, reason: str) -> pl.DataFrame:
    return rows.select(pl.col(ROW), pl.lit(column).alias("column"),
                       pl.lit(rule_name).alias("rule"), pl.lit(reason).alias("reason"))


def _empty_cells() -> pl.DataFrame:
    return pl.DataFrame(schema=_CELL_SCHEMA)


def _tidy(cells: pl.DataFrame) -> pl.DataFrame:
    """Drop duplicates and knock-on failures: 'required'/'unique' on a cell whose value failed
    to type, 'unique' on a missing value, and checks that read an untyped value as missing."""
    cells = cells.cast(_CELL_SCHEMA).unique(maintain_order=True)
    typing = cells.filter(pl.col("rule") == "type").select(ROW, "column")
    reads_missing = pl.DataFrame(
        {"rule": list(MISSING_MEANS), "column": list(MISSING_MEANS.values())},
        schema={"rule": pl.String, "column": pl.String},
    )
    knock_on_checks = typing.join(reads_missing, on="column").select(ROW, "rule")
    cells = cells.join(knock_on_checks, on=[ROW, "rule"], how="anti")
    missing = cells.filter(pl.col("rule") == "required").select(ROW, "column")
    knock_on = pl.concat([typing, missing])
    follow = cells.filter(pl.col("rule").is_in(["required", "unique"]))
    kept = follow.join(typing, on=[ROW, "column"], how="anti")
    kept = pl.concat([
        kept.filter(pl.col("rule") == "required"),
        kept.filter(pl.col("rule") == "unique").join(knock_on, on=[ROW, "column"], how="anti"),
    ])
    rest = cells.filter(~pl.col("rule").is_in(["required", "unique"]))
    return pl.concat([rest, kept])


def _with_row_keys(table: str, typed: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    key = ROW_KEY[table]
    duplicated = pl.struct(KEYS[table]).is_duplicated() if len(KEYS[table]) > 1 else (
        pl.col(key).is_duplicated())
    keys = typed.lazy().select(
        pl.col(ROW),
        pl.when(pl.col(key).is_null() | duplicated)
        .then(pl.format("row {}", pl.col(ROW)))
        .otherwise(pl.col(key)).alias("row_key"),
    ).join(cells.lazy().select(ROW).unique(), on=ROW, how="semi")
    return cells.lazy().join(keys, on=ROW, how="left").select(
        pl.lit(table).alias("table"), pl.col(ROW).alias("row"), "row_key", "column", "rule",
        "reason",
    ).collect().cast(FAILURE_SCHEMA)
