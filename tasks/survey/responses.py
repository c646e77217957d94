"""Survey responses: import the export (validated, quarantined, de-duplicated), withdrawal, rates.

Import rules: the file is identified by its SHA-256 (importing it again changes nothing).
A file that is not a CSV with every export column is rejected whole. Each row is checked
(token issued and not withdrawn, submitted_at ISO 8601 or DD/MM/YYYY HH:MM, a real
time, not before the study window nor before the household was invited (its invitation attempt,
else its wave's draw), not after the import, nor after the end of fieldwork plus
``survey.response_grace_days``; mode code, scores 0-10, yes/no); a failing row is quarantined with row number,
column and reason (never a value). Among valid rows one response per token is kept: the
latest ``submitted_at`` (a tie goes to the later row); the earlier is reported as a
duplicate. Against responses already stored: a later submission replaces the stored one,
an earlier one is reported as a duplicate, an identical time is "already stored" (cumulative
exports). Naive times are UK local time (Europe/London), stored as UTC.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandera.polars as pa
import polars as pl
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from schemas.codes import NO_VALUES, SCORE_QUESTIONS, SURVEY_COLUMNS, YES_NO_QUESTIONS, YES_VALUES
from schemas.survey import NOT_WITHDRAWN, TOKEN_ISSUED, clean_schema, raw_schema
from tasks.core.audit import append_audit
from tasks.core.contacts import delete_contact
from tasks.core.db import query, rows
from tasks.core.errors import InputRejected, UserFacingError
from tasks.core.prefect import artifact_key
from tasks.core.runtime import Checkpoint
from tasks.core.settings import Settings

UK_TIME = ZoneInfo("Europe/London")
QUARANTINE_TABLE = "survey_responses"
WITHDRAWAL_REASON = "withdrawal"
_LOWERED = ("mode",) + YES_NO_QUESTIONS
#: What the fieldwork artifacts may show, and why (README "What the Prefect UI may show").
FIELDWORK_COUNTS = "exact counts for running the fieldwork; counts only, no personal data"


class UnknownToken(UserFacingError):
    """A token that was never issued."""


@dataclass(frozen=True)
class RowProblem:
    """Why one row was quarantined (row number, column, rule, reason; no values)."""

    row: int
    column: str
    rule: str
    reason: str


@dataclass
class ImportResult:
    """Outcome of one import (counts, row numbers, reasons; no answers, no tokens)."""

    status: str
    sha256: str
    file_name: str
    rows: int
    accepted: int
    quarantined: int
    already_stored: int = 0
    duplicates: list[dict[str, int | None]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    issued: int = 0
    responded: int = 0
    target_respondents: int = 0

    def as_json(self) -> dict[str, Any]:
        """The ``responses import --json`` object."""
        rate = round(self.responded / self.issued, 3) if self.issued else None
        return {
            "status": self.status, "sha256": self.sha256, "file": self.file_name,
            "rows": self.rows, "accepted": self.accepted, "quarantined": self.quarantined,
            "already_stored": self.already_stored, "duplicates": list(self.duplicates),
            "quarantine": [{"row": p.row, "column": p.column, "reason": p.reason}
                           for p in self.problems],
            "response_rate": {"issued": self.issued, "responded": self.responded, "rate": rate,
                              "target_respondents": self.target_respondents},
        }


def normalise_header(name: str) -> str:
    """Header matching: case-insensitive, trimmed, spaces and underscores alike."""
    return re.sub(r"[\s_]+", "_", name.strip().lower())


def _decode(data: bytes, file_name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise InputRejected("is neither UTF-8 nor Windows-1252 text", file=file_name) from None


def read_export(data: bytes, file_name: str) -> pl.DataFrame:
    """Parse the export into the raw frame (row number + every column as trimmed text)."""
    text = _decode(data, file_name).replace("\r\n", "\n").replace("\r", "\n")  # mixed endings
    if not text.strip():
        raise InputRejected("is empty; expected a CSV survey export with a header row", file=file_name)
    try:
        frame = pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False,
                            has_header=True)
    except (pl.exceptions.PolarsError, ValueError):
        raise InputRejected("is not a readable CSV file (check the separator and quoting)",
                            file=file_name) from None
    headers = [normalise_header(c) for c in frame.columns]
    if len(set(headers)) != len(headers):
        raise InputRejected("has two columns with the same name", file=file_name)
    frame = frame.rename(dict(zip(frame.columns, headers, strict=True)))
    missing = [c for c in SURVEY_COLUMNS if c not in headers]
    if missing:
        raise InputRejected(
            f"is not a survey export v1: missing column(s) {', '.join(missing)}", file=file_name)
    cells = []
    for column in SURVEY_COLUMNS:
        value = pl.col(column).cast(pl.String).str.strip_chars()
        if column in _LOWERED:
            value = value.str.to_lowercase()
        cells.append(pl.when(value == "").then(None).otherwise(value).alias(column))
    return frame.select(
        pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("row"), *cells)


def parse_submitted_at(text: str | None) -> str | None:
    """ISO 8601 or DD/MM/YYYY HH:MM (naive = UK time) to UTC ISO, or None if not a real time."""
    if text is None:
        return None
    try:
        moment = (datetime.strptime(text, "%d/%m/%Y %H:%M") if "/" in text
                  else datetime.fromisoformat(text))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UK_TIME)
    try:
        return moment.astimezone(UTC).replace(microsecond=0).isoformat()
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        return None


@dataclass(frozen=True)
class TimeWindow:
    """The submitted_at values that can be real (UTC ISO, both ends included).

    ``invited`` raises the lower end per household: token -> when it was first invited (UTC ISO,
    to the second); a token not in it has only the study window's start.
    """

    earliest: str
    latest: str
    latest_reason: str
    invited: Mapping[str, str] = field(default_factory=dict)


BEFORE_STUDY = "submitted_at is before the start of the study window"
BEFORE_INVITATION = "submitted_at is before the household was invited"


def utc_second(value: str) -> str | None:
    """A stored time (ISO 8601; naive = UTC, as the project writes them) as UTC ISO to the second, down."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def invitation_times(conn: Connection, cluster: str) -> dict[str, str]:
    """Token -> when its household was first invited: the invitation attempt, else the wave's draw.

    The invitation attempt counts whatever its outcome (sent, in a pack, bounced...): nothing
    could be returned before it. A household with no attempt recorded (not invited yet, or the
    demo) is bounded by its wave's ``drawn_at``: its token did not exist before. Floored to the
    second, as ``submitted_at`` is, so a return in the invitation's own second is accepted.
    """
    found = {r["token"]: utc_second(r["invited_at"])
             for r in rows(conn, "survey_invitation_times", {"cluster_id": cluster})}
    return {token: at for token, at in found.items() if at is not None}


