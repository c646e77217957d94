"""Survey fieldwork: invitations, reminders, the encrypted fieldwork pack, interview draw.

Contact details are decrypted in memory only. E-mail goes through the mailer; post and
phone households go into a fieldwork pack for the research assistant: a mail-merge CSV and
a call list inside an AES-256 ZIP under ``HOME/fieldwork`` (passphrase: secret
``pack_passphrase``, created as a 0600 key file on first use), registered for retention.

Every contact attempt is recorded in ``contact_attempts`` (primary key token + kind), only
after the message left (e-mail accepted by the server; pack written), one household per
transaction for e-mail, so a failure part-way loses nothing and a re-run contacts nobody
twice. Outcomes: ``sent`` (e-mail), ``pack`` (in a fieldwork pack), ``bounced`` (the server
refused the address), ``unreachable`` (no usable details left), ``withheld`` (the contact
store now says do-not-contact), ``superseded`` (an earlier reminder overtaken by a later one).

Reminder k is due ``survey.reminder_days[k]`` days after the household's invitation, by
``survey.reminder_routes[k]``: ``same`` (the invitation's route) or ``phone`` (the call list;
the invitation's route when there is no phone number). It is never sent to a household that
has responded, withdrawn, is do-not-contact or bounced; this is re-checked just before each
send. When several reminders are due at once only the latest is sent.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyzipper
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from tasks.core.archive import aes_zip_bytes
from tasks.core.audit import append_audit
from tasks.core.contacts import ContactRecord, load_contacts
from tasks.core.db import query, rows
from tasks.core.errors import UserFacingError
from tasks.core.home import Home, write_private
from tasks.core.settings import Settings
from tasks.survey.allocation import draw_stratified, hamilton_allocation
from tasks.survey.mailer import Mailer, MailRejected, MailUnavailable
from tasks.survey.sampling import contact_route, route_details_present

UK_TIME = ZoneInfo("Europe/London")
INVITATION = "invitation"
PACK_CATEGORY = "fieldwork_pack"
MAIL_MERGE_COLUMNS = ("token", "kind", "lead_carer_name", "address_line_1", "address_line_2",
                      "town", "postcode", "survey_url")
CALL_LIST_COLUMNS = ("token", "kind", "lead_carer_name", "phone", "survey_url")


class FieldworkError(UserFacingError):
    """Fieldwork could not be completed (one line; counts and tokens only)."""


def reminder_kind(number: int) -> str:
    """The contact_attempts kind of reminder number k (1-based)."""
    return f"reminder_{number}"


@dataclass(frozen=True)
class Outgoing:
    """One message to one household (token and pseudonym only)."""

    token: str
    family_pid: str
    wave: int
    kind: str
    route: str


@dataclass
class DeliveryReport:
    """What happened to each household in a run (counts and tokens, never contact details)."""

    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    bounced: int = 0
    unreachable: int = 0
    withheld: int = 0
    superseded: int = 0
    skipped: int = 0
    not_contacted: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)
    passphrase_created: bool = False

    def count(self, kind: str, route: str) -> None:
        """Add one successful delivery of a kind by a route."""
        by_route = self.sent.setdefault(kind, {"email": 0, "post": 0, "phone": 0})
        by_route[route] += 1

    def total_sent(self) -> int:
        """Households reached in this run (e-mail accepted or in a pack)."""
        return sum(sum(v.values()) for v in self.sent.values())

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {"sent": {k: dict(v) for k, v in sorted(self.sent.items())},
                "bounced": self.bounced, "unreachable": self.unreachable,
                "withheld": self.withheld, "superseded": self.superseded,
                "skipped": self.skipped, "not_contacted": sorted(self.not_contacted),
                "packs": list(self.packs), "passphrase_created": self.passphrase_created}


@dataclass(frozen=True)
class Fieldwork:
    """What a fieldwork run needs: database, settings, state folder, mailer and secrets."""

    engine: Engine
    settings: Settings
    home: Home
    mailer: Mailer
    contact_key: bytes = field(repr=False)
    pack_passphrase: str = field(repr=False)
    passphrase_created: bool = False
    flow_run_id: str | None = None
    sleep: Callable[[float], None] = time.sleep

    @property
    def cluster(self) -> str:
        return self.settings.study.cluster


def survey_url(template: str, token: str) -> str:
    """The household's survey link."""
    return template.replace("{token}", token)


