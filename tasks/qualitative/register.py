"""``participants import FILE``: the encrypted participants register (qualitative-v1.md §1).

Stages: read the encrypted file (size limit, optional ``.sha256`` sidecar, delivered before?),
decrypt in memory with the extract's archive safety and secrets, read ``participants.csv`` or
the workbook sheet ``participants``, validate (``schemas.qualitative``: every rule, then the
survey tokens against this cluster's issued tokens and interview opt-ins, then the stored
transcripts), and store in ONE transaction: the register replaced (same participant_id = same
person), names sealed under ``participant_key``, withdrawn participants without names, the
encrypted delivery kept under ``HOME/raw/qualitative``, audited with counts only.

A register that breaks any rule is rejected as a whole: one line naming the participant_id (or
row), column and rule of the first problem, never a value; the file goes to quarantine with a
reason file and nothing is stored. The delivered file name is never stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import fastexcel
import polars as pl
from sqlalchemy import Connection, text

from schemas.qualitative import (
    CODE_COLUMNS,
    COLUMNS,
    FAMILY,
    PARTICIPANT_ID,
    PRACTITIONER_LABEL,
    REQUIRED_COLUMNS,
    ROW,
    Failure,
    other_names,
    register_failures,
    to_clean,
)
from tasks.core.archive import ArchiveLimits, Extract, decrypt_extract, sha256_bytes, verify_sidecar
from tasks.core.audit import append_audit
from tasks.core.db import query, rows
from tasks.core.errors import ConfigError, InputRejected, SecretMissing, UserFacingError
from tasks.core.home import write_private
from tasks.core.runtime import Runtime
from tasks.core.secrets import EXTRACT_PASSPHRASE, PARTICIPANT_KEY
from tasks.ingest.pipeline import MIB, archive_limits, quarantine
from tasks.ingest.reader import detect_encoding, normalise_header
from tasks.qualitative.model import Names, Participant, key_id, load_participants
from tasks.qualitative.withdraw import record_withdrawal, withdraw_in_store

T = TypeVar("T")
KIND = "register"
RAW_CATEGORY = "raw_register"
MEMBER_CSV = "participants.csv"
SHEET = "participants"
FIRST_ROW = 2  # the header is row 1
_EXCEL_DATETIME = r"^(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?$"


@dataclass(frozen=True)
class RegisterResult:
    """What ``participants import`` did (counts only)."""

    status: str  # imported | duplicate
    sha256: str
    participants: int
    sessions: int
    families: int
    practitioners: int
    withdrawn: int

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "sha256": self.sha256, "participants": self.participants,
                "sessions": self.sessions, "families": self.families,
                "practitioners": self.practitioners, "withdrawn": self.withdrawn}


@dataclass(frozen=True)
class Delivery:
    """The encrypted file's bytes and SHA-256 (bytes never shown)."""

    path: Path
    sha256: str
    data: bytes = field(repr=False)


# --------------------------------------------------------------------------- reading


def read_delivery(path: Path, max_bytes: int) -> Delivery:
    """Read and hash the encrypted file; refuse one over the size limit or a wrong sidecar."""
    if path.stat().st_size > max_bytes:
        raise InputRejected(f"the file is larger than {max_bytes // MIB} MB, which is over the limit",
                            file=path.name)
    data = path.read_bytes()
    digest = sha256_bytes(data)
    verify_sidecar(path, digest)
    return Delivery(path, digest, data)


def read_register(members: Mapping[str, bytes], file_name: str) -> pl.DataFrame:
    """The register as text columns (``schemas.qualitative.COLUMNS``) plus the row number."""
    wrong = InputRejected(f"the archive must hold one file only: {MEMBER_CSV}, or a workbook (.xlsx) "
                          f"with a sheet named {SHEET}", file=file_name)
    if len(members) != 1:
        raise wrong
    name, data = next(iter(members.items()))
    if name.lower() == MEMBER_CSV:
        grid = _csv_grid(data, file_name)
    elif name.lower().endswith(".xlsx"):
        grid = _sheet_grid(data, file_name)
    else:
        raise wrong
    return _frame(grid, file_name)