def submission_window(settings: Settings, now: datetime) -> TimeWindow:
    """From the study window's start to now, or to the end of fieldwork plus the grace period if earlier.

    A response cannot predate the study, nor come from the future; once fieldwork has ended
    (``survey.fieldwork_end``, a UK date, to its last minute) only the
    ``survey.response_grace_days`` that follow still let late returns (posted paper) in.
    """
    earliest = datetime.combine(settings.study.window_start, time(0), UK_TIME).astimezone(UTC)
    latest, reason = now.astimezone(UTC), "submitted_at is later than the time of the import"
    end: date | None = settings.survey.fieldwork_end
    if end is not None:
        closes = (datetime.combine(end + timedelta(days=1 + settings.survey.response_grace_days),
                                   time(0), UK_TIME).astimezone(UTC) - timedelta(seconds=1))
        if closes < latest:
            latest, reason = closes, ("submitted_at is after the end of fieldwork plus "
                                      "survey.response_grace_days")
    return TimeWindow(earliest.replace(microsecond=0).isoformat(),
                      latest.replace(microsecond=0).isoformat(), reason)


def outside_window(clean: pl.DataFrame, window: TimeWindow) -> list[RowProblem]:
    """Rows whose (UTC ISO) submitted_at is before the study or the household's invitation, or after the end."""
    problems = []
    for row, token, at in clean.select("row", "token", "submitted_at").iter_rows():
        if at is None:
            continue
        if at < window.earliest:
            problems.append(RowProblem(row, "submitted_at", "time_window", BEFORE_STUDY))
        elif at < window.invited.get(token, window.earliest):
            problems.append(RowProblem(row, "submitted_at", "time_window", BEFORE_INVITATION))
        elif at > window.latest:
            problems.append(RowProblem(row, "submitted_at", "time_window", window.latest_reason))
    return problems


