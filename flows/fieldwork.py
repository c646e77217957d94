"""Fieldwork flows: invitations for a wave, due reminders, the interview sub-sample.

The CLI commands ``invite``, ``remind`` and ``interviews`` run these flows. When the mail
server stays unreachable after the configured retries, the run records exactly who was
reached, fails with one line saying how many households were not contacted, and lists
their tokens in the ``--json`` output; running the command again contacts only those.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import Runtime, current_runtime
from tasks.core.secrets import CONTACT_KEY, PACK_PASSPHRASE
from tasks.core.settings import Settings
from tasks.survey.fieldwork import (
    UK_TIME,
    DeliveryReport,
    Fieldwork,
    FieldworkError,
    draw_interviews_task,
    send_invitations_task,
    send_reminders_task,
)


class NotContacted(FieldworkError):
    """Some households could not be contacted; ``result`` holds the run's report."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def fieldwork_context(rt: Runtime) -> Fieldwork:
    """Wire the database, mailer, contact key and pack passphrase for a fieldwork run."""
    passphrase, created = rt.secrets.passphrase_or_create(PACK_PASSPHRASE)
    return Fieldwork(rt.engine, rt.settings, rt.home, rt.mailer,
                     rt.secrets.key(CONTACT_KEY), passphrase, created, flow_run.get_id())


def raise_if_not_contacted(settings: Settings, report: DeliveryReport, rerun: str,
                           result: dict[str, Any] | None = None) -> None:
    """Fail the run with one line when the mail server left households uncontacted."""
    if report.not_contacted:
        smtp = settings.smtp
        raise NotContacted(
            f"{len(report.not_contacted)} household(s) were not contacted: the mail server "
            f"{smtp.host}:{smtp.port} did not accept messages after {smtp.retries} retries; "
            f"{report.total_sent()} were contacted and recorded; run `{rerun}` again when the "
            "server is reachable (their tokens are in the --json output)",
            result or report.as_json())


@flow(name=flow_names.SEND_INVITATIONS, persist_result=False)
def invite_flow(wave: int) -> dict[str, Any]:
    """Invite every household of a wave not yet invited: e-mail, or the encrypted fieldwork pack.

    Args:
        wave: the survey wave whose households to invite.
    """
    rt = current_runtime()
    report = send_invitations_task(fieldwork_context(rt), wave)
    result = {"wave": wave, **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval invite --wave {wave}", result)
    return result


@flow(name=flow_names.SEND_REMINDERS, persist_result=False)
def remind_flow(as_of: date | None = None) -> dict[str, Any]:
    """Send every reminder due by a date that has not been sent yet (safe to run twice).

    Args:
        as_of: the day to send for (default: today, UK time).
    """
    rt = current_runtime()
    day = as_of or datetime.now(UK_TIME).date()
    report = send_reminders_task(fieldwork_context(rt), day)
    result = {"as_of": day.isoformat(), **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval remind --as-of {day}", result)
    return result


@flow(name=flow_names.DRAW_INTERVIEWS, persist_result=False)
def interviews_flow() -> dict[str, Any]:
    """Draw the family interview sub-sample among opted-in respondents (tokens only), once."""
    rt = current_runtime()
    return draw_interviews_task(rt.engine, rt.settings, flow_run_id=flow_run.get_id()).as_json()


