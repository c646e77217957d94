"""Sampling flows: draw a wave, top up with a human decision, check whether a top-up is needed.

``cluster-eval sample --wave N`` runs ``sample-wave``: the command itself is the human decision,
so it draws at once (wave 1, or a top-up wave) and sends nothing; invitations are
``cluster-eval invite --wave N``. The ``survey-topup`` deployment is for the Prefect UI: it fixes
its wave number (recorded before it pauses, so a Retry finishes that wave and draws nobody new),
publishes the decision form's facts and pauses for ``TopUpDecision`` (approve / reject, a note)
before anything is drawn or sent; approved, it draws the wave and sends its invitations.
``response-rate-monitor`` runs daily and emits ``cluster-eval.response-rate.low`` when the top-up
rule (``tasks.survey.need``) says a top-up is needed; that event triggers the top-up, which asks
the same rule. The deployments and their schedules are in ``deployments/survey.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import project_flow, rename_current_run
from tasks.core.runtime import current_runtime
from tasks.survey.fieldwork import uk_today
from tasks.survey.monitor import monitor_result, monitor_summary
from tasks.survey.steps import (
    check_topup_need_task,
    draw_wave_task,
    emit_topup_needed_task,
    need_to_signal_task,
    publish_allocation_task,
    publish_decision_form_task,
    record_decision_task,
    record_signal_task,
    send_invitations_task,
    start_topup_task,
)
from tasks.survey.topup import (
    await_decision,
    check_topup_parameters,
    raise_if_topup_not_contacted,
    record_cancelled_topup,
    stop_unless_approved,
    topup_result,
    topup_run_or_stop,
    topup_summary,
)
from tasks.survey.wiring import contact_key_if_any, fieldwork_context


def sample_summary(result: Mapping[str, Any]) -> str:
    """One line of counts: the wave, its households per stratum and the frame."""
    parts = ", ".join(f"{h} {n}" for h, n in result["allocation"].items() if n)
    return (f"wave {result['wave']} drawn: {len(result['households'])} households ({parts}) from a frame "
            f"of {sum(result['frame'].values())}; nothing sent yet (invitations: send-invitations)")


def _topup_name(params: Mapping[str, Any]) -> str:
    return f"top-up wave {params['wave']}" if params.get("wave") else "top-up"


@project_flow(flow_names.SAMPLE_WAVE, run_name=lambda p: f"draw wave {p['wave']}", summary=sample_summary)
def sample_flow(wave: int, size: int | None = None) -> dict[str, Any]:
    """Draw survey wave N, or return it unchanged when it was drawn before.

    Args:
        wave: 1 for the stratified sample; 2 and later for top-ups from never-sampled households.
        size: households to draw (default: survey.sample_size for wave 1; for later waves the
            number needed to reach the target respondents at the expected response rate).
    """
    rt = current_runtime()
    result = draw_wave_task(rt.engine, rt.settings, contact_key_if_any(rt), wave, size, flow_run.get_id())
    publish_allocation_task(rt.cluster, result)
    return result.as_json()


@project_flow(flow_names.SURVEY_TOPUP, run_name=_topup_name, summary=topup_summary,
              on_cancellation=[record_cancelled_topup])
def topup_flow(wave: int | None = None, size: int | None = None,
               approval_timeout_hours: float = 168) -> dict[str, Any]:
    """Propose a top-up wave, pause for approve / reject, then draw it and send its invitations.

    Safe to Retry: the run's wave is fixed (and recorded) before it pauses; a retry only finishes
    that wave (the invitations not sent yet) and never draws another.

    Args:
        wave: the wave to draw (default: the next one, 2 or later).
        size: households to draw (default: what the top-up rule proposes; with the default nothing
            is drawn unless the rule says a top-up is needed; a size given draws anyway).
        approval_timeout_hours: hours to wait for a decision; then the run ends Completed, nothing drawn.
    """
    check_topup_parameters(size, approval_timeout_hours)
    rt = current_runtime()
    run_id = flow_run.get_id() or ""
    key = contact_key_if_any(rt)
    start = start_topup_task(rt.engine, rt.settings, key, run_id, wave, size, uk_today())
    run = topup_run_or_stop(start)
    rename_current_run(f"top-up wave {run.wave}")
    if run.decision is None and start.plan is not None:
        form = publish_decision_form_task(rt.engine, rt.settings, start.plan)
        answer = await_decision(form, run, approval_timeout_hours, rt.settings.survey.approval_poll_seconds)
        run = record_decision_task(rt.engine, rt.cluster, run, answer, run_id)
    stop_unless_approved(run, approval_timeout_hours)
    drawn = draw_wave_task(rt.engine, rt.settings, key, run.wave, run.size, run_id, approved=run.allocation)
    publish_allocation_task(rt.cluster, drawn)
    report = send_invitations_task(fieldwork_context(rt, run_id), run.wave)
    result = topup_result(drawn, report)
    raise_if_topup_not_contacted(rt.settings, report, run.wave, result)
    return result


@project_flow(flow_names.RESPONSE_RATE_MONITOR,
              run_name=lambda p: f"response-rate check {p.get('as_of') or uk_today()}", summary=monitor_summary)
def monitor_flow(as_of: date | None = None) -> dict[str, Any]:
    """Ask the top-up rule; when a top-up is needed, emit the event that proposes one (once per wave).

    Args:
        as_of: the day to judge (default: today, UK time).
    """
    rt = current_runtime()
    need = check_topup_need_task(rt.engine, rt.settings, as_of or uk_today())
    signal = need_to_signal_task(rt.engine, rt.cluster, need)
    event_id = emit_topup_needed_task(rt.cluster, need) if signal else None
    if signal:
        record_signal_task(rt.engine, rt.cluster, need, flow_run.get_id())
    return monitor_result(need, signal, event_id)
