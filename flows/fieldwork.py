"""Fieldwork flows: invitations for a wave, due reminders, the interview sub-sample.

The CLI commands ``invite``, ``remind`` and ``interviews`` run these flows. When the mail
server stays unreachable after the configured retries, the run records exactly who was
reached, fails with one line saying how many households were not contacted, and lists
their tokens in the ``--json`` output; running the command again contacts only those.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.survey.fieldwork import uk_today
from tasks.survey.outgoing import raise_if_not_contacted
from tasks.survey.steps import draw_interviews_task, send_invitations_task, send_reminders_task
from tasks.survey.wiring import fieldwork_context


@flow(name=flow_names.SEND_INVITATIONS, persist_result=False)
def invite_flow(wave: int) -> dict[str, Any]:
    """Invite every household of a wave not yet invited: e-mail, or the encrypted fieldwork pack.

    Args:
        wave: the survey wave whose households to invite.
    """
    rt = current_runtime()
    report = send_invitations_task(fieldwork_context(rt, flow_run.get_id()), wave)
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
    day = as_of or uk_today()
    report = send_reminders_task(fieldwork_context(rt, flow_run.get_id()), day)
    result = {"as_of": day.isoformat(), **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval remind --as-of {day}", result)
    return result


@flow(name=flow_names.DRAW_INTERVIEWS, persist_result=False)
def interviews_flow() -> dict[str, Any]:
    """Draw the family interview sub-sample among opted-in respondents (tokens only), once."""
    rt = current_runtime()
    return draw_interviews_task(rt.engine, rt.settings, flow_run.get_id()).as_json()