def _csv(columns: Sequence[str], records: Iterable[Mapping[str, str | None]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow({c: record.get(c) or "" for c in columns})
    return buffer.getvalue().encode("utf-8-sig")  # BOM: Word/Excel mail merge reads UTF-8


def pack_members(items: Sequence[Outgoing], contacts: Mapping[str, ContactRecord],
                 url_template: str) -> dict[str, bytes]:
    """The mail-merge CSV (post) and call list (phone) for the given items."""
    post, phone = [], []
    for item in items:
        rec = contacts[item.family_pid]
        base = {"token": item.token, "kind": item.kind, "lead_carer_name": rec.lead_carer_name,
                "survey_url": survey_url(url_template, item.token)}
        if item.route == "post":
            post.append({**base, "address_line_1": rec.address_line_1,
                         "address_line_2": rec.address_line_2, "town": rec.town,
                         "postcode": rec.postcode})
        else:
            phone.append({**base, "phone": rec.phone})
    members = {}
    if post:
        members["mail_merge.csv"] = _csv(MAIL_MERGE_COLUMNS, post)
    if phone:
        members["call_list.csv"] = _csv(CALL_LIST_COLUMNS, phone)
    return members


def write_pack(path: Path, members: Mapping[str, bytes], passphrase: str) -> Path:
    """Write members as one AES-256 ZIP (never in clear), mode 0600."""
    write_private(path, aes_zip_bytes(members, passphrase))
    return path


def read_pack(path: Path, passphrase: str) -> dict[str, bytes]:
    """Open a fieldwork pack (for the research assistant's tools and tests)."""
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(passphrase.encode("utf-8"))
        return {name: archive.read(name) for name in archive.namelist()}


def email_message(settings: Settings, record: ContactRecord, item: Outgoing) -> EmailMessage:
    """The invitation or reminder e-mail with the household's survey link."""
    link = survey_url(settings.survey.survey_url_template, item.token)
    name = (record.lead_carer_name or "").strip() or "parent or carer"
    message = EmailMessage()
    message["From"] = settings.smtp.sender
    message["To"] = (record.email or "").strip()
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=settings.smtp.sender.rpartition("@")[2] or None)
    if item.kind == INVITATION:
        message["Subject"] = "Your invitation: a short survey about Cluster family support"
        opening = ("We are evaluating the support families receive from the Cluster, and we "
                   "would value your views.")
    else:
        message["Subject"] = "Reminder: a short survey about Cluster family support"
        opening = "A few days ago we invited you to a short survey about Cluster family support."
    message.set_content(
        f"Dear {name},\n\n{opening} It has no more than 10 questions and takes about five "
        f"minutes:\n\n{link}\n\nTaking part is voluntary and will not affect any support you "
        "receive. If you would rather not hear from us again, reply to this e-mail and we will "
        "not contact you again.\n\nThe evaluation team\n"
    )
    return message


def _still_contactable(engine: Engine, cluster: str, item: Outgoing) -> bool:
    with engine.connect() as conn:
        return bool(rows(conn, "survey_household_contactable",
                         {"cluster_id": cluster, "token": item.token, "kind": item.kind}))


def _record(engine: Engine, cluster: str, items: Sequence[Outgoing], outcome: str,
            at: datetime) -> None:
    if not items:
        return
    with engine.begin() as conn:
        conn.execute(query("survey_attempt_insert"), [
            {"cluster_id": cluster, "token": i.token, "wave": i.wave, "kind": i.kind,
             "route": i.route, "attempted_at": at.isoformat(), "outcome": outcome} for i in items])


def _resolve_routes(items: Sequence[Outgoing], contacts: Mapping[str, ContactRecord]
                    ) -> tuple[list[Outgoing], list[Outgoing], list[Outgoing]]:
    """Split into (ready, unreachable, withheld) using the contact details as they are now."""
    ready, unreachable, withheld = [], [], []
    for item in items:
        record = contacts.get(item.family_pid)
        if record is not None and record.do_not_contact:
            withheld.append(item)
            continue
        route = item.route if record is not None and route_details_present(record, item.route) \
            else contact_route(record)
        if route is None:
            unreachable.append(item)
        else:
            ready.append(Outgoing(item.token, item.family_pid, item.wave, item.kind, route))
    return ready, unreachable, withheld


def _send_pack(fw: Fieldwork, items: Sequence[Outgoing], contacts: Mapping[str, ContactRecord],
               label: str, now: datetime, report: DeliveryReport) -> None:
    items = [i for i in items if _still_contactable(fw.engine, fw.cluster, i)]
    if not items:
        return
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    path = fw.home.packs / f"{fw.cluster}-{label}-{stamp}-{secrets.token_hex(3)}.zip"
    write_pack(path, pack_members(items, contacts, fw.settings.survey.survey_url_template),
               fw.pack_passphrase)
    try:
        with fw.engine.begin() as conn:
            conn.execute(query("survey_stored_file_insert"), {
                "cluster_id": fw.cluster, "path": str(path), "category": PACK_CATEGORY,
                "registered_at": now.isoformat()})
            conn.execute(query("survey_attempt_insert"), [
                {"cluster_id": fw.cluster, "token": i.token, "wave": i.wave, "kind": i.kind,
                 "route": i.route, "attempted_at": now.isoformat(), "outcome": "pack"}
                for i in items])
    except Exception:
        path.unlink(missing_ok=True)  # unrecorded pack: remove it, the next run rebuilds it
        raise
    report.packs.append(str(path))
    for item in items:
        report.count(item.kind, item.route)


def _send_emails(fw: Fieldwork, items: Sequence[Outgoing], contacts: Mapping[str, ContactRecord],
                 now: datetime, report: DeliveryReport) -> None:
    """Send one by one; retry with exponential back-off; record each success at once."""
    smtp = fw.settings.smtp
    pending = list(items)
    failures = 0
    while pending:
        try:
            with fw.mailer.session() as session:
                while pending:
                    item = pending[0]
                    if not _still_contactable(fw.engine, fw.cluster, item):
                        report.skipped += 1
                        pending.pop(0)
                        continue
                    try:
                        message = email_message(fw.settings, contacts[item.family_pid], item)
                    except ValueError:  # an address no header can carry: treat as unusable
                        _record(fw.engine, fw.cluster, [item], "unreachable", now)
                        report.unreachable += 1
                        pending.pop(0)
                        continue
                    try:
                        session.send(message)
                    except MailRejected:
                        _record(fw.engine, fw.cluster, [item], "bounced", now)
                        report.bounced += 1
                        pending.pop(0)
                        continue
                    _record(fw.engine, fw.cluster, [item], "sent", now)
                    report.count(item.kind, "email")
                    pending.pop(0)
                    failures = 0
        except MailUnavailable:
            failures += 1
            if failures > smtp.retries:
                break
            fw.sleep(smtp.retry_delay_seconds * 2 ** (failures - 1))
    report.not_contacted.extend(i.token for i in pending)


def deliver(fw: Fieldwork, items: Sequence[Outgoing], label: str,
            now: datetime | None = None) -> DeliveryReport:
    """Send each item by its route (e-mail or pack) and record every attempt."""
    now = now or datetime.now(UTC)
    report = DeliveryReport(passphrase_created=fw.passphrase_created)
    if not items:
        return report
    with fw.engine.connect() as conn:
        contacts = load_contacts(conn, fw.contact_key, fw.cluster, {i.family_pid for i in items})
    ready, unreachable, withheld = _resolve_routes(items, contacts)
    _record(fw.engine, fw.cluster, unreachable, "unreachable", now)
    _record(fw.engine, fw.cluster, withheld, "withheld", now)
    report.unreachable, report.withheld = len(unreachable), len(withheld)
    _send_pack(fw, [i for i in ready if i.route != "email"], contacts, label, now, report)
    _send_emails(fw, [i for i in ready if i.route == "email"], contacts, now, report)
    return report


def _audit(fw: Fieldwork, event: str, report: DeliveryReport, now: datetime,
           extra: Mapping[str, Any]) -> None:
    details = {**extra, "sent": report.total_sent(), "bounced": report.bounced,
               "unreachable": report.unreachable, "withheld": report.withheld,
               "superseded": report.superseded, "skipped": report.skipped,
               "not_contacted": len(report.not_contacted), "packs": len(report.packs)}
    with fw.engine.begin() as conn:
        append_audit(conn, fw.cluster, event, details, fw.flow_run_id, now)


def send_invitations(fw: Fieldwork, wave: int, now: datetime | None = None) -> DeliveryReport:
    """Invite every household of a wave not yet invited (e-mail or pack)."""
    now = now or datetime.now(UTC)
    end = fw.settings.survey.fieldwork_end
    if end is not None and now.astimezone(UK_TIME).date() > end:
        raise FieldworkError(f"fieldwork ended on {end} (survey.fieldwork_end); no invitations "
                             "are sent after it")
    with fw.engine.connect() as conn:
        if not rows(conn, "survey_wave_strata", {"cluster_id": fw.cluster, "wave": wave}):
            raise FieldworkError(f"wave {wave} has not been drawn; run: cluster-eval sample --wave {wave}")
        due = rows(conn, "survey_uninvited_households", {"cluster_id": fw.cluster, "wave": wave})
    items = [Outgoing(r["token"], r["family_pid"], int(r["wave"]), INVITATION, r["route"])
             for r in due]
    report = deliver(fw, items, f"wave{wave}-invitations", now)
    _audit(fw, "survey_invitations", report, now, {"wave": wave})
    return report


def uk_date(value: Any) -> date:
    """The UK calendar day of a stored UTC ISO instant."""
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UK_TIME).date()


