"""Sampling flows: draw a wave, top up with human approval, watch the response rate.

``cluster-eval sample --wave N`` runs ``sample-wave``: the command itself is the human
decision, so it draws at once (wave 1, or a top-up wave) and sends nothing; invitations are
``cluster-eval invite --wave N``. The ``survey-topup`` deployment is for the Prefect UI: it
proposes the next wave, publishes the proposal and pauses (``pause_flow_run`` waiting for a
``TopUpApproval``) before anything is drawn or sent; approved, it draws the wave and sends
its invitations. ``response-rate-monitor`` runs daily and emits
``cluster-eval.response-rate.low`` when the response rate of the waves past their last
reminder is below ``survey.low_response_threshold``; that event triggers a top-up proposal.
The deployments and their schedules are in ``deployments/survey.py``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.survey.fieldwork import uk_today
from tasks.survey.monitor import monitor_result
from tasks.survey.outgoing import raise_if_not_contacted
from tasks.survey.sampling import WaveResult
from tasks.survey.steps import (
    check_response_rate_task,
    draw_wave_task,
    emit_low_rate_task,
    low_rate_to_signal_task,
    propose_wave_task,
    publish_allocation_task,
    publish_proposal_task,
    record_decision_task,
    record_low_rate_signal_task,
    send_invitations_task,
)
from tasks.survey.topup import APPROVAL_TIMEOUT_SECONDS, await_approval
from tasks.survey.wiring import contact_key_if_any, fieldwork_context


@flow(name=flow_names.SAMPLE_WAVE, persist_result=False)
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


@flow(name=flow_names.SURVEY_TOPUP, persist_result=False)
def topup_flow(wave: int | None = None, size: int | None = None,
               approval_timeout_seconds: int = APPROVAL_TIMEOUT_SECONDS,
               poll_interval_seconds: int = 10) -> dict[str, Any]:
    """Propose a top-up wave, wait for approval, then draw it and send its invitations.

    Args:
        wave: the wave to draw (default: the next one, 2 or later).
        size: households to draw (default: enough to reach the target respondents).
        approval_timeout_seconds: how long to wait for a decision before failing the run.
        poll_interval_seconds: how often the paused run checks for the decision.
    """
    rt = current_runtime()
    key = contact_key_if_any(rt)
    proposal = propose_wave_task(rt.engine, rt.settings, key, wave, size)
    if isinstance(proposal, WaveResult):
        return {"status": "already_drawn", **proposal.as_json()}
    markdown = publish_proposal_task(rt.cluster, proposal)
    approved = await_approval(markdown, approval_timeout_seconds, poll_interval_seconds)
    record_decision_task(rt.engine, rt.cluster, proposal.wave, approved, flow_run.get_id())
    if not approved:
        return {"status": "rejected", "wave": proposal.wave}
    result = draw_wave_task(rt.engine, rt.settings, key, proposal.wave, size, flow_run.get_id(),
                            expected=proposal)
    publish_allocation_task(rt.cluster, result)
    report = send_invitations_task(fieldwork_context(rt, flow_run.get_id()), proposal.wave)
    raise_if_not_contacted(rt.settings, report, f"cluster-eval invite --wave {proposal.wave}")
    return {"status": "drawn", **result.as_json(), "invitations": report.as_json()}


@flow(name=flow_names.RESPONSE_RATE_MONITOR, persist_result=False)
def monitor_flow(as_of: date | None = None) -> dict[str, Any]:
    """Check the response rate of waves past their last reminder; emit an event when it is low.

    Args:
        as_of: the day to judge (default: today, UK time).
    """
    rt = current_runtime()
    check = check_response_rate_task(rt.engine, rt.settings, as_of or uk_today())
    signal = low_rate_to_signal_task(rt.engine, rt.cluster, check)  # once per reminder cycle
    event_id = emit_low_rate_task(rt.cluster, check) if signal else None
    if signal:
        record_low_rate_signal_task(rt.engine, rt.cluster, check, flow_run.get_id())
    return monitor_result(check, signal, event_id)
