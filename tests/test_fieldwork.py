"""Invitations, reminders and the fieldwork pack against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import csv
import email
import io
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pyzipper
from aiosmtpd.controller import Controller
from conftest import free_port
from sqlalchemy import Engine, text
from test_sampling import contact, populate, standard_population, survey_settings

from tasks.core.runtime import Runtime
from tasks.core.secrets import PACK_PASSPHRASE
from tasks.core.settings import Settings
from tasks.survey.fieldwork import (
    draw_interviews,
    due_reminder,
    plan_interviews,
    reminder_route,
    send_invitations,
    send_reminders,
    uk_date,
)
from tasks.survey.mailer import FakeMailer, MailSession, SmtpMailer
from tasks.survey.monitor import check_response_rate
from tasks.survey.outgoing import DeliveryReport, Fieldwork, FieldworkError
from tasks.survey.responses import token_digest, withdraw_household
from tasks.survey.sampling import draw_wave

MARKERS = ("ZQX", "zqxmail", "QZ0", "07700")


# --- a real SMTP server -----------------------------------------------------------------------

@dataclass
class Inbox:
    """What the local SMTP server received (recipient, body) and which addresses it refuses."""

    messages: list[tuple[list[str], str]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        body = message.get_payload(decode=True).decode("utf-8")
        self.messages.append((list(envelope.rcpt_tos), body))
        return "250 Message accepted"

    def recipients(self) -> list[str]:
        return sorted(r for rcpts, _ in self.messages for r in rcpts)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server on a free loopback port."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_settings(base: Settings, port: int, **survey: Any) -> Settings:
    """Settings pointing at the test server with fast retries and a 20-household wave 1."""
    s = survey_settings(base, sample_size=20, **survey)
    return s.model_copy(update={"smtp": s.smtp.model_copy(update={
        "host": "127.0.0.1", "port": port, "retries": 2, "retry_delay_seconds": 0.01,
        "timeout_seconds": 5.0})})


def fieldwork(rt: Runtime, settings: Settings, key: bytes, mailer: Any = None,
              sleeps: list[float] | None = None) -> Fieldwork:
    passphrase, created = rt.secrets.passphrase_or_create(PACK_PASSPHRASE)
    return Fieldwork(rt.engine, settings, rt.home, mailer or SmtpMailer(settings.smtp), key,
                     passphrase, created,
                     sleep=(sleeps.append if sleeps is not None else (lambda _s: None)))


def households(engine: Engine, wave: int | None = None) -> dict[str, dict[str, Any]]:
    """token -> household row."""
    sql = "SELECT token, family_pid, wave, stratum, route FROM households"
    with engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(text(sql))]
    return {h["token"]: h for h in found if wave is None or h["wave"] == wave}


def address(family_pid: str) -> str:
    return f"zqxmail{int(family_pid[3:]):06d}@example.invalid"


def attempts(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(text(
            "SELECT kind, route, outcome FROM contact_attempts")))


def tally(rows: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for row in rows:
        out[row] = out.get(row, 0) + 1
    return out


def read_pack(path: Path, passphrase: str) -> dict[str, bytes]:
    """Open a fieldwork pack as the research assistant would (AES-256 ZIP)."""
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(passphrase.encode("utf-8"))
        return {name: archive.read(name) for name in archive.namelist()}


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def respond(engine: Engine, tokens: list[str]) -> None:
    """Store minimal responses for these tokens (as an import would)."""
    with engine.begin() as conn:
        for t in tokens:
            conn.execute(text(
                "INSERT INTO responses (cluster_id, token, submitted_at, mode, import_sha256)"
                " VALUES ('pilot', :t, '2022-02-01T10:00:00+00:00', 'online', 'x')"), {"t": t})


def drawn(rt: Runtime, settings: Settings) -> bytes:
    key = populate(rt.engine, rt.home, standard_population())
    draw_wave(rt.engine, settings, key, 1, None)
    return key


# --- invitations ------------------------------------------------------------------------------

def test_invitations_email_and_encrypted_pack(runtime: Runtime, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    s = smtp_settings(runtime.settings, port)
    key = drawn(runtime, s)
    wave = households(runtime.engine, 1)
    report = send_invitations(fieldwork(runtime, s, key), 1)

    assert report.sent == {"invitation": {"email": 10, "post": 6, "phone": 4}}
    assert report.not_contacted == [] and report.bounced == 0
    by_email = {address(h["family_pid"]): t for t, h in wave.items() if h["route"] == "email"}
    assert inbox.recipients() == sorted(by_email)
    for (rcpt,), body in inbox.messages:
        assert f"https://survey.example.invalid/s/{by_email[rcpt]}" in body
        assert "ZQXNAME" in body  # greeting by name inside the e-mail only

    [pack] = [Path(p) for p in report.packs]
    assert pack.parent == runtime.home.packs and stat.S_IMODE(pack.stat().st_mode) == 0o600
    raw = pack.read_bytes()
    assert not any(m.encode() in raw for m in MARKERS)  # AES: nothing readable at rest
    members = read_pack(pack, runtime.secrets.passphrase_or_create(PACK_PASSPHRASE)[0])
    mail_merge, call_list = csv_rows(members["mail_merge.csv"]), csv_rows(members["call_list.csv"])
    assert sorted(r["token"] for r in mail_merge) == sorted(
        t for t, h in wave.items() if h["route"] == "post")
    assert sorted(r["token"] for r in call_list) == sorted(
        t for t, h in wave.items() if h["route"] == "phone")
    assert all(r["postcode"] and r["address_line_1"].startswith("ZQXADDR") for r in mail_merge)
    assert all(r["phone"].startswith("07700") and r["kind"] == "invitation" for r in call_list)
    assert tally(attempts(runtime.engine)) == {("invitation", "email", "sent"): 10,
                                               ("invitation", "phone", "pack"): 4,
                                               ("invitation", "post", "pack"): 6}
    with runtime.engine.connect() as conn:
        files = conn.execute(text("SELECT path, category FROM stored_files")).all()
        audit = " ".join(r[0] for r in conn.execute(text("SELECT details FROM audit_log")))
    assert [tuple(f) for f in files] == [(str(pack), "fieldwork_pack")]
    assert not any(m in audit for m in MARKERS)

    again = send_invitations(fieldwork(runtime, s, key), 1)  # idempotent
    assert again.total_sent() == 0 and again.packs == [] and len(inbox.messages) == 10
    assert len(attempts(runtime.engine)) == 20


def test_unreachable_server_retries_then_fails_clearly_and_rerun_sends_once(
        sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    port = free_port()  # nothing listens here yet
    s = smtp_settings(rt.settings, port)
    key = drawn(rt, s)
    sleeps: list[float] = []
    report = send_invitations(fieldwork(rt, s, key, sleeps=sleeps), 1)
    assert sleeps == [0.01, 0.02]  # two retries with exponential back-off
    email_tokens = sorted(t for t, h in households(rt.engine, 1).items() if h["route"] == "email")
    assert report.not_contacted == email_tokens and len(email_tokens) == 10
    assert report.sent == {"invitation": {"email": 0, "post": 6, "phone": 4}}
    assert tally(attempts(rt.engine)) == {("invitation", "phone", "pack"): 4,
                                          ("invitation", "post", "pack"): 6}

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        later = send_invitations(fieldwork(rt, s, key), 1)
        again = send_invitations(fieldwork(rt, s, key), 1)
    finally:
        controller.stop()
    assert later.sent == {"invitation": {"email": 10, "post": 0, "phone": 0}}
    assert again.total_sent() == 0
    assert inbox.recipients() == sorted(
        address(h["family_pid"]) for t, h in households(rt.engine, 1).items() if t in email_tokens)
    assert len(attempts(rt.engine)) == 20


def test_flow_failure_message_is_one_line_with_counts(sqlite_runtime: Runtime) -> None:
    from tasks.survey.outgoing import NotContacted, raise_if_not_contacted

    report = DeliveryReport(not_contacted=["t1", "t2"])
    report.count("invitation", "post")
    with pytest.raises(NotContacted) as caught:
        raise_if_not_contacted(sqlite_runtime.settings, report, "cluster-eval invite --wave 1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("2 household(s) were not contacted: the mail server 127.0.0.1:25")
    assert "1 were contacted and recorded" in message
    assert caught.value.result["not_contacted"] == ["t1", "t2"]


def test_bounce_is_recorded_and_never_reminded(sqlite_runtime: Runtime, smtp: tuple[Inbox, int]) -> None:
    rt = sqlite_runtime
    inbox, port = smtp
    s = smtp_settings(rt.settings, port)
    key = drawn(rt, s)
    email_households = sorted((t, h) for t, h in households(rt.engine, 1).items()
                              if h["route"] == "email")
    bounced_token, bounced = email_households[0]
    inbox.refuse.add(address(bounced["family_pid"]))
    report = send_invitations(fieldwork(rt, s, key), 1)
    assert report.bounced == 1 and report.sent["invitation"]["email"] == 9
    day = uk_date(datetime.now(UTC).isoformat())
    reminders = send_reminders(fieldwork(rt, s, key), day + timedelta(days=7))
    assert reminders.sent == {"reminder_1": {"email": 9, "post": 6, "phone": 4}}
    assert address(bounced["family_pid"]) not in inbox.recipients()
    assert len(inbox.messages) == 18  # 9 invitations + 9 reminders
    with rt.engine.connect() as conn:
        kinds = {r[0] for r in conn.execute(
            text("SELECT kind FROM contact_attempts WHERE token = :t"), {"t": bounced_token})}
    assert kinds == {"invitation"}


def test_transient_failure_is_retried_within_the_run(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    mailer = FakeMailer(failures_before_success=2)
    sleeps: list[float] = []
    s = s.model_copy(update={"smtp": s.smtp.model_copy(update={"retries": 3, "retry_delay_seconds": 1})})
    report = send_invitations(fieldwork(rt, s, key, mailer=mailer, sleeps=sleeps), 1)
    assert sleeps == [1, 2] and len(mailer.sent) == 10 and report.not_contacted == []


def test_invitation_needs_a_drawn_wave(sqlite_runtime: Runtime) -> None:
    key = populate(sqlite_runtime.engine, sqlite_runtime.home, standard_population())
    with pytest.raises(FieldworkError, match="wave 2 has not been drawn; run: cluster-eval sample --wave 2"):
        send_invitations(fieldwork(sqlite_runtime, sqlite_runtime.settings, key, FakeMailer()), 2)


def test_details_checked_again_at_send_time(sqlite_runtime: Runtime) -> None:
    """A contact record changed after sampling: fall back to another route, or withhold."""
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    wave = sorted(households(rt.engine, 1).items())
    emails = [(t, h) for t, h in wave if h["route"] == "email"]
    from tasks.ingest.load import store_contacts

    (_, lost_email), (_, now_dnc), (_, gone) = emails[0], emails[1], emails[2]
    with rt.engine.begin() as conn:
        n = int(lost_email["family_pid"][3:])
        store_contacts(conn, key, "pilot", "e" * 64, {
            lost_email["family_pid"]: contact(n, "email", email=False),
            now_dnc["family_pid"]: contact(int(now_dnc["family_pid"][3:]), dnc=True),
            gone["family_pid"]: contact(0, email=False, post=False, phone=False)})
    mailer = FakeMailer()
    report = send_invitations(fieldwork(rt, s, key, mailer), 1)
    assert report.sent == {"invitation": {"email": 7, "post": 7, "phone": 4}}
    assert (report.withheld, report.unreachable) == (1, 1)
    assert tally(attempts(rt.engine))[("invitation", "email", "withheld")] == 1
    assert tally(attempts(rt.engine))[("invitation", "email", "unreachable")] == 1


# --- reminders --------------------------------------------------------------------------------

def test_due_reminder_rules() -> None:
    d = date(2022, 1, 10)
    assert due_reminder(d, d + timedelta(days=6), (7, 14), set()) == (None, [])
    assert due_reminder(d, d + timedelta(days=7), (7, 14), set()) == (1, [])
    assert due_reminder(d, d + timedelta(days=8), (7, 14), {"reminder_1"}) == (None, [])
    assert due_reminder(d, d + timedelta(days=14), (7, 14), {"reminder_1"}) == (2, [])
    assert due_reminder(d, d + timedelta(days=20), (7, 14), set()) == (2, [1])  # 1 overtaken
    assert due_reminder(d, d + timedelta(days=20), (7, 14), {"reminder_1", "reminder_2"}) == (None, [])
    assert reminder_route("email", "phone", contact(1)) == "phone"
    assert reminder_route("email", "phone", contact(1, phone=False)) == "email"
    assert reminder_route("post", "same", contact(1)) == "post"


class RespondsDuringRun(FakeMailer):
    """A mailer during whose first send another household's response arrives."""

    def __init__(self, engine: Engine, late_token: str) -> None:
        super().__init__()
        self.engine, self.late_token = engine, late_token

    def send(self, message: EmailMessage) -> None:
        if not self.sent:
            respond(self.engine, [self.late_token])
        super().send(message)