def due_reminder(invited_on: date, as_of: date, reminder_days: Sequence[int],
                 done: set[str]) -> tuple[int | None, list[int]]:
    """The reminder to send now (latest due, not yet done) and the earlier ones it overtakes."""
    due = [k for k, days in enumerate(reminder_days, 1)
           if invited_on + timedelta(days=days) <= as_of]
    done_numbers = [k for k in range(1, len(reminder_days) + 1) if reminder_kind(k) in done]
    latest_done = max(done_numbers, default=0)
    pending = [k for k in due if reminder_kind(k) not in done]
    if not pending:
        return None, []
    latest = pending[-1]
    if latest < latest_done:
        return None, pending
    return latest, pending[:-1]


def reminder_route(household_route: str, rule: str, record: ContactRecord | None) -> str:
    """The route of a reminder: ``same`` as the invitation, or ``phone`` when a number exists."""
    if rule == "phone" and record is not None and route_details_present(record, "phone"):
        return "phone"
    return household_route


def send_reminders(fw: Fieldwork, as_of: date, now: datetime | None = None) -> DeliveryReport:
    """Send every reminder due on ``as_of`` that has not been sent yet (idempotent)."""
    now = now or datetime.now(UTC)
    survey = fw.settings.survey
    if survey.fieldwork_end is not None and as_of > survey.fieldwork_end:
        return DeliveryReport(passphrase_created=fw.passphrase_created)  # fieldwork is over
    with fw.engine.connect() as conn:
        candidates = rows(conn, "survey_reminder_candidates", {"cluster_id": fw.cluster})
        done: dict[str, set[str]] = {}
        for r in rows(conn, "survey_attempt_kinds", {"cluster_id": fw.cluster}):
            done.setdefault(r["token"], set()).add(r["kind"])
        contacts = load_contacts(conn, fw.contact_key, fw.cluster,
                                 {c["family_pid"] for c in candidates})
    items: list[Outgoing] = []
    overtaken: list[Outgoing] = []
    for c in candidates:
        number, earlier = due_reminder(uk_date(c["invited_at"]), as_of, survey.reminder_days,
                                       done.get(c["token"], set()))
        overtaken += [Outgoing(c["token"], c["family_pid"], int(c["wave"]), reminder_kind(k),
                               c["route"]) for k in earlier]
        if number is not None:
            route = reminder_route(c["route"], survey.reminder_routes[number - 1],
                                   contacts.get(c["family_pid"]))
            items.append(Outgoing(c["token"], c["family_pid"], int(c["wave"]),
                                  reminder_kind(number), route))
    _record(fw.engine, fw.cluster, overtaken, "superseded", now)
    report = deliver(fw, items, f"reminders-{as_of.isoformat()}", now)
    report.superseded = len(overtaken)
    _audit(fw, "survey_reminders", report, now, {"as_of": as_of.isoformat()})
    return report


