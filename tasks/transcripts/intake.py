"""Transcript intake, de-identification re-runs and approval (qualitative-v1.md §2–3).

``import_transcripts`` takes one encrypted archive of ``<session_id>.docx|.txt|.vtt`` members,
checks every transcript (sessions of the register, speaker labels, consent to recording), then
de-identifies each turn (``tasks.transcripts.deidentify``) and stores, in ONE transaction, the
sealed de-identified turns, the sessions, the delivery (copied still encrypted to
``HOME/raw/qualitative/<sha256><suffix>``) and the audit event; the review lists follow. A refused
delivery is moved to quarantine like a refused extract and nothing is stored.

``redact_session`` re-opens a session's delivery from the home folder and de-identifies it again
with the current deny- and allow-lists (and register); ``approve_session`` records the
researcher's approval. Results, audit details and messages hold counts, codes and line numbers
only: never a label, a name or a word of a transcript.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection

from schemas.qualitative import SESSION_ID
from tasks.core.archive import Extract, decrypt_extract
from tasks.core.audit import AuditValue, append_audit
from tasks.core.errors import InputRejected, SecretMissing, UserFacingError
from tasks.core.home import write_private
from tasks.core.runtime import Runtime
from tasks.core.secrets import EXTRACT_PASSPHRASE, PARTICIPANT_KEY, TRANSCRIPT_KEY
from tasks.ingest.pipeline import StageRunner, archive_limits, quarantine, run_stage
from tasks.qualitative.model import WITHDRAWN_TEXT, Names, Participant, load_names, load_participants
from tasks.transcripts import store
from tasks.transcripts.deidentify import Deidentifier, Person, read_allow_list, read_deny_list
from tasks.transcripts.parse import RawTurn, parse_transcript, transcript_format
from tasks.transcripts.store import SessionTranscript, StoredTurn

P = ParamSpec("P")
T = TypeVar("T")
SPEAKER_LABEL = "speaker_label"  # replacement kind: a speaker's name as label -> participant_id
_AMBIGUOUS = "\x00ambiguous"


def _now() -> str:
    return datetime.now(UTC).isoformat()


# --------------------------------------------------------------------------- the register


@dataclass(frozen=True)
class Register:
    """The participants register as the intake needs it: records, names (memory only), sessions."""

    participants: dict[str, Participant]
    names: dict[str, Names] = field(repr=False)

    def session(self, session_id: str) -> list[Participant]:
        """The participants of one session, in participant_id order."""
        return [p for p in self.participants.values() if p.session_id == session_id]

    @property
    def sessions(self) -> set[str]:
        return {p.session_id for p in self.participants.values()}

    def persons(self) -> list[Person]:
        """Every participant with names, for de-identification (names of other sessions too)."""
        return [Person(pid, self.participants[pid].display_name, names)
                for pid, names in sorted(self.names.items()) if pid in self.participants]


def load_register(conn: Connection, rt: Runtime) -> Register:
    """The register with its names decrypted, or a one-line error when none was imported."""
    participants = {p.participant_id: p for p in load_participants(conn, rt.cluster)}
    if not participants:
        raise UserFacingError("no participants register has been imported for this cluster; "
                              "run: cluster-eval participants import FILE first")
    need_names = any(not p.withdrawn for p in participants.values())
    names = load_names(conn, rt.secrets.key(PARTICIPANT_KEY), rt.cluster) if need_names else {}
    return Register(participants, {pid: n for pid, n in names.items()
                                   if pid in participants and not participants[pid].withdrawn})


# --------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Speaker:
    """Whom a turn's label names: a participant (``speaker`` = participant_id) or the research team."""

    speaker: str
    participant_id: str | None
    by_name: bool  # the label was a name, replaced by the participant_id


def _label_key(label: str) -> str:
    return " ".join(label.split()).casefold()


def speaker_labels(register: Register, session_id: str, team_labels: Iterable[str]) -> dict[str, Speaker | str]:
    """Label (case-folded) -> Speaker for one session; labels claimed twice map to a marker."""
    found: dict[str, Speaker | str] = {}

    def claim(label: str, speaker: Speaker) -> None:
        key = _label_key(label)
        if not key:
            return
        earlier = found.get(key)
        if earlier is not None and (not isinstance(earlier, Speaker) or earlier.speaker != speaker.speaker):
            found[key] = _AMBIGUOUS
        elif earlier is None or (isinstance(earlier, Speaker) and earlier.by_name and not speaker.by_name):
            found[key] = speaker

    for label in team_labels:
        claim(label, Speaker(label, None, False))
    for person in register.session(session_id):
        pid = person.participant_id
        claim(pid, Speaker(pid, pid, False))
        names = register.names.get(pid)
        if names is not None and names.full_name.split():
            claim(names.full_name, Speaker(pid, pid, True))
            claim(names.full_name.split()[0], Speaker(pid, pid, True))
    return found