def _csv_grid(data: bytes, file_name: str) -> pl.DataFrame:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise InputRejected("the CSV is UTF-16 or binary; save it as CSV (UTF-8 or Windows)",
                            file=file_name)
    encoding = detect_encoding(data)
    try:
        utf8 = data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        raise InputRejected("the CSV is neither UTF-8 nor Windows-1252 text", file=file_name) from None
    if not utf8.strip():
        raise InputRejected("the CSV is empty: it needs a header row", file=file_name)
    try:
        return pl.read_csv(utf8, has_header=False, infer_schema=False, truncate_ragged_lines=False)
    except Exception:  # polars' messages can quote cell text: never pass them on
        raise InputRejected("the CSV cannot be read: it must be comma separated, quoted with \", one "
                            "header row and no row longer than the header", file=file_name) from None


def _sheet_grid(data: bytes, file_name: str) -> pl.DataFrame:
    try:
        workbook = fastexcel.read_excel(data)
        sheets = list(workbook.sheet_names)
    except Exception:  # calamine's messages may quote content
        raise InputRejected("the workbook cannot be opened; check it is a valid .xlsx file",
                            file=file_name) from None
    if SHEET not in sheets:
        raise InputRejected(f"the workbook has no sheet named exactly {SHEET}", file=file_name)
    try:
        grid = workbook.load_sheet_by_name(SHEET, header_row=None, dtypes="string").to_polars()
    except Exception:
        raise InputRejected(f"the sheet {SHEET} cannot be read", file=file_name) from None
    return grid.with_columns(
        pl.col(c).str.strip_chars().str.replace(_EXCEL_DATETIME, "${1}") for c in grid.columns)