def _reason(column: str, check: str) -> tuple[str, str]:
    if check == "not_nullable":
        return "required", f"{column} is missing"
    if check == TOKEN_ISSUED:
        return TOKEN_ISSUED, "token was never issued"
    if check == NOT_WITHDRAWN:
        return NOT_WITHDRAWN, "the household has withdrawn; its response is not kept"
    if column == "submitted_at":
        return "datetime", "submitted_at is not ISO 8601 or DD/MM/YYYY HH:MM"
    if column == "mode":
        return "code", "mode is not online, paper or phone"
    if column in SCORE_QUESTIONS:
        return "score_0_10", f"{column} is not a whole number from 0 to 10"
    if column in YES_NO_QUESTIONS:
        return "yes_no", f"{column} is not yes/no (Y/N, Yes/No, TRUE/FALSE, 1/0)"
    return "invalid", f"{column} failed validation"


def _check_name(schema: pa.DataFrameSchema, column: str, check: str, number: int | None) -> str:
    """The name of the failed check (failure cases only carry its text and position)."""
    if number is None or column not in schema.columns:
        return check
    checks = schema.columns[column].checks
    return str(checks[number].name) if 0 <= number < len(checks) else check


def row_problems(schema: pa.DataFrameSchema, frame: pl.DataFrame,
                 file_name: str) -> list[RowProblem]:
    """Validate lazily; every failure as (row, column, rule, reason)."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = []
        cases = exc.failure_cases.select("column", "check", "check_number", "index")
        for case in cases.unique(maintain_order=True).iter_rows(named=True):
            column = str(case["column"])
            if case["index"] is None:
                raise InputRejected("does not have the survey export's shape",
                                    file=file_name, column=column) from None
            name = _check_name(schema, column, str(case["check"]), case["check_number"])
            rule, reason = _reason(column, name)
            problems.append(RowProblem(int(frame["row"][case["index"]]), column, rule, reason))
        return sorted(problems, key=lambda p: (p.row, p.column))
    return []


def to_clean(raw: pl.DataFrame) -> pl.DataFrame:
    """Type the shape-checked text: scores Int64, yes/no Boolean, submitted_at UTC ISO."""
    yes, no = list(YES_VALUES), list(NO_VALUES)
    return raw.select(
        pl.col("row"), pl.col("token"),
        pl.col("submitted_at").map_elements(parse_submitted_at, return_dtype=pl.String),
        pl.col("mode"),
        *[pl.col(q).cast(pl.Int64) for q in SCORE_QUESTIONS],
        *[pl.when(pl.col(q).is_in(yes)).then(True).when(pl.col(q).is_in(no)).then(False)
          .otherwise(None).cast(pl.Boolean).alias(q) for q in YES_NO_QUESTIONS],
    )


def keep_latest(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, int | None]]]:
    """One record per token: latest submitted_at, ties to the later row; report the others."""
    ordered = sorted(records, key=lambda r: (r["token"], r["submitted_at"], r["row"]))
    kept: dict[str, dict[str, Any]] = {}
    duplicates: list[dict[str, int | None]] = []
    for record in ordered:
        earlier = kept.get(record["token"])
        if earlier is not None:
            duplicates.append({"dropped_row": earlier["row"], "kept_row": record["row"]})
        kept[record["token"]] = dict(record)
    return sorted(kept.values(), key=lambda r: r["row"]), sorted(
        duplicates, key=lambda d: d["dropped_row"] or 0)


@dataclass(frozen=True)
class Validated:
    """Rows to store, and what happened to the others."""

    records: list[dict[str, Any]]
    problems: list[RowProblem]
    duplicates: list[dict[str, int | None]]


def validate_export(raw: pl.DataFrame, issued: Sequence[str], withdrawn: Sequence[str],
                    file_name: str, window: TimeWindow | None = None) -> Validated:
    """Raw checks, typing, real-time check, time-window check, de-duplication, clean checks."""
    problems = row_problems(raw_schema(issued, withdrawn), raw, file_name)
    bad = {p.row for p in problems}
    clean = to_clean(raw.filter(~pl.col("row").is_in(sorted(bad))))
    unreal = clean.filter(pl.col("submitted_at").is_null())["row"].to_list()
    problems += [RowProblem(r, "submitted_at", "datetime", "submitted_at is not a real date and time")
                 for r in unreal]
    clean = clean.filter(pl.col("submitted_at").is_not_null())
    if window is not None:  # before de-duplication: a year-9999 row must never win
        outside = outside_window(clean, window)
        problems += outside
        clean = clean.filter(~pl.col("row").is_in([p.row for p in outside]))
    records, duplicates = keep_latest(clean.to_dicts())
    kept = clean.filter(pl.col("row").is_in([r["row"] for r in records]))
    late = row_problems(clean_schema(), kept, file_name)
    late_rows = {p.row for p in late}
    return Validated([r for r in records if r["row"] not in late_rows],
                     sorted(problems + late, key=lambda p: (p.row, p.column)), duplicates)


def response_totals(conn: Connection, cluster: str) -> tuple[int, int]:
    """(households issued, households responded) over all waves."""
    rates = rows(conn, "survey_response_rates", {"cluster_id": cluster})
    return sum(int(r["issued"]) for r in rates), sum(int(r["responded"]) for r in rates)


@dataclass(frozen=True)
class Merged:
    """Valid records weighed against the responses already stored."""

    accept: list[dict[str, Any]]
    duplicates: list[dict[str, int | None]]
    already_stored: int


def merge_with_stored(checked: Validated, stored: Mapping[str, str]) -> Merged:
    """Keep a record newer than the stored response; an identical time is already stored."""
    accept: list[dict[str, Any]] = []
    duplicates = list(checked.duplicates)
    same = 0
    for record in checked.records:
        before = stored.get(record["token"])
        if before is None or before < record["submitted_at"]:
            accept.append(record)
            if before is not None:
                duplicates.append({"dropped_row": None, "kept_row": record["row"]})
        elif before == record["submitted_at"]:
            same += 1
        else:
            duplicates.append({"dropped_row": record["row"], "kept_row": None})
    return Merged(accept, sorted(duplicates, key=lambda d: (d["dropped_row"] or 0, d["kept_row"] or 0)),
                  same)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputRejected(f"cannot be read ({exc.strerror})", file=path.name) from None


def _imported_before(conn: Connection, settings: Settings, sha: str, file_name: str) -> ImportResult | None:
    """The ``duplicate`` result when this file was imported before, else None."""
    cluster = settings.study.cluster
    seen = rows(conn, "survey_import_get", {"cluster_id": cluster, "sha256": sha})
    if not seen:
        return None
    issued, responded = response_totals(conn, cluster)
    s = seen[0]
    return ImportResult("duplicate", sha, file_name, int(s["rows_read"]), int(s["accepted"]),
                        int(s["quarantined"]), issued=issued, responded=responded,
                        target_respondents=settings.survey.target_respondents)


def _store(conn: Connection, cluster: str, sha: str, accept: Sequence[Mapping[str, Any]],
           problems: Sequence[RowProblem]) -> None:
    """Replace the stored responses of accepted tokens; quarantine failing rows (no values)."""
    if accept:
        conn.execute(query("survey_response_delete"),
                     [{"cluster_id": cluster, "token": r["token"]} for r in accept])
        conn.execute(query("survey_response_insert"), [
            {**{k: v for k, v in r.items() if k != "row"}, "cluster_id": cluster,
             "import_sha256": sha} for r in accept])
    if problems:
        conn.execute(query("survey_quarantine_insert"), [
            {"cluster_id": cluster, "source_sha256": sha, "table_name": QUARANTINE_TABLE,
             "row_key": f"row {p.row}", "column_name": p.column, "rule": p.rule,
             "reason": p.reason} for p in problems])


def _import_new(conn: Connection, settings: Settings, data: bytes, sha: str, file_name: str,
                now: datetime, flow_run_id: str | None, checkpoint: Checkpoint | None = None) -> ImportResult:
    """Validate, merge and store a file not seen before; record and audit the import."""
    cluster = settings.study.cluster
    raw = read_export(data, file_name)
    tokens = rows(conn, "survey_issued_tokens", {"cluster_id": cluster})
    window = replace(submission_window(settings, now), invited=invitation_times(conn, cluster))
    checked = validate_export(raw, [t["token"] for t in tokens],
                              [t["token"] for t in tokens if t["withdrawn"]], file_name, window)
    stored = {r["token"]: r["submitted_at"]
              for r in rows(conn, "survey_responses_stored", {"cluster_id": cluster})}
    merged = merge_with_stored(checked, stored)
    _store(conn, cluster, sha, merged.accept, checked.problems)
    quarantined = len({p.row for p in checked.problems})
    conn.execute(query("survey_import_insert"), {
        "cluster_id": cluster, "sha256": sha, "file_name": file_name,
        "imported_at": now.isoformat(), "rows_read": raw.height, "accepted": len(merged.accept),
        "quarantined": quarantined})
    issued, responded = response_totals(conn, cluster)
    append_audit(conn, cluster, "survey_responses_imported", {
        "sha256": sha, "rows": raw.height, "accepted": len(merged.accept),
        "quarantined": quarantined, "duplicates": len(merged.duplicates),
        "already_stored": merged.already_stored}, flow_run_id, now)
    if checkpoint is not None:  # fault-injection tests only: everything written, nothing committed
        checkpoint(f"import-responses:{sha[:12]}:uncommitted")
    return ImportResult("imported", sha, file_name, raw.height, len(merged.accept), quarantined,
                        merged.already_stored, merged.duplicates, checked.problems, issued, responded,
                        settings.survey.target_respondents)


def import_responses(engine: Engine, settings: Settings, path: Path, now: datetime | None = None,
                     flow_run_id: str | None = None, checkpoint: Checkpoint | None = None) -> ImportResult:
    """Import one export file in one transaction; a file seen before changes nothing.

    The file is only read (it stays where it is; nothing is registered under the home): a run
    killed before the commit leaves no response, quarantined row, import record or audit entry,
    and importing the file again is a first import. ``checkpoint`` (tests only) is called
    inside the transaction once everything is written.
    """
    data = _read_file(path)
    sha = hashlib.sha256(data).hexdigest()
    try:
        with engine.begin() as conn:
            before = _imported_before(conn, settings, sha, path.name)
            if before is not None:
                return before
            return _import_new(conn, settings, data, sha, path.name, now or datetime.now(UTC), flow_run_id,
                               checkpoint)
    except IntegrityError:
        # The same file imported by another run at the same moment: nothing more to do.
        with engine.connect() as conn:
            before = _imported_before(conn, settings, sha, path.name)
        if before is None:
            raise
        return before


@dataclass(frozen=True)
class Withdrawal:
    """What a withdrawal deleted (counts only)."""

    status: str
    wave: int
    responses_deleted: int
    contact_deleted: int
    interview_draws_deleted: int

    def as_json(self) -> dict[str, Any]:
        """Counts, no token and no personal data."""
        return {"status": self.status, "wave": self.wave,
                "responses_deleted": self.responses_deleted,
                "contact_deleted": self.contact_deleted,
                "interview_draws_deleted": self.interview_draws_deleted}


def token_digest(token: str) -> str:
    """SHA-256 of a token as typed (trimmed): what the withdraw flow receives instead of the token."""
    return hashlib.sha256(token.strip().encode("utf-8")).hexdigest()


def withdraw_household(engine: Engine, settings: Settings, token_sha256: str,
                       now: datetime | None = None, flow_run_id: str | None = None) -> Withdrawal:
    """Delete a household's responses, interview selection and contact details now; never contact it again."""
    cluster = settings.study.cluster
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        found = [r for r in rows(conn, "survey_issued_tokens", {"cluster_id": cluster})
                 if token_digest(r["token"]) == token_sha256]
        if not found:
            raise UnknownToken("that token was never issued; check it against the fieldwork pack "
                               "or the invitation e-mail")
        key = {"cluster_id": cluster, "token": found[0]["token"]}
        household = rows(conn, "survey_household_by_token", key)[0]
        responses = conn.execute(query("survey_response_delete"), key).rowcount or 0
        draws = conn.execute(query("survey_interview_delete"), key).rowcount or 0
        contact = delete_contact(conn, cluster, household["family_pid"])
        already = household["withdrawn_at"] is not None
        if not already:
            conn.execute(query("survey_household_withdraw"), {**key, "withdrawn_at": now.isoformat()})
        conn.execute(query("survey_do_not_contact_insert"), {
            "cluster_id": cluster, "family_pid": household["family_pid"],
            "reason": WITHDRAWAL_REASON, "marked_at": now.isoformat()})
        append_audit(conn, cluster, "withdrawal", {
            "family_pid": household["family_pid"], "wave": int(household["wave"]),
            "responses_deleted": responses, "contact_deleted": contact,
            "interview_draws_deleted": draws, "repeat": already}, flow_run_id, now)
    return Withdrawal("already_withdrawn" if already else "withdrawn", int(household["wave"]),
                      responses, contact, draws)