@dataclass(frozen=True)
class InterviewDraw:
    """The interview sub-sample: tokens only."""

    tokens: list[str]
    eligible: int
    seed: int
    created: bool
    minimum: int = 0

    @property
    def short(self) -> bool:
        """Fewer drawn than the configured minimum (too few opted-in respondents)."""
        return len(self.tokens) < self.minimum

    def as_json(self) -> dict[str, Any]:
        """Tokens and counts."""
        return {"tokens": list(self.tokens), "eligible": self.eligible, "drawn": len(self.tokens),
                "short": self.short, "seed": self.seed, "created": self.created}


def interview_seed(base_seed: int) -> int:
    """The interview draw's seed, derived from the survey seed."""
    return base_seed * 10 + 7


def plan_interviews(candidates: Mapping[str, str], maximum: int, seed: int) -> list[str]:
    """Draw up to ``maximum`` opted-in respondents, one per stratum first when there is room.

    n = min(maximum, eligible). When n covers every stratum each stratum gets at least one
    (Hamilton with minimum 1), otherwise plain Hamilton; then a seeded draw per stratum.
    """
    by_stratum: dict[str, list[str]] = {}
    for token, stratum in candidates.items():
        by_stratum.setdefault(stratum, []).append(token)
    sizes = {h: len(v) for h, v in by_stratum.items()}
    n = min(maximum, sum(sizes.values()))
    allocation = hamilton_allocation(sizes, n, minimum=1 if n >= len(sizes) else 0)
    drawn = draw_stratified(by_stratum, allocation, seed)
    return sorted(t for tokens in drawn.values() for t in tokens)