def map_speakers(turns: list[RawTurn], session_id: str, labels: Mapping[str, Speaker | str],
                 file_name: str, withdrawn: Mapping[int, Speaker] | None = None) -> list[Speaker]:
    """The speaker of every turn, or InputRejected naming (session, line) only, never the label.

    ``withdrawn`` (turn number -> speaker, from the stored transcript when a session is redacted
    again) keeps a withdrawn participant's turns theirs although their names, and so a label
    that was their name, are gone.
    """
    speakers = []
    for turn_no, turn in enumerate(turns, start=1):
        found = labels.get(_label_key(turn.label))
        if found is None and withdrawn and turn_no in withdrawn:
            found = withdrawn[turn_no]
        if found == _AMBIGUOUS:
            raise InputRejected(f"transcript {session_id}, line {turn.source_line}: the speaker label "
                                "matches more than one participant of this session; label the turn "
                                "with the participant_id", file=file_name)
        if not isinstance(found, Speaker):
            raise InputRejected(f"transcript {session_id}, line {turn.source_line}: the speaker label "
                                "matches no participant of this session and no research-team label; "
                                "use a participant_id, full name or first name from the register",
                                file=file_name)
        speakers.append(found)
    return speakers


def check_consent(speakers: list[Speaker], turns: list[RawTurn], register: Register, session_id: str,
                  file_name: str) -> None:
    """A participant who refused recording must not speak in a stored transcript."""
    for speaker, turn in zip(speakers, turns, strict=True):
        if speaker.participant_id and not register.participants[speaker.participant_id].consent_recording:
            raise InputRejected(f"transcript {session_id}, line {turn.source_line}: a participant who did "
                                "not consent to recording speaks; no transcript may hold their words, so "
                                "remove their turns and send it again", file=file_name)


# --------------------------------------------------------------------------- de-identification


def make_deidentifier(rt: Runtime, register: Register) -> Deidentifier:
    """The de-identifier of the current register, deny-list, allow-list and team labels."""
    q = rt.settings.qualitative
    return Deidentifier(register.persons(), read_deny_list(q.deny_list), read_allow_list(q.allow_list),
                        q.team_labels)


def _canonical_team(team_labels: Iterable[str]) -> dict[str, str]:
    return {_label_key(label): label for label in team_labels}


def deidentify_session(session_id: str, fmt: str, data: bytes, register: Register, deid: Deidentifier,
                       team_labels: tuple[str, ...], file_name: str,
                       withdrawn: Mapping[int, Speaker] | None = None) -> SessionTranscript:
    """Parse, check and de-identify one transcript (nothing stored)."""
    raw = parse_transcript(data, fmt, session_id, file_name)
    speakers = map_speakers(raw, session_id, speaker_labels(register, session_id, team_labels), file_name,
                            withdrawn)
    check_consent(speakers, raw, register, session_id, file_name)
    team = _canonical_team(team_labels)
    counts: Counter[str] = Counter()
    review: list[tuple[int, str]] = []
    turns: list[StoredTurn] = []
    for turn_no, (turn, speaker) in enumerate(zip(raw, speakers, strict=True), start=1):
        label = speaker.speaker if speaker.participant_id else team[_label_key(speaker.speaker)]
        if speaker.participant_id and register.participants[speaker.participant_id].withdrawn:
            turns.append(StoredTurn(turn_no, turn.source_line, label, speaker.participant_id, WITHDRAWN_TEXT,
                                    withdrawn=True))
            continue
        if speaker.by_name:
            counts[SPEAKER_LABEL] += 1
        redacted = deid.redact(turn.words)
        counts.update(redacted.counts)
        words = " ".join(redacted.text.split())
        review.extend((turn_no, term) for term in deid.review(words))
        turns.append(StoredTurn(turn_no, turn.source_line, label, speaker.participant_id, words))
    return SessionTranscript(session_id, fmt, hashlib.sha256(data).hexdigest(), tuple(turns), counts,
                             tuple(review))


