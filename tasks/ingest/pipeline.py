"""The ingest pipeline, stage by stage, as plain functions (the ingest flow runs each as a task).

Stages, in order: ``check archive`` (SHA-256 of the encrypted file, ``.sha256`` sidecar, already
ingested?), ``decrypt`` (in memory, hostile-archive checks: tasks.core.archive), ``read``
(tasks.ingest.reader), ``validate`` (tasks.ingest.validate, then the bad-row limit), ``pseudonymise``,
``transform`` (derived fields), ``load`` (one transaction: tasks.ingest.load), then ``report`` (the
data-quality CSV). A rejected file goes through ``quarantine`` instead of ``load``.

``ingest_file`` is the one pipeline: it takes a ``stage`` runner that calls each stage
function, directly (tests, benchmarks) or as a named Prefect task (the flow, through
``tasks.ingest.steps.run_stage_as_task``). Errors are data:
a stage that refuses the input raises ``InputRejected``; the pipeline turns it into a
``rejected`` outcome, moves the file to quarantine and still writes the report. Any other error
inside a data stage is reported by its class name only (its message could quote a value).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

import polars as pl
from sqlalchemy import Engine

from schemas.codes import TABLES
from tasks.core.archive import ArchiveLimits, Extract, decrypt_extract, verify_sidecar
from tasks.core.archive import sha256_bytes as sha256_of
from tasks.core.csvsafe import neutralise
from tasks.core.errors import InputRejected, SecretMissing, UserFacingError
from tasks.core.home import FILE_MODE, Home, write_private
from tasks.core.runtime import Runtime
from tasks.core.secrets import CONTACT_KEY, EXTRACT_PASSPHRASE, PSEUDONYM_KEY, Secrets
from tasks.core.settings import IngestSettings
from tasks.ingest.load import (
    ExtractFile,
    MoveFailed,
    extract_exists,
    keep_raw_files,
    load_extract,
    stored_population,
    undo_moves,
)
from tasks.ingest.pseudonymise import PseudonymisedTables, pseudonymise_tables
from tasks.ingest.reader import RawTables, read_tables
from tasks.ingest.transform import AnalysisTables, Population, derive_tables
from tasks.ingest.validate import ValidatedTables, validate_tables

P = ParamSpec("P")
T = TypeVar("T")
Status = Literal["ingested", "duplicate", "rejected"]
MIB = 1024 * 1024
REPORT_COLUMNS = ("section", "table", "column", "rule", "count")
FAILURE_GROUP = ("table", "column", "rule")
QUALITY_FOLDER = "data-quality"
QUARANTINED = "; the file was quarantined, please report this"
LEFT_IN_PLACE = "; the file was left in place"  # the end of a rejection that moved nothing


class StageRunner(Protocol):
    """Runs one named stage function (directly, or as a Prefect task)."""

    def __call__(self, name: str, fn: Callable[P, T], /,
                 *args: P.args, **kwargs: P.kwargs) -> T: ...


def run_stage(name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a stage function directly (no orchestration)."""
    return fn(*args, **kwargs)


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class IngestSecrets:
    """Secrets of one ingest, read by the wiring layer and passed in (never flow parameters)."""

    passphrase: str | None = field(repr=False)
    identity: str | None = field(repr=False)
    pseudonym_key: bytes = field(repr=False)
    contact_key: bytes = field(repr=False)
    created: tuple[str, ...] = ()  # names of keys created by this run


def load_ingest_secrets(secrets: Secrets) -> IngestSecrets:
    """Extract passphrase, age identity and both keys (created 0600 on first use)."""
    pseudonym_key, new_pid = secrets.key_or_create(PSEUDONYM_KEY)
    contact_key, new_contact = secrets.key_or_create(CONTACT_KEY)
    created = tuple(name for name, new in ((PSEUDONYM_KEY, new_pid), (CONTACT_KEY, new_contact))
                    if new)
    return IngestSecrets(
        passphrase=secrets.get(EXTRACT_PASSPHRASE),
        identity=secrets.age_identity(),
        pseudonym_key=pseudonym_key,
        contact_key=contact_key,
        created=created,
    )