def test_reminders_same_route_then_phone_never_to_responded_or_withdrawn(
        runtime: Runtime, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    s = smtp_settings(runtime.settings, port)
    key = drawn(runtime, s)
    send_invitations(fieldwork(runtime, s, key), 1)
    wave = sorted(households(runtime.engine, 1).items())
    by_route = {r: [t for t, h in wave if h["route"] == r] for r in ("email", "post", "phone")}
    responded = by_route["email"][:3] + by_route["post"][:1] + by_route["phone"][:1]
    respond(runtime.engine, responded)
    withdrawn = by_route["email"][3]
    withdraw_household(runtime.engine, s, token_digest(withdrawn))
    invited = uk_date(datetime.now(UTC).isoformat())

    early = send_reminders(fieldwork(runtime, s, key), invited + timedelta(days=6))
    assert early.total_sent() == 0 and len(inbox.messages) == 10

    first = send_reminders(fieldwork(runtime, s, key), invited + timedelta(days=7))
    assert first.sent == {"reminder_1": {"email": 6, "post": 5, "phone": 3}}
    reminded = inbox.recipients()
    new = [m for m in inbox.messages[10:]]
    assert len(new) == 6
    tokens = {t: h for t, h in wave}
    for (rcpt,), body in new:
        token = next(t for t in by_route["email"] if address(tokens[t]["family_pid"]) == rcpt)
        assert token not in responded and token != withdrawn and token in body
        assert "Reminder" in body or "invited you" in body
    [pack] = first.packs
    members = read_pack(Path(pack), runtime.secrets.passphrase_or_create(PACK_PASSPHRASE)[0])
    assert len(csv_rows(members["mail_merge.csv"])) == 5 and len(csv_rows(members["call_list.csv"])) == 3
    assert all(r["kind"] == "reminder_1" for r in csv_rows(members["call_list.csv"]))

    twice = send_reminders(fieldwork(runtime, s, key), invited + timedelta(days=7))
    assert twice.total_sent() == 0 and inbox.recipients() == reminded

    second = send_reminders(fieldwork(runtime, s, key), invited + timedelta(days=14))
    assert second.sent == {"reminder_2": {"email": 0, "post": 0, "phone": 14}}
    members = read_pack(Path(second.packs[0]), runtime.secrets.passphrase_or_create(PACK_PASSPHRASE)[0])
    calls = csv_rows(members["call_list.csv"])
    assert len(calls) == 14 and set(members) == {"call_list.csv"}
    assert not {r["token"] for r in calls} & (set(responded) | {withdrawn})
    assert len(inbox.messages) == 16
    assert tally(attempts(runtime.engine)) == {
        ("invitation", "email", "sent"): 10, ("invitation", "phone", "pack"): 4,
        ("invitation", "post", "pack"): 6, ("reminder_1", "email", "sent"): 6,
        ("reminder_1", "phone", "pack"): 3, ("reminder_1", "post", "pack"): 5,
        ("reminder_2", "phone", "pack"): 14}


def test_response_arriving_mid_run_stops_its_reminder(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    send_invitations(fieldwork(rt, s, key, FakeMailer()), 1)
    emails = sorted(t for t, h in households(rt.engine, 1).items() if h["route"] == "email")
    mailer = RespondsDuringRun(rt.engine, emails[-1])  # the last one answers while we send
    invited = uk_date(datetime.now(UTC).isoformat())
    report = send_reminders(fieldwork(rt, s, key, mailer), invited + timedelta(days=7))
    assert report.sent["reminder_1"]["email"] == 9 and report.skipped == 1
    assert len(mailer.sent) == 9


def test_late_run_sends_only_the_latest_reminder(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    mailer = FakeMailer()
    send_invitations(fieldwork(rt, s, key, mailer), 1)
    invited = uk_date(datetime.now(UTC).isoformat())
    report = send_reminders(fieldwork(rt, s, key, mailer), invited + timedelta(days=15))
    assert report.sent == {"reminder_2": {"email": 0, "post": 0, "phone": 20}}
    assert report.superseded == 20 and len(mailer.sent) == 10  # the 10 invitations only


# --- monitor and interviews -------------------------------------------------------------------

def test_response_rate_check_waits_for_the_last_reminder(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    send_invitations(fieldwork(rt, s, key, FakeMailer()), 1)
    respond(rt.engine, sorted(households(rt.engine, 1))[:7])
    invited = uk_date(datetime.now(UTC).isoformat())
    early = check_response_rate(rt.engine, s, invited + timedelta(days=13))
    assert (early.waves, early.issued, early.rate, early.low) == ([], 0, None, False)
    late = check_response_rate(rt.engine, s, invited + timedelta(days=14))
    assert late.as_json() == {"waves": [1], "issued": 20, "responded": 7, "response_rate": 0.35,
                              "threshold": 0.4, "low": True}


def test_interview_plan_one_per_stratum_when_room() -> None:
    candidates = {f"p{k}": "parenting" for k in range(6)} | {f"h{k}": "housing" for k in range(3)} | {
        "d0": "domestic_abuse"}
    drawn5 = plan_interviews(candidates, 5, seed=3)
    strata = [candidates[t] for t in drawn5]
    # minimum 1 each, then 2 left by remaining capacity 5/2/0 -> 5*2/7 = 1.43, 0.57 -> 1 and 1.
    assert sorted(strata) == ["domestic_abuse", "housing", "housing", "parenting", "parenting"]
    assert plan_interviews(candidates, 5, seed=3) == drawn5
    assert len(plan_interviews(candidates, 2, seed=3)) == 2  # fewer than strata: plain Hamilton
    assert sorted(plan_interviews(candidates, 20, seed=3)) == sorted(candidates)


def test_interview_draw_is_stored_once(runtime: Runtime) -> None:
    s = survey_settings(runtime.settings, sample_size=20, interview_min=5, interview_max=10)
    drawn(runtime, s)
    with pytest.raises(FieldworkError, match="no respondent has opted in"):
        draw_interviews(runtime.engine, s)
    tokens = sorted(households(runtime.engine, 1))[:4]
    respond(runtime.engine, tokens)
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE responses SET q10_interview_opt_in = :y WHERE token <> :t"),
                     {"y": True, "t": tokens[0]})
    draw = draw_interviews(runtime.engine, s)
    assert draw.as_json() == {"tokens": sorted(tokens[1:]), "eligible": 3, "drawn": 3, "short": True,
                              "seed": 202201107, "created": True}
    assert draw_interviews(runtime.engine, s).tokens == draw.tokens


def test_pack_passphrase_created_once_0600(tmp_path: Path, sqlite_runtime: Runtime) -> None:
    first, created = sqlite_runtime.secrets.passphrase_or_create(PACK_PASSPHRASE)
    second, again = sqlite_runtime.secrets.passphrase_or_create(PACK_PASSPHRASE)
    assert created and not again and first == second and len(first) == 32
    path = sqlite_runtime.home.keys / "pack_passphrase"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_smtp_mailer_starttls_refused_is_unavailable(smtp: tuple[Inbox, int]) -> None:
    """STARTTLS against a server that does not offer it fails as 'unavailable', no text leaks."""
    from tasks.core.settings import SmtpSettings
    from tasks.survey.mailer import MailUnavailable

    _, port = smtp
    mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, starttls=True, timeout_seconds=5))
    with pytest.raises(MailUnavailable) as caught, mailer.session() as session:
        assert isinstance(session, MailSession)
    assert "zqx" not in str(caught.value).lower()


def test_nothing_is_sent_after_fieldwork_ends(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    today = uk_date(datetime.now(UTC).isoformat())
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    mailer = FakeMailer()
    send_invitations(fieldwork(rt, s, key, mailer), 1)
    ended = survey_settings(rt.settings, sample_size=20, fieldwork_end=today + timedelta(days=10))
    late = send_reminders(fieldwork(rt, ended, key, mailer), today + timedelta(days=14))
    assert late.total_sent() == 0 and late.superseded == 0
    assert send_reminders(fieldwork(rt, ended, key, mailer), today + timedelta(days=7)).total_sent() == 20
    over = survey_settings(rt.settings, sample_size=20, fieldwork_end=today - timedelta(days=1))
    with pytest.raises(FieldworkError, match=f"fieldwork ended on {today - timedelta(days=1)}"):
        send_invitations(fieldwork(rt, over, key, mailer), 1)


class RejectsData(Inbox):
    """A server that refuses every message body (a systematic failure, not a bounce)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "554 5.7.1 message refused"


def test_refused_message_is_not_a_bounce(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    port = free_port()
    controller = Controller(RejectsData(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        s = smtp_settings(rt.settings, port)
        key = drawn(rt, s)
        report = send_invitations(fieldwork(rt, s, key), 1)
    finally:
        controller.stop()
    assert report.bounced == 0 and len(report.not_contacted) == 10
    assert ("invitation", "email", "bounced") not in tally(attempts(rt.engine))


def test_address_that_cannot_be_a_header_is_unreachable(sqlite_runtime: Runtime) -> None:
    from tasks.ingest.load import store_contacts

    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    key = drawn(rt, s)
    token, household = sorted((t, h) for t, h in households(rt.engine, 1).items()
                              if h["route"] == "email")[0]
    bad = contact(1)
    bad = type(bad)(**{**bad.__dict__, "email": "zqxmail@example.invalid\nBcc: x@example.invalid"})
    with rt.engine.begin() as conn:
        store_contacts(conn, key, "pilot", "e" * 64, {household["family_pid"]: bad})
    mailer = FakeMailer()
    report = send_invitations(fieldwork(rt, s, key, mailer), 1)
    assert report.unreachable == 1 and len(mailer.sent) == 9