# --------------------------------------------------------------------------- the delivery


def guarded(stage: str, file_name: str | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a stage that reads a transcript; an unexpected error is told by its class name only.

    (Its message could quote the text being read; a refusal of our own is passed on as it is.)
    """
    try:
        return fn(*args, **kwargs)
    except (UserFacingError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        raise InputRejected(f"the {stage} stage stopped on an unexpected {type(exc).__name__}",
                            file=file_name) from None


@dataclass(frozen=True)
class Delivery:
    """An encrypted delivery read once: its bytes and SHA-256, and whether it was seen before."""

    path: Path
    sha256: str
    data: bytes = field(repr=False)
    seen_as: str | None = None  # kind of an earlier delivery with these bytes


def check_delivery(rt: Runtime, path: Path) -> Delivery:
    """Read and hash the delivered file; note an earlier delivery of the same bytes."""
    limits = archive_limits(rt.settings.ingest)
    if path.stat().st_size > limits.max_total_bytes:
        raise InputRejected(f"the file is larger than {limits.max_total_bytes // (1024 * 1024)} MB, which "
                            "is over the limit", file=path.name)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    with rt.engine.connect() as conn:
        return Delivery(path, sha256, data, store.delivery_kind(conn, rt.cluster, sha256))


def open_delivery(rt: Runtime, data: bytes, file_name: str) -> Extract:
    """Decrypt a delivery in memory with the extract's secrets and archive checks."""
    return decrypt_extract(data, file_name, passphrase=rt.secrets.get(EXTRACT_PASSPHRASE),
                           identity=rt.secrets.age_identity(), limits=archive_limits(rt.settings.ingest))


def session_members(members: Mapping[str, bytes], register: Register, file_name: str
                    ) -> dict[str, tuple[str, bytes]]:
    """session_id -> (format, bytes) of every member; a member of no register session is refused."""
    sessions = {s.casefold(): s for s in register.sessions}
    found: dict[str, tuple[str, bytes]] = {}
    for name, data in sorted(members.items()):
        fmt = transcript_format(name)
        if fmt is None:  # member names are not repeated: a file name may name someone
            raise InputRejected("an archive member is not a .docx, .txt or .vtt transcript; send only "
                                "<session_id>.docx, .txt or .vtt files", file=file_name)
        session_id = sessions.get(name[: -len(fmt) - 1].casefold())
        if session_id is None:
            raise InputRejected("an archive member is not named after a session of the participants "
                                "register; name each transcript <session_id>.docx, .txt or .vtt", file=file_name)
        if session_id in found:
            raise InputRejected(f"the archive holds two transcripts of session {session_id}; send one",
                                file=file_name)
        found[session_id] = (fmt, data)
    return found


def _suffix(encryption: str) -> str:
    return ".age" if encryption == "age" else ".zip"


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class PreparedImport:
    """Every session of a delivery checked and de-identified, ready to store (repr: counts only)."""

    sha256: str
    suffix: str
    sessions: tuple[SessionTranscript, ...]
    replaced: tuple[str, ...]  # sessions stored before (not approved) that this delivery replaces
    encrypted: bytes = field(default=b"", repr=False)  # the delivery as received, kept as is


def prepare_import(rt: Runtime, delivery: Delivery, file_name: str) -> PreparedImport:
    """Decrypt, read, check and de-identify every transcript of a delivery (nothing stored)."""
    extract = open_delivery(rt, delivery.data, file_name)
    with rt.engine.connect() as conn:
        register = load_register(conn, rt)
        stored = store.stored_sessions(conn, rt.cluster)
    members = session_members(extract.members, register, file_name)
    approved = sorted(s for s in members if s in stored and stored[s].approved_at is not None)
    if approved:
        raise InputRejected(f"session {approved[0]} was approved already, so its transcript cannot be "
                            "imported again; send the archive without it", file=file_name)
    deid = make_deidentifier(rt, register)
    team = rt.settings.qualitative.team_labels
    sessions = tuple(deidentify_session(session_id, fmt, data, register, deid, team, file_name)
                     for session_id, (fmt, data) in members.items())
    return PreparedImport(delivery.sha256, _suffix(extract.encryption), sessions,
                          tuple(s for s in members if s in stored), delivery.data)


def totals(sessions: Iterable[SessionTranscript]) -> dict[str, Any]:
    """Counts over sessions: sessions, turns, words, withdrawn turns, review entries, replacements."""
    sessions = list(sessions)
    replacements: Counter[str] = Counter()
    for s in sessions:
        replacements.update(s.replacements)
    return {"sessions": len(sessions), "turns": sum(len(s.turns) for s in sessions),
            "words": sum(s.words for s in sessions), "withdrawn_turns": sum(s.withdrawn_turns for s in sessions),
            "review_entries": sum(len(s.review) for s in sessions),
            "replacements": {k: replacements[k] for k in sorted(replacements) if replacements[k]}}


def _audit_details(figures: Mapping[str, Any], **extra: AuditValue) -> dict[str, AuditValue]:
    details: dict[str, AuditValue] = {k: v for k, v in figures.items() if k != "replacements"}
    details.update({f"replacements_{kind}": n for kind, n in figures["replacements"].items()})
    details.update(extra)
    return details


def store_import(rt: Runtime, prepared: PreparedImport, flow_run_id: str | None) -> bool:
    """Store sessions, turns, delivery and audit in one transaction, then keep the encrypted file.

    Returns False (nothing changed) when a concurrent run stored the same delivery first.
    """
    key, _ = rt.secrets.key_or_create(TRANSCRIPT_KEY)
    target = rt.home.qualitative_raw / f"{prepared.sha256}{prepared.suffix}"
    existed = target.exists()
    at = _now()
    try:
        with rt.engine.begin() as conn:
            if store.delivery_kind(conn, rt.cluster, prepared.sha256) is not None:
                return False
            store.record_delivery(conn, rt.cluster, prepared.sha256, target, at)
            for session in prepared.sessions:
                store.replace_session(conn, key, rt.cluster, session, prepared.sha256, at)
            append_audit(conn, rt.cluster, "transcripts_imported",
                         _audit_details(totals(prepared.sessions), sha256=prepared.sha256,
                                        replaced_sessions=len(prepared.replaced)), flow_run_id)
            write_private(target, prepared.encrypted)
    except BaseException:
        if not existed:
            target.unlink(missing_ok=True)
        raise
    return True


def write_review_lists(rt: Runtime, sessions: Iterable[SessionTranscript]) -> dict[str, str]:
    """(Re)write each session's review list; session_id -> path."""
    return {s.session_id: str(store.write_review_list(rt.home, s)) for s in sessions}


def _import_result(status: str, sha256: str, sessions: Iterable[SessionTranscript] = (),
                   replaced: Iterable[str] = (), review_lists: Mapping[str, str] | None = None) -> dict[str, Any]:
    sessions = list(sessions)
    return {"status": status, "sha256": sha256, **totals(sessions),
            "session_ids": [s.session_id for s in sessions], "replaced_sessions": len(list(replaced)),
            "review_lists": dict(review_lists or {})}


def import_transcripts(rt: Runtime, path: Path, flow_run_id: str | None, *,
                       stage: StageRunner = run_stage) -> dict[str, Any]:
    """Import one encrypted archive of transcripts (counts-only result; same bytes again = duplicate).

    A refused delivery is moved to HOME/quarantine (a missing secret leaves it in place) and
    nothing is stored.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise UserFacingError(f"file {path} does not exist or is not a file; check the path")
    try:
        delivery = stage("check delivery", check_delivery, rt, path)
        if delivery.seen_as == store.TRANSCRIPTS:
            return _import_result("duplicate", delivery.sha256)
        if delivery.seen_as is not None:
            raise InputRejected("this file was imported before as a participants register, not as "
                                "transcripts", file=name)
        prepared = stage("read and de-identify", guarded, "read", name, prepare_import, rt, delivery, name)
    except SecretMissing:
        raise
    except InputRejected as exc:
        reason = f"{exc}; the file was quarantined"
        stage("quarantine", quarantine, path, rt.home, reason, datetime.now(UTC))
        raise InputRejected(f"{exc.reason}; the file was quarantined", file=exc.file or name,
                            table=exc.table, column=exc.column, row_key=exc.row_key) from None
    stored = stage("store transcripts", store_import, rt, prepared, flow_run_id)
    if not stored:
        return _import_result("duplicate", delivery.sha256)
    lists = stage("write review lists", write_review_lists, rt, prepared.sessions)
    return _import_result("imported", delivery.sha256, prepared.sessions, prepared.replaced, lists)


# --------------------------------------------------------------------------- redact and approve


def check_session_id(session_id: str) -> str:
    """A session id as the register allows it (it names files), else a one-line error."""
    if not re.fullmatch(SESSION_ID, session_id):
        raise InputRejected("the session must be a session_id of the participants register, e.g. FI-03")
    return session_id


def _stored_session(rt: Runtime, conn: Connection, session_id: str) -> store.StoredSession:
    found = store.stored_sessions(conn, rt.cluster).get(session_id)
    if found is None:
        raise InputRejected(f"session {session_id} has no transcript; import it first with: "
                            "cluster-eval transcripts import FILE")
    return found


def _not_approved(session: store.StoredSession) -> None:
    if session.approved_at is not None:
        raise InputRejected(f"session {session.session_id} was approved, so its transcript can no "
                            "longer be redacted")


def prepare_redact(rt: Runtime, session_id: str) -> SessionTranscript:
    """Re-open a session's delivery and de-identify it again with the current lists (nothing stored)."""
    with rt.engine.connect() as conn:
        stored = _stored_session(rt, conn, session_id)
        _not_approved(stored)
        register = load_register(conn, rt)
        withdrawn = {turn_no: Speaker(pid, pid, True)
                     for turn_no, pid in store.turn_speakers(conn, rt.cluster, session_id).items()
                     if pid in register.participants and register.participants[pid].withdrawn}
    path = Path(stored.stored_path) if stored.stored_path else None
    if path is None or not path.is_file():
        raise InputRejected(f"the delivery holding session {session_id}'s original transcript is no "
                            "longer in the home folder; import the transcript again")
    label = f"delivery {stored.delivery_sha256[:12]}"
    members = open_delivery(rt, path.read_bytes(), label).members
    found = [(fmt, data) for name, data in members.items()
             if (fmt := transcript_format(name)) and name[: -len(fmt) - 1].casefold() == session_id.casefold()]
    if len(found) != 1:
        raise InputRejected(f"the stored delivery holds no transcript of session {session_id}", file=label)
    fmt, data = found[0]
    return deidentify_session(session_id, fmt, data, register, make_deidentifier(rt, register),
                              rt.settings.qualitative.team_labels, label, withdrawn)


def store_redacted(rt: Runtime, session: SessionTranscript, flow_run_id: str | None) -> None:
    """Replace a session's turns and figures by the new de-identification, audited."""
    key = rt.secrets.key(TRANSCRIPT_KEY)
    with rt.engine.begin() as conn:
        if not store.update_redacted(conn, key, rt.cluster, session, _now()):
            raise InputRejected(f"session {session.session_id} was approved, so its transcript can no "
                                "longer be redacted")
        append_audit(conn, rt.cluster, "transcript_redacted",
                     _audit_details(totals([session]), session_id=session.session_id), flow_run_id)


def redact_session(rt: Runtime, session_id: str, flow_run_id: str | None, *,
                   stage: StageRunner = run_stage) -> dict[str, Any]:
    """De-identify a stored, not approved session again; rewrite its review list (counts-only result)."""
    with rt.engine.connect() as conn:
        before = _stored_session(rt, conn, session_id).review_entries
    session = stage("read and de-identify", guarded, "read", None, prepare_redact, rt, session_id)
    stage("store transcripts", store_redacted, rt, session, flow_run_id)
    lists = stage("write review lists", write_review_lists, rt, [session])
    figures = totals([session])
    figures.pop("sessions")
    return {"status": "redacted", "session_id": session_id, **figures, "review_entries_before": before,
            "review_list": lists[session_id]}


def approve_session(rt: Runtime, session_id: str, flow_run_id: str | None) -> dict[str, Any]:
    """Approve a session's de-identified transcript (audited with the review entries left)."""
    at = _now()
    with rt.engine.begin() as conn:
        stored = _stored_session(rt, conn, session_id)
        if stored.approved_at is not None:
            return {"status": "already_approved", "session_id": session_id,
                    "review_entries": stored.review_entries, "approved_at": stored.approved_at}
        if not store.approve(conn, rt.cluster, session_id, at):
            raise UserFacingError(f"session {session_id} could not be approved; try again")
        append_audit(conn, rt.cluster, "transcript_approved",
                     {"session_id": session_id, "review_entries_left": stored.review_entries}, flow_run_id)
    return {"status": "approved", "session_id": session_id, "review_entries": stored.review_entries,
            "approved_at": at}