def draw_interviews(engine: Engine, settings: Settings, now: datetime | None = None,
                    flow_run_id: str | None = None) -> InterviewDraw:
    """Draw the interview sub-sample once; later calls return the stored draw."""
    cluster = settings.study.cluster
    survey = settings.survey
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        candidates = {r["token"]: r["stratum"]
                      for r in rows(conn, "survey_interview_candidates", {"cluster_id": cluster})}
        stored = rows(conn, "survey_interview_draws", {"cluster_id": cluster})
        if stored:
            return InterviewDraw(sorted(r["token"] for r in stored), len(candidates),
                                 int(stored[0]["seed"]), False, survey.interview_min)
        if not candidates:
            raise FieldworkError("no respondent has opted in to an interview yet "
                                 "(q10_interview_opt_in); import responses first")
        seed = interview_seed(survey.seed)
        tokens = plan_interviews(candidates, survey.interview_max, seed)
        conn.execute(query("survey_interview_insert"), [
            {"cluster_id": cluster, "token": t, "seed": seed, "drawn_at": now.isoformat()}
            for t in tokens])
        append_audit(conn, cluster, "survey_interview_draw",
                     {"eligible": len(candidates), "drawn": len(tokens), "seed": seed},
                     flow_run_id, now)
    return InterviewDraw(tokens, len(candidates), seed, True, survey.interview_min)


@dataclass(frozen=True)
class RateCheck:
    """Response rate of the waves whose last reminder is due (counts only)."""

    waves: list[int]
    issued: int
    responded: int
    threshold: float

    @property
    def rate(self) -> float | None:
        """Responded / issued, or None before any wave is past its last reminder."""
        return self.responded / self.issued if self.issued else None

    @property
    def low(self) -> bool:
        """Whether the rate is below the threshold."""
        return self.rate is not None and self.rate < self.threshold

    def as_json(self) -> dict[str, Any]:
        """Counts and the rate (3 decimals)."""
        return {"waves": list(self.waves), "issued": self.issued, "responded": self.responded,
                "response_rate": None if self.rate is None else round(self.rate, 3),
                "threshold": self.threshold, "low": self.low}


def check_response_rate(engine: Engine, settings: Settings, as_of: date) -> RateCheck:
    """Response rate over the waves whose last reminder was due by ``as_of``."""
    last_days = settings.survey.reminder_days[-1] if settings.survey.reminder_days else 0
    with engine.connect() as conn:
        progress = rows(conn, "survey_wave_progress", {"cluster_id": settings.study.cluster})
    ripe = [p for p in progress if p["invited_at"] is not None
            and uk_date(p["invited_at"]) + timedelta(days=last_days) <= as_of]
    return RateCheck([int(p["wave"]) for p in ripe], sum(int(p["issued"]) for p in ripe),
                     sum(int(p["responded"]) for p in ripe), settings.survey.low_response_threshold)


LOW_RATE_AUDIT = "survey_low_rate_signalled"


def low_rate_to_signal(engine: Engine, cluster: str, check: RateCheck) -> bool:
    """Whether a low rate should be signalled: once per reminder cycle (latest ripe wave)."""
    if not check.low:
        return False
    with engine.connect() as conn:
        done = [json.loads(r["details"]) for r in rows(conn, "audit_events", {"cluster_id": cluster,
                                                                              "event": LOW_RATE_AUDIT})]
    return all(d.get("latest_wave") != max(check.waves) for d in done)


def record_low_rate_signal(engine: Engine, cluster: str, check: RateCheck, flow_run_id: str | None) -> None:
    """Remember that this cycle's low rate was signalled (counts only)."""
    with engine.begin() as conn:
        append_audit(conn, cluster, LOW_RATE_AUDIT, {"latest_wave": max(check.waves), "issued": check.issued,
                                                     "responded": check.responded}, flow_run_id)


_quiet = {"persist_result": False, "cache_policy": NO_CACHE}
send_invitations_task = task(name="send-invitations", **_quiet)(send_invitations)
send_reminders_task = task(name="send-reminders", **_quiet)(send_reminders)
draw_interviews_task = task(name="draw-interviews", **_quiet)(draw_interviews)
check_response_rate_task = task(name="check-response-rate", **_quiet)(check_response_rate)