def archive_limits(ingest: IngestSettings) -> ArchiveLimits:
    """Archive limits from the ``[ingest]`` settings."""
    return ArchiveLimits(max_members=ingest.max_members, max_total_bytes=ingest.max_total_mb * MIB,
                         max_ratio=ingest.max_ratio)


# --------------------------------------------------------------------------- outcome


@dataclass(frozen=True)
class TableCounts:
    """Rows read, loaded and quarantined of one table."""

    rows: int = 0
    loaded: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class QualityReport:
    """The data-quality report of one extract: counts only, never values."""

    frame: pl.DataFrame = field(repr=False)
    markdown: str = field(repr=False)
    path: Path | None = None


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one file; ``to_json`` is the cli.md ``ingest --json`` object."""

    status: Status
    sha256: str | None
    error: str | None
    tables: dict[str, TableCounts]
    population: Population
    kept_at: Path | None = None  # HOME/raw/... or HOME/quarantine/...
    report: QualityReport | None = None

    def to_json(self) -> dict[str, Any]:
        """The exact ``ingest --json`` shape."""
        return {
            "status": self.status,
            "sha256": self.sha256,
            "error": self.error,
            "tables": {t: {"rows": c.rows, "loaded": c.loaded, "quarantined": c.quarantined}
                       for t, c in self.tables.items()},
            "population": {"families": self.population.families,
                           "episodes": self.population.episodes},
        }


NO_POPULATION = Population(families=0, episodes=0)


def _zero_tables() -> dict[str, TableCounts]:
    return {table: TableCounts() for table in TABLES}


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class CheckedFile:
    """The encrypted file's bytes and SHA-256, whether it was ingested before, or why not."""

    path: Path
    sha256: str
    data: bytes = field(default=b"", repr=False)
    duplicate: bool = False
    refusal: InputRejected | None = None


def check_archive(path: Path, engine: Engine, cluster: str, limits: ArchiveLimits) -> CheckedFile:
    """Read and hash the encrypted file once; check size, sidecar and an earlier ingest."""
    if path.stat().st_size > limits.max_total_bytes:
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        return CheckedFile(path=path, sha256=digest, refusal=InputRejected(
            f"the file is larger than {limits.max_total_bytes // MIB} MB, which is over the "
            "limit; send only the tables the specification asks for", file=path.name))
    data = path.read_bytes()
    checked = CheckedFile(path=path, sha256=sha256_of(data), data=data)
    try:
        verify_sidecar(path, checked.sha256)
    except InputRejected as exc:
        return replace(checked, refusal=exc)
    with engine.connect() as conn:
        return replace(checked, duplicate=extract_exists(conn, cluster, checked.sha256))


def decrypt(checked: CheckedFile, secrets: IngestSecrets, limits: ArchiveLimits) -> Extract:
    """Decrypt the file's bytes in memory, refusing unsafe archives (tasks.core.archive)."""
    return decrypt_extract(checked.data, checked.path.name, passphrase=secrets.passphrase,
                           identity=secrets.identity, limits=limits)


def read(extract: Extract, file_name: str) -> RawTables:
    """Read the members into one raw frame per table (tasks.ingest.reader), consuming them."""
    return read_tables(extract.members, file_name, consume=True)


def validate(raw: RawTables, window_start: date, window_end: date) -> ValidatedTables:
    """Validate every table lazily; failures are collected as data (tasks.ingest.validate).

    The raw frames are consumed (dropped as they are typed): only counts and extra columns remain.
    """
    return validate_tables(raw, window_start=window_start, window_end=window_end, consume=True)


def check_bad_rows(validated: ValidatedTables, max_fraction: float, file_name: str) -> None:
    """Reject the extract when any table has more than ``max_fraction`` of its rows quarantined."""
    for table in TABLES:
        rows = validated.rows_read.get(table, 0)
        bad = validated.quarantined.get(table, 0)
        if rows and bad / rows > max_fraction:
            raise InputRejected(
                f"{100 * bad / rows:.1f}% of rows failed validation (limit "
                f"{100 * max_fraction:g}%); see the data-quality report",
                file=file_name, table=table,
            )


def pseudonymise(validated: ValidatedTables, key: bytes, cluster: str) -> PseudonymisedTables:
    """Replace source ids by keyed pseudonyms; split contact details off the families.

    The validated tables are consumed (each dropped once pseudonymised).
    """
    return pseudonymise_tables(validated.tables, validated.failures, key, cluster, consume=True)


