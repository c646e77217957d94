"""Fieldwork flows: invitations for a wave, due reminders, the interview sub-sample.

The CLI commands ``invite``, ``remind`` and ``interviews`` run these flows. When the mail
server stays unreachable after the configured retries, the run records exactly who was
reached, fails with one line saying how many households were not contacted, and lists
their tokens in the ``--json`` output; running the command again contacts only those.
A run with nothing to send ends Completed with a line saying so. Run summaries are counts
only: the interview draw's tokens stay in the command's output, never in Prefect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime
from tasks.survey.fieldwork import uk_today
from tasks.survey.outgoing import DeliveryReport, raise_if_not_contacted
from tasks.survey.steps import draw_interviews_task, send_invitations_task, send_reminders_task
from tasks.survey.wiring import contact_key_if_any, fieldwork_context

_OUTCOMES = ("bounced", "unreachable", "withheld", "superseded", "skipped")


def delivery_summary(result: Mapping[str, Any]) -> str:
    """One line of counts: messages sent by kind and route, the other outcomes, packs written."""
    sent = "; ".join(f"{kind}: {sum(by.values())} sent ({by['email']} e-mail, {by['post']} post, "
                     f"{by['phone']} phone)" for kind, by in result["sent"].items()) or "nothing sent"
    others = ", ".join(f"{result[k]} {k}" for k in _OUTCOMES)
    where = f"wave {result['wave']}" if "wave" in result else f"as of {result['as_of']}"
    return f"{where}: {sent}; {others}; {len(result['packs'])} fieldwork pack(s) written"


def _nothing_done(report: DeliveryReport) -> bool:
    """Nothing sent, recorded or written: every household was dealt with before."""
    return not (report.total_sent() or report.bounced or report.unreachable or report.withheld
                or report.superseded or report.packs)


def _interview_summary(result: Mapping[str, Any]) -> str:
    again = "" if result["created"] else " (drawn before; unchanged)"
    short = " (fewer than the minimum: too few opted in)" if result["short"] else ""
    return f"{result['drawn']} of {result['eligible']} opted-in respondents drawn for interview{short}{again}"


def _reminders_name(params: Mapping[str, Any]) -> str:
    return f"reminders {params.get('as_of') or uk_today()}"


@project_flow(flow_names.SEND_INVITATIONS, run_name=lambda p: f"invite wave {p['wave']}",
              summary=delivery_summary)
def invite_flow(wave: int) -> dict[str, Any]:
    """Invite every household of a wave not yet invited: e-mail, or the encrypted fieldwork pack.

    Args:
        wave: the survey wave whose households to invite.
    """
    rt = current_runtime()
    report = send_invitations_task(fieldwork_context(rt, flow_run.get_id()), wave)
    result = {"wave": wave, **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval invite --wave {wave}", result)
    if _nothing_done(report):
        raise NothingToDo(f"wave {wave}: every household was invited before; nothing to do", result)
    return result


@project_flow(flow_names.SEND_REMINDERS, run_name=_reminders_name, summary=delivery_summary)
def remind_flow(as_of: date | None = None) -> dict[str, Any]:
    """Send every reminder due by a date that has not been sent yet (safe to run twice).

    Args:
        as_of: the day to send for (default: today, UK time).
    """
    rt = current_runtime()
    day = as_of or uk_today()
    if contact_key_if_any(rt) is None:  # nothing ingested yet, so no wave and no reminder
        raise NothingToDo(f"no reminder is due by {day}: no extract has been ingested and no wave drawn yet",
                          {"as_of": day.isoformat(), **DeliveryReport().as_json()})
    report = send_reminders_task(fieldwork_context(rt, flow_run.get_id()), day)
    result = {"as_of": day.isoformat(), **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval remind --as-of {day}", result)
    if _nothing_done(report):
        raise NothingToDo(f"no reminder due by {day} that was not sent before; nothing to do", result)
    return result


@project_flow(flow_names.DRAW_INTERVIEWS, run_name=lambda p: "interview draw", summary=_interview_summary)
def interviews_flow() -> dict[str, Any]:
    """Draw the family interview sub-sample among opted-in respondents (tokens only), once."""
    rt = current_runtime()
    return draw_interviews_task(rt.engine, rt.settings, flow_run.get_id()).as_json()