def _frame(grid: pl.DataFrame, file_name: str) -> pl.DataFrame:
    """Match the header (case, spaces and underscores ignored), keep the spec columns, clean cells."""
    if grid.height == 0:
        raise InputRejected("the register has no header row", file=file_name)
    positions: dict[str, str] = {}
    for source, cell in zip(grid.columns, grid.row(0), strict=True):
        name = normalise_header(str(cell or ""))
        if not name:
            continue
        if name in positions:
            raise InputRejected(f"two columns are both named {name} (after ignoring case, spaces and "
                                "underscores); remove one", file=file_name, column=name)
        positions[name] = source
    for column in REQUIRED_COLUMNS:
        if column not in positions:
            raise InputRejected("required column is missing", file=file_name, column=column)
    body = grid.slice(1).with_row_index(ROW, offset=FIRST_ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    cells = [(pl.col(positions[c]).cast(pl.String).str.strip_chars().replace("", None)
              if c in positions else pl.lit(None, dtype=pl.String)).alias(c) for c in COLUMNS]
    frame = body.select(pl.col(ROW), *cells)
    frame = frame.with_columns(pl.col(c).str.to_lowercase() for c in CODE_COLUMNS)
    frame = frame.filter(~pl.all_horizontal(pl.col(c).is_null() for c in COLUMNS))
    if frame.height == 0:
        raise InputRejected("the register has no participant rows; it would replace the register with "
                            "nothing", file=file_name)
    return frame


# --------------------------------------------------------------------------- validating


@dataclass(frozen=True)
class StoredState:
    """What the register is checked against: this cluster's survey tokens, transcripts, withdrawals."""

    issued: set[str]  # every survey token issued in this cluster
    opted_in: set[str]  # tokens whose response opted in to an interview (household not withdrawn)
    spoken: dict[str, set[str]]  # participant_id -> sessions with stored transcript turns
    withdrawn: dict[str, str]  # participant_id -> withdrawn_at


def stored_state(conn: Connection, cluster: str) -> StoredState:
    """Read what the register is checked against (before any validation)."""
    issued = {r.token for r in conn.execute(text("SELECT token FROM households WHERE cluster_id = :c"),
                                           {"c": cluster})}
    opted_in = {r["token"] for r in rows(conn, "survey_interview_candidates", {"cluster_id": cluster})}
    return StoredState(issued, opted_in, _spoken(conn, cluster), _withdrawals(conn, cluster))


def _shown_id(pid: str | None) -> str | None:
    """The participant_id when it has the id's shape (a malformed one may hold a name): else None."""
    return pid if pid is not None and re.fullmatch(PARTICIPANT_ID, pid) else None


def token_failures(frame: pl.DataFrame, state: StoredState) -> list[Failure]:
    """Family rows whose survey token was not issued here, or whose household did not opt in.

    Withdrawn participants are not checked: their token is never stored (and a household that
    also left the survey has no response any more).
    """
    found = []
    for row, pid, strand, token, gone in frame.select(
            ROW, "participant_id", "strand", "survey_token", "withdrawn_date").iter_rows():
        if token is None or strand != FAMILY or gone is not None or pid in state.withdrawn:
            continue
        if token not in state.issued:
            found.append(Failure(row, _shown_id(pid), "survey_token", "issued_token",
                                 "not a survey token issued in this cluster"))
        elif token not in state.opted_in:
            found.append(Failure(row, _shown_id(pid), "survey_token", "interview_opt_in",
                                 "the household's survey response did not opt in to an interview"))
    return found


def session_failures(frame: pl.DataFrame, state: StoredState) -> list[Failure]:
    """Participants moved away from the session their stored transcript turns belong to."""
    found = []
    for row, pid, session in frame.select(ROW, "participant_id", "session_id").iter_rows():
        if pid in state.spoken and state.spoken[pid] != {session}:
            found.append(Failure(row, _shown_id(pid), "session_id", "stored_session",
                                 "differs from the session of this participant's stored transcript"))
    return found


def failure_message(failures: Sequence[Failure]) -> tuple[str, str]:
    """(column, one line) for the first failure, ordered by row; values are never quoted."""
    first = failures[0]
    who = (f"participant {first.participant_id} (row {first.row})" if first.participant_id
           else f"row {first.row} (no valid participant_id)")
    more = f"; {len(failures) - 1} more problem(s) in the register" if len(failures) > 1 else ""
    return first.column, f"{who} breaks the rule {first.rule}: {first.reason}{more}"


def _spoken(conn: Connection, cluster: str) -> dict[str, set[str]]:
    """participant_id -> sessions in which they have stored transcript turns."""
    found: dict[str, set[str]] = {}
    for pid, session in conn.execute(text(
            "SELECT DISTINCT participant_id, session_id FROM qual_turns"
            " WHERE cluster_id = :c AND participant_id IS NOT NULL"), {"c": cluster}):
        found.setdefault(pid, set()).add(session)
    return found


def _withdrawals(conn: Connection, cluster: str) -> dict[str, str]:
    return {r.participant_id: str(r.withdrawn_at) for r in conn.execute(text(
        "SELECT participant_id, withdrawn_at FROM qual_withdrawals WHERE cluster_id = :c"), {"c": cluster})}


def validate_register(frame: pl.DataFrame, state: StoredState, file_name: str) -> list[dict[str, Any]]:
    """Every rule of the register; the typed records, or InputRejected for the first failure."""
    failures = register_failures(frame) + token_failures(frame, state) + session_failures(frame, state)
    if failures:
        order = {c: i for i, c in enumerate(COLUMNS)}
        failures.sort(key=lambda f: (f.row, order.get(f.column, len(order)), f.rule))
        column, message = failure_message(failures)
        raise InputRejected(message, file=file_name, column=column)
    listed = set(frame.get_column("participant_id").to_list())
    missing = sorted(pid for pid in state.spoken if pid not in listed and pid not in state.withdrawn)
    if missing:
        raise InputRejected(
            f"participant {missing[0]} speaks in stored transcripts but is not in the new register; "
            f"keep their row, or withdraw them with: cluster-eval participants withdraw {missing[0]}",
            file=file_name, column="participant_id")
    return to_clean(frame)


# --------------------------------------------------------------------------- storing


def display_names(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The pseudonym, or "Practitioner N" (N = 1.. in participant_id order among those without one)."""
    shown: dict[str, str] = {}
    number = 0
    for record in sorted(records, key=lambda r: str(r["participant_id"])):
        pseudonym = record["chosen_pseudonym"]
        if pseudonym:
            shown[record["participant_id"]] = " ".join(str(pseudonym).split())
        else:
            number += 1
            shown[record["participant_id"]] = f"{PRACTITIONER_LABEL} {number}"
    return shown


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def register_counts(conn: Connection, cluster: str) -> dict[str, int]:
    """The stored register in counts."""
    found = rows(conn, "qual_register_counts", {"cluster_id": cluster})[0]
    return {k: int(v or 0) for k, v in found.items()}


def _delivered(conn: Connection, cluster: str, sha256: str) -> bool:
    return conn.execute(text("SELECT 1 FROM qual_deliveries WHERE cluster_id = :c AND sha256 = :s"
                             " AND kind = :k"), {"c": cluster, "s": sha256, "k": KIND}).first() is not None


def _participant_rows(records: Sequence[Mapping[str, Any]], cluster: str, sha256: str,
                      withdrawn: Mapping[str, str], names_key: bytes | None) -> list[dict[str, Any]]:
    shown = display_names(records)
    out = []
    for r in records:
        pid = r["participant_id"]
        gone = r["withdrawn_date"] is not None or pid in withdrawn
        sealed: tuple[str | None, str | None, str | None] = (None, None, None)
        if not gone:
            assert names_key is not None
            names = Names(full_name=" ".join(str(r["full_name"]).split()),
                          other_names=other_names(r["other_names"]))
            nonce, ciphertext = names.seal(names_key, cluster, pid)
            sealed = (key_id(names_key), nonce, ciphertext)
        withdrawn_day = _iso(r["withdrawn_date"]) or (withdrawn[pid][:10] if pid in withdrawn else None)
        out.append({
            "cluster_id": cluster, "participant_id": pid, "strand": r["strand"],
            "session_id": r["session_id"], "session_date": _iso(r["session_date"]), "role": r["role"],
            "survey_token": None if gone else r["survey_token"], "pseudonym": r["chosen_pseudonym"],
            "display_name": shown[pid], "consent_form_version": r["consent_form_version"],
            "info_sheet_version": r["info_sheet_version"], "consent_date": _iso(r["consent_date"]),
            "consent_recording": bool(r["consent_recording"]), "consent_quotes": bool(r["consent_quotes"]),
            "withdrawn_date": withdrawn_day, "names_key_id": sealed[0], "names_nonce": sealed[1],
            "names_ciphertext": sealed[2], "register_sha256": sha256,
        })
    return out


def store_register(rt: Runtime, delivery: Delivery, records: Sequence[Mapping[str, Any]],
                   encryption: str, flow_run_id: str | None) -> RegisterResult:
    """Replace the register, record withdrawals, keep the encrypted delivery: one transaction."""
    cluster = rt.cluster
    now = datetime.now(UTC)
    target = rt.home.qualitative_raw / f"{delivery.sha256}{delivery.path.suffix.lower()}"
    written = False
    try:
        with rt.engine.begin() as conn:
            if _delivered(conn, cluster, delivery.sha256):  # a concurrent run stored it first
                return _duplicate(conn, cluster, delivery.sha256)
            withdrawn = _withdrawals(conn, cluster)
            needs_key = any(r["withdrawn_date"] is None and r["participant_id"] not in withdrawn
                            for r in records)
            names_key = rt.secrets.key_or_create(PARTICIPANT_KEY)[0] if needs_key else None
            conn.execute(text("DELETE FROM qual_participants WHERE cluster_id = :c"), {"c": cluster})
            conn.execute(query("qual_participant_insert"),
                         _participant_rows(records, cluster, delivery.sha256, withdrawn, names_key))
            turns = segments = newly = 0
            for r in records:
                if r["withdrawn_date"] is not None and r["participant_id"] not in withdrawn:
                    record_withdrawal(conn, cluster, r["participant_id"], now)
                    t, s = withdraw_in_store(conn, rt.secrets, cluster, r["participant_id"])
                    newly, turns, segments = newly + 1, turns + t, segments + s
            conn.execute(text("INSERT INTO qual_deliveries (cluster_id, sha256, kind, stored_path, received_at)"
                              " VALUES (:c, :s, :k, :p, :at)"),
                         {"c": cluster, "s": delivery.sha256, "k": KIND, "p": str(target),
                          "at": now.isoformat()})
            conn.execute(query("qual_register_stored_file"), {
                "cluster_id": cluster, "path": str(target), "category": RAW_CATEGORY,
                "registered_at": now.isoformat()})
            counts = register_counts(conn, cluster)
            append_audit(conn, cluster, "participants_imported", {
                "sha256": delivery.sha256, "encryption": encryption, **counts,
                "newly_withdrawn": newly, "turns_withdrawn": turns, "segments_deleted": segments,
            }, flow_run_id, now)
            write_private(target, delivery.data)
            written = True
    except BaseException:
        if written:
            target.unlink(missing_ok=True)
        raise
    return RegisterResult("imported", delivery.sha256, **counts)


def _duplicate(conn: Connection, cluster: str, sha256: str) -> RegisterResult:
    return RegisterResult("duplicate", sha256, **register_counts(conn, cluster))


# --------------------------------------------------------------------------- the command


def _guarded(stage: str, file_name: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a reading stage; an unexpected error is reported by its class name only."""
    try:
        return fn(*args)
    except (UserFacingError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics (polars, fastexcel) derive from BaseException
        raise InputRejected(f"the {stage} stage stopped on an unexpected {type(exc).__name__}",
                            file=file_name) from None


def _decrypt(delivery: Delivery, passphrase: str | None, identity: str | None, limits: ArchiveLimits) -> Extract:
    return decrypt_extract(delivery.data, delivery.path.name, passphrase=passphrase, identity=identity,
                           limits=limits)


def import_register(rt: Runtime, path: Path, flow_run_id: str | None = None) -> RegisterResult:
    """Import (replace) the participants register from one encrypted file.

    Raises InputRejected (one line, no values) after moving a refused file to quarantine; a
    missing secret or a missing file leaves the file where it is. Delivering the same bytes
    again is a ``duplicate`` and changes nothing.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputRejected(f"file {path} does not exist or is not a file; check the path")
    limits = archive_limits(rt.settings.ingest)
    try:
        delivery = read_delivery(path, limits.max_total_bytes)
        with rt.engine.connect() as conn:
            if _delivered(conn, rt.cluster, delivery.sha256):
                return _duplicate(conn, rt.cluster, delivery.sha256)
            state = stored_state(conn, rt.cluster)
        passphrase, identity = rt.secrets.get(EXTRACT_PASSPHRASE), rt.secrets.age_identity()
        extract = _guarded("decrypt", name, _decrypt, delivery, passphrase, identity, limits)
        encryption = extract.encryption
        frame = _guarded("read", name, read_register, extract.members, name)
        del extract  # the plaintext members are not needed any more
        records = _guarded("validate", name, validate_register, frame, state, name)
        del frame
    except SecretMissing:
        raise
    except InputRejected as exc:
        reason = f"{exc}; the file was quarantined and nothing was stored"
        quarantine(path, rt.home, reason, datetime.now(UTC))
        raise InputRejected(reason) from None
    return store_register(rt, delivery, records, encryption, flow_run_id)


# --------------------------------------------------------------------------- readers for others


def people_of_session(conn: Connection, names_key: bytes | None, cluster: str,
                      session_id: str) -> list[tuple[Participant, Names | None]]:
    """The participants of one session, each with their names (None once withdrawn or deleted)."""
    people = [p for p in load_participants(conn, cluster) if p.session_id == session_id]
    found = conn.execute(text(
        "SELECT participant_id, names_nonce, names_ciphertext FROM qual_participants"
        " WHERE cluster_id = :c AND session_id = :s AND names_ciphertext IS NOT NULL"),
        {"c": cluster, "s": session_id}).all()
    names: dict[str, Names] = {}
    if found and names_key is None:
        raise ConfigError(f"key {PARTICIPANT_KEY} is missing; it may have been destroyed by the "
                          "retention schedule")
    for pid, nonce, ciphertext in found:
        assert names_key is not None
        names[pid] = Names.unseal(names_key, cluster, pid, nonce, ciphertext)
    return [(p, None if p.withdrawn else names.get(p.participant_id)) for p in people]