def transform(pseudonymised: PseudonymisedTables, window_start: date, window_end: date
              ) -> AnalysisTables:
    """Derive the analysis fields (tasks.ingest.transform)."""
    return derive_tables(pseudonymised.tables, window_start, window_end)


def load(engine: Engine, cluster: str, extract: ExtractFile, analysis: AnalysisTables,
         pseudonymised: PseudonymisedTables, contact_key: bytes, counts: dict[str, TableCounts],
         flow_run_id: str | None) -> bool:
    """Load in one transaction (tasks.ingest.load); False when a concurrent run ingested it first."""
    audit: dict[str, int | str] = {"sha256": extract.sha256, "encryption": extract.encryption,
                                   "population_families": analysis.population.families,
                                   "population_episodes": analysis.population.episodes}
    for table, c in counts.items():
        audit[f"{table}_loaded"] = c.loaded
        audit[f"{table}_quarantined"] = c.quarantined
    return load_extract(engine, cluster, extract, analysis, pseudonymised.contacts, contact_key,
                        pseudonymised.failures, audit, flow_run_id)


def quarantine(path: Path, home: Home, reason: str, at: datetime) -> Path | None:
    """Move a rejected file (and sidecar) to HOME/quarantine, 0600, with a reason file (no values).

    A symbolic link is never moved (nor followed): ``ingest_file`` refuses links before this.
    """
    if not path.is_file() or path.is_symlink():  # e.g. a concurrent run already moved it
        return None
    target = home.quarantine / f"{at.strftime('%Y%m%dT%H%M%S%fZ')}-{path.name}"
    sidecar = path.with_name(path.name + ".sha256")
    moves = [(path, target)]
    if sidecar.is_file() and not sidecar.is_symlink():
        moves.append((sidecar, target.with_name(target.name + ".sha256")))
    try:
        done = keep_raw_files(moves, FILE_MODE)
        try:
            write_private(target.with_name(target.name + ".reason.txt"), (reason + "\n").encode("utf-8"))
        except OSError:
            undo_moves(done)
            raise
    except OSError as exc:  # e.g. a full disk: nothing is left in quarantine, the file stays where it was
        raise MoveFailed(f"the rejected file could not be moved into {home.quarantine} ({exc.strerror})"
                         ) from None
    return target


# --------------------------------------------------------------------------- report


def quality_frame(counts: Mapping[str, TableCounts], raw: RawTables | None,
                  failures: pl.DataFrame | None, outside_window: Mapping[str, int]) -> pl.DataFrame:
    """The report as one long table: section, table, column, rule, count (counts only)."""
    rows: list[dict[str, Any]] = []
    for table, c in counts.items():
        rows.append({"section": "rows_read", "table": table, "count": c.rows})
        rows.append({"section": "rows_loaded", "table": table, "count": c.loaded})
        rows.append({"section": "rows_quarantined", "table": table, "count": c.quarantined})
    if failures is not None and not failures.is_empty():
        grouped = (failures.group_by(FAILURE_GROUP).agg(pl.len().alias("count"))
                   .sort(FAILURE_GROUP))
        for row in grouped.iter_rows(named=True):
            rows.append({"section": "failures", **row})
    if raw is not None:
        for table, columns in raw.extra_columns.items():
            for column in columns:
                rows.append({"section": "extra_column_ignored", "table": table, "column": column,
                             "count": 1})
    for table, n in outside_window.items():
        rows.append({"section": "outside_window", "table": table, "count": n})
    schema = {"section": pl.String, "table": pl.String, "column": pl.String, "rule": pl.String,
              "count": pl.Int64}
    return pl.DataFrame([{c: r.get(c) for c in REPORT_COLUMNS} for r in rows], schema=schema)


