"""Delivering messages: e-mail through the mailer, post and phone through a fieldwork pack.

Contact details are decrypted in memory only. Every contact attempt is recorded in
``contact_attempts`` (primary key token + kind), only after the message left (e-mail
accepted by the server; pack written), one household per transaction for e-mail, so a
failure part-way loses nothing and a re-run contacts nobody twice. Outcomes: ``sent``
(e-mail), ``pack`` (in a fieldwork pack), ``bounced`` (the server refused the address),
``unreachable`` (no usable details left), ``withheld`` (the contact store now says
do-not-contact). Just before each send the household is checked again against the
``contactable_households`` view (migration 0006), the one place that rule lives.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import Engine

from tasks.core.contacts import ContactRecord, load_contacts
from tasks.core.db import query, rows
from tasks.core.settings import Settings
from tasks.survey.mailer import MailRejected, MailSession, MailUnavailable
from tasks.survey.outgoing import INVITATION, DeliveryReport, Fieldwork, Outgoing
from tasks.survey.packs import PACK_CATEGORY, pack_members, survey_url, write_pack
from tasks.survey.sampling import contact_route, route_details_present


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


def record_attempts(engine: Engine, cluster: str, items: Sequence[Outgoing], outcome: str,
                    at: datetime) -> None:
    """Record one contact attempt per item with the same outcome (one transaction)."""
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


def _send_one(fw: Fieldwork, session: MailSession, item: Outgoing,
              contacts: Mapping[str, ContactRecord], now: datetime, report: DeliveryReport) -> None:
    """Send one e-mail and record its outcome (MailUnavailable propagates: nothing recorded)."""
    if not _still_contactable(fw.engine, fw.cluster, item):
        report.skipped += 1
        return
    try:
        message = email_message(fw.settings, contacts[item.family_pid], item)
    except ValueError:  # an address no header can carry: treat as unusable
        record_attempts(fw.engine, fw.cluster, [item], "unreachable", now)
        report.unreachable += 1
        return
    try:
        session.send(message)
    except MailRejected:
        record_attempts(fw.engine, fw.cluster, [item], "bounced", now)
        report.bounced += 1
        return
    record_attempts(fw.engine, fw.cluster, [item], "sent", now)
    report.count(item.kind, "email")


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
                    _send_one(fw, session, pending[0], contacts, now, report)
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
    record_attempts(fw.engine, fw.cluster, unreachable, "unreachable", now)
    record_attempts(fw.engine, fw.cluster, withheld, "withheld", now)
    report.unreachable, report.withheld = len(unreachable), len(withheld)
    _send_pack(fw, [i for i in ready if i.route != "email"], contacts, label, now, report)
    _send_emails(fw, [i for i in ready if i.route == "email"], contacts, now, report)
    return report