def response_rates(conn: Connection, cluster: str) -> list[dict[str, Any]]:
    """Rows wave / stratum / issued / responded / response_rate (a proportion, 3 decimals)."""
    table = [{"wave": int(r["wave"]), "stratum": r["stratum"], "issued": int(r["issued"]),
              "responded": int(r["responded"]),
              "response_rate": round(int(r["responded"]) / int(r["issued"]), 3) if r["issued"] else None}
             for r in rows(conn, "survey_response_rates", {"cluster_id": cluster})]
    return sorted(table, key=lambda r: (r["wave"], r["stratum"]))  # not SQL collation order


def survey_status(conn: Connection, settings: Settings) -> dict[str, Any]:
    """Waves, issued and responded per wave, respondents against the target (for ``status``)."""
    cluster = settings.study.cluster
    rates = response_rates(conn, cluster)
    waves = []
    for w in rows(conn, "survey_waves", {"cluster_id": cluster}):
        mine = [r for r in rates if r["wave"] == int(w["wave"])]
        issued, responded = sum(r["issued"] for r in mine), sum(r["responded"] for r in mine)
        waves.append({"wave": int(w["wave"]), "size": int(w["size"]), "drawn_at": w["drawn_at"],
                      "issued": issued, "responded": responded,
                      "response_rate": round(responded / issued, 3) if issued else None})
    return {"waves": waves, "respondents": sum(w["responded"] for w in waves),
            "target_respondents": settings.survey.target_respondents,
            "interview_draw": len(rows(conn, "survey_interview_draws", {"cluster_id": cluster}))}