def quality_markdown(outcome: IngestOutcome, frame: pl.DataFrame) -> str:
    """A short markdown summary of the report for the Prefect UI (counts only)."""
    lines = [f"# Data quality: extract {(outcome.sha256 or 'unknown')[:12]}", "",
             f"**Status:** {outcome.status}"]
    if outcome.error:
        lines.append(f"**Error:** {outcome.error}")
    lines += ["", "| table | rows | loaded | quarantined |", "|---|---:|---:|---:|"]
    lines += [f"| {t} | {c.rows} | {c.loaded} | {c.quarantined} |"
              for t, c in outcome.tables.items()]
    lines += ["", f"Study population: {outcome.population.families} families, "
              f"{outcome.population.episodes} episodes in the window."]
    failures = frame.filter(pl.col("section") == "failures")
    if not failures.is_empty():
        lines += ["", "| table | column | rule | failures |", "|---|---|---|---:|"]
        lines += [f"| {r['table']} | {r['column']} | {r['rule']} | {r['count']} |"
                  for r in failures.iter_rows(named=True)]
    for section, title in (("extra_column_ignored", "Extra columns ignored"),
                           ("outside_window", "Records outside the window")):
        part = frame.filter(pl.col("section") == section)
        if not part.is_empty():
            items = ", ".join(f"{r['table']}.{r['column']}" if r["column"] else
                              f"{r['table']}: {r['count']}" for r in part.iter_rows(named=True))
            lines += ["", f"{title}: {items}"]
    return "\n".join(lines) + "\n"


def write_quality_report(outcome: IngestOutcome, raw: RawTables | None,
                         failures: pl.DataFrame | None, outside_window: Mapping[str, int],
                         home: Home) -> QualityReport:
    """Write HOME/outputs/data-quality/<sha256[:12]>.csv (0600) and return the report."""
    frame = quality_frame(outcome.tables, raw, failures, outside_window)
    path = None
    if outcome.sha256:
        path = home.outputs / QUALITY_FOLDER / f"{outcome.sha256[:12]}.csv"
        safe = frame.with_columns(pl.col(pl.String).map_elements(neutralise, return_dtype=pl.String))
        write_private(path, safe.write_csv().encode("utf-8"))  # extra headers are echoed: formula-safe
    return QualityReport(frame=frame, markdown=quality_markdown(outcome, frame), path=path)


# --------------------------------------------------------------------------- pipeline


