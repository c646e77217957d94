"""Survey fieldwork: invitations for a wave, due reminders, the interview sub-sample.

Messages go out through ``tasks.survey.delivery`` (e-mail, or the encrypted fieldwork pack
of ``tasks.survey.packs``), which records every attempt once. Outcomes besides those of a
delivery: ``superseded`` (an earlier reminder overtaken by a later one).

Reminder k is due ``survey.reminder_days[k]`` days after the household's invitation, by
``survey.reminder_routes[k]``: ``same`` (the invitation's route) or ``phone`` (the call list;
the invitation's route when there is no phone number). It is never sent to a household that
has responded, withdrawn, is do-not-contact or bounced; this is re-checked just before each
send. When several reminders are due at once only the latest is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from tasks.core.audit import append_audit
from tasks.core.contacts import ContactRecord, load_contacts
from tasks.core.db import query, rows
from tasks.core.settings import Settings
from tasks.survey.allocation import draw_stratified, hamilton_allocation
from tasks.survey.delivery import deliver, record_attempts
from tasks.survey.outgoing import INVITATION, DeliveryReport, Fieldwork, FieldworkError, Outgoing, reminder_kind
from tasks.survey.sampling import route_details_present

UK_TIME = ZoneInfo("Europe/London")


def uk_today() -> date:
    """Today's calendar day in the UK (the default day of reminders and the monitor)."""
    return datetime.now(UK_TIME).date()


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
    record_attempts(fw.engine, fw.cluster, overtaken, "superseded", now)
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