def progress_percent(respondents: int, target: int) -> float:
    """Respondents as a percentage of the target, at most 100."""
    return 100.0 if target <= 0 else min(100.0, round(100.0 * respondents / target, 1))


def start_progress(engine: Engine, settings: Settings) -> Any:
    """Create the progress artifact at the current respondents / target."""
    with engine.connect() as conn:
        _, responded = response_totals(conn, settings.study.cluster)
    target = settings.survey.target_respondents
    return create_progress_artifact(
        progress_percent(responded, target), key=artifact_key(settings.study.cluster, "survey-progress"),
        description=f"Respondents towards the target of {target}: {responded} before this import ({FIELDWORK_COUNTS})")


def finish_progress(artifact_id: Any, result: ImportResult) -> None:
    """Move the progress artifact to the respondents after the import."""
    update_progress_artifact(
        artifact_id, progress_percent(result.responded, result.target_respondents),
        description=f"Respondents towards the target of {result.target_respondents}: "
                    f"{result.responded} of {result.issued} households issued ({FIELDWORK_COUNTS})")


def publish_response_rates(engine: Engine, settings: Settings) -> None:
    """Table artifact: issued, responded and rate by wave and stratum."""
    with engine.connect() as conn:
        table = response_rates(conn, settings.study.cluster)
    create_table_artifact(table, key=artifact_key(settings.study.cluster, "survey-response-rates"),
                          description="Survey issued, responded and response rate by wave and stratum: "
                                      + FIELDWORK_COUNTS)