def _guarded(stage: str, fn: Callable[P, T], error: Callable[[str], UserFacingError]
             ) -> Callable[P, T]:
    """Report an unexpected error by its class name only (the message could quote a value)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (UserFacingError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 panics (polars, fastexcel) derive from BaseException
            name = type(exc).__name__
            raise error(f"the {stage} stage stopped on an unexpected {name}") from None

    return run


@dataclass
class _Progress:
    raw: RawTables | None = None
    validated: ValidatedTables | None = None
    failures: pl.DataFrame | None = None
    outside_window: dict[str, int] = field(default_factory=dict)

    def counts(self, loaded: AnalysisTables | None) -> dict[str, TableCounts]:
        counts = _zero_tables()
        source = self.validated or self.raw
        if source is None:
            return counts
        for table in TABLES:
            rows = source.rows_read.get(table, 0)
            bad = self.validated.quarantined.get(table, 0) if self.validated else 0
            done = loaded.tables[table].height if loaded is not None else 0
            counts[table] = TableCounts(rows=rows, loaded=done, quarantined=bad)
        return counts


def _duplicate(runtime: Runtime, sha256: str) -> IngestOutcome:
    with runtime.engine.connect() as conn:
        families, episodes = stored_population(conn, runtime.cluster)
    return IngestOutcome("duplicate", sha256, None, _zero_tables(), Population(families, episodes))


def ingest_file(path: Path, runtime: Runtime, secrets: IngestSecrets, *,
                stage: StageRunner = run_stage, flow_run_id: str | None = None) -> IngestOutcome:
    """Run the whole pipeline on one encrypted file; bad input gives a ``rejected`` outcome.

    A duplicate (this cluster already ingested these bytes) reads nothing and changes nothing;
    its ``population`` is the study population now in the store.
    """
    path = Path(path)
    cluster, settings, home = runtime.cluster, runtime.settings, runtime.home
    window = (settings.study.window_start, settings.study.window_end)
    limits = archive_limits(settings.ingest)
    name = path.name

    def rejected(message: str) -> InputRejected:
        return InputRejected(f"{message}{QUARANTINED}", file=name)

    def failed(message: str) -> UserFacingError:
        return UserFacingError(f"file {name}: {message}; nothing was stored")

    def unfinished(message: str) -> UserFacingError:
        return UserFacingError(f"file {name}: {message}; check the folder {home.root}")

    if path.is_symlink():
        return IngestOutcome("rejected", None, f"file {path} is a symbolic link; ingest refuses "
                             "links, give the path of the extract itself", _zero_tables(),
                             NO_POPULATION)
    if not path.is_file():
        return IngestOutcome("rejected", None, f"file {path} does not exist or is not a file; "
                             "check the path", _zero_tables(), NO_POPULATION)
    # Folders on the way may be links: resolved, so the real file is what moves into the home.
    path = path.parent.resolve() / path.name
    progress = _Progress()
    checked: CheckedFile | None = None
    try:
        checked = stage("check archive", _guarded("check archive", check_archive, failed),
                        path, runtime.engine, cluster, limits)
        if checked.refusal is not None:
            raise checked.refusal
        if checked.duplicate:
            return _duplicate(runtime, checked.sha256)
        # Each stage's input is dropped once the next stage has what it needs: memory is bounded
        # by the largest step, not the sum of copies (tables share their column buffers).
        extract = stage("decrypt", _guarded("decrypt", decrypt, rejected), checked, secrets, limits)
        checked = replace(checked, data=b"")  # the encrypted bytes are not needed any more
        encryption = extract.encryption
        raw = stage("read", _guarded("read", read, rejected), extract, name)
        del extract  # the plaintext members are not needed any more
        progress.raw = replace(raw, frames={})  # the report needs counts and extra columns only
        validated = stage("validate", _guarded("validate", validate, rejected), raw, *window)
        del raw
        progress.validated = replace(validated, tables={}, failures=validated.failures.clear())
        progress.failures = validated.failures.select(FAILURE_GROUP)  # no row keys
        check_bad_rows(validated, settings.ingest.max_bad_row_fraction, name)
        pseudonymised = stage("pseudonymise", _guarded("pseudonymise", pseudonymise, rejected),
                              validated, secrets.pseudonym_key, cluster)
        del validated
        analysis = stage("transform", _guarded("transform", transform, rejected),
                         pseudonymised, *window)
        pseudonymised = replace(pseudonymised, tables={})  # the load needs contacts and failures
        progress.outside_window = analysis.outside_window
        counts = progress.counts(analysis)
        target = ExtractFile(source=path, raw_path=home.raw / f"{checked.sha256[:12]}-{name}",
                             sha256=checked.sha256, encryption=encryption)
        loaded = stage("load", _guarded("load", load, failed), runtime.engine, cluster, target,
                       analysis, pseudonymised, secrets.contact_key, counts, flow_run_id)
    except SecretMissing as exc:  # a setup mistake, not a bad file: leave the file where it is
        outcome = IngestOutcome("rejected", checked.sha256 if checked else None, f"{exc}{LEFT_IN_PLACE}",
                                progress.counts(None), NO_POPULATION)
    except MoveFailed as exc:  # e.g. a full disk: nothing was stored, nothing is left in HOME/raw
        outcome = IngestOutcome("rejected", checked.sha256 if checked else None,
                                f"file {name}: {exc}{LEFT_IN_PLACE}", progress.counts(None), NO_POPULATION)
    except InputRejected as exc:
        error = str(exc)
        try:
            kept = stage("quarantine", _guarded("quarantine", quarantine, unfinished), path, home,
                         error, datetime.now(UTC))
        except MoveFailed as move:
            error, kept = f"{error.removesuffix(QUARANTINED)}; {move}{LEFT_IN_PLACE}", None
        outcome = IngestOutcome("rejected", checked.sha256 if checked else None, error,
                                progress.counts(None), NO_POPULATION, kept_at=kept)
    else:
        if not loaded:
            return _duplicate(runtime, checked.sha256)
        outcome = IngestOutcome("ingested", checked.sha256, None, counts, analysis.population,
                                kept_at=target.raw_path)
    report = stage("report", _guarded("report", write_quality_report, unfinished), outcome,
                   progress.raw, progress.failures, progress.outside_window, home)
    return replace(outcome, report=report)
