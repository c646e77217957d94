"""Sampling flows: draw a wave, top up with human approval, watch the response rate.

``cluster-eval sample --wave N`` runs ``sample-wave``: the command itself is the human
decision, so it draws at once (wave 1, or a top-up wave) and sends nothing; invitations are
``cluster-eval invite --wave N``. The ``survey-topup`` deployment is for the Prefect UI: it
proposes the next wave, publishes the proposal and pauses (``pause_flow_run`` waiting for a
``TopUpApproval``) before anything is drawn or sent; approved, it draws the wave and sends
its invitations. ``response-rate-monitor`` runs daily and emits
``cluster-eval.response-rate.low`` when the response rate of the waves past their last
reminder is below ``survey.low_response_threshold``; that event triggers a top-up proposal.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.schedules import Cron

from flows.fieldwork import fieldwork_context, raise_if_not_contacted, remind_flow
from tasks.core import flow_names
from tasks.core.audit import append_audit
from tasks.core.runtime import Runtime, current_runtime, run_tags
from tasks.core.secrets import CONTACT_KEY
from tasks.core.settings import Settings
from tasks.survey.fieldwork import (
    UK_TIME,
    RateCheck,
    check_response_rate_task,
    low_rate_to_signal,
    record_low_rate_signal,
    send_invitations_task,
)
from tasks.survey.sampling import (
    SamplingError,
    WaveResult,
    draw_wave_task,
    next_wave_number,
    plan_wave_task,
    publish_allocation_task,
    publish_proposal_task,
)

LOW_RATE_EVENT = "cluster-eval.response-rate.low"
REMINDER_CRON = "0 9 * * *"
MONITOR_CRON = "0 10 * * *"
SCHEDULE_TIMEZONE = "Europe/London"
APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600
MODULE = EntrypointType.MODULE_PATH  # served from the installed package, whatever the cwd


class TopUpApproval(RunInput):
    """The research lead's decision on a proposed top-up wave."""

    approve: bool = False


def contact_key_if_any(rt: Runtime) -> bytes | None:
    """The contact key when one exists (none before the first ingest)."""
    return rt.secrets.key_if_any(CONTACT_KEY)


def cluster_resource(cluster: str) -> dict[str, str]:
    """The Prefect resource that survey events concern."""
    return {"prefect.resource.id": f"cluster-eval.cluster.{cluster}",
            "prefect.resource.name": cluster}


@flow(name=flow_names.SAMPLE_WAVE, persist_result=False)
def sample_flow(wave: int, size: int | None = None) -> dict[str, Any]:
    """Draw survey wave N, or return it unchanged when it was drawn before.

    Args:
        wave: 1 for the stratified sample; 2 and later for top-ups from never-sampled households.
        size: households to draw (default: survey.sample_size for wave 1; for later waves the
            number needed to reach the target respondents at the expected response rate).
    """
    rt = current_runtime()
    result = draw_wave_task(rt.engine, rt.settings, contact_key_if_any(rt), wave, size,
                            flow_run_id=flow_run.get_id())
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
    number = wave or next_wave_number(rt.engine, rt.cluster)
    if number < 2:
        raise SamplingError("the top-up flow draws waves 2 and later; draw wave 1 with "
                            "cluster-eval sample --wave 1")
    proposal = plan_wave_task(rt.engine, rt.settings, key, number, size)
    if isinstance(proposal, WaveResult):
        return {"status": "already_drawn", **proposal.as_json()}
    markdown = publish_proposal_task(rt.cluster, proposal)
    decision = pause_flow_run(
        wait_for_input=TopUpApproval.with_initial_data(description=markdown, approve=False),
        timeout=approval_timeout_seconds, poll_interval=poll_interval_seconds)
    if not decision.approve:
        record_decision_task(rt, number, approved=False)
        return {"status": "rejected", "wave": number}
    record_decision_task(rt, number, approved=True)
    result = draw_wave_task(rt.engine, rt.settings, key, number, size,
                            flow_run_id=flow_run.get_id(), expected=proposal)
    publish_allocation_task(rt.cluster, result)
    report = send_invitations_task(fieldwork_context(rt), number)
    raise_if_not_contacted(rt.settings, report, f"cluster-eval invite --wave {number}")
    return {"status": "drawn", **result.as_json(), "invitations": report.as_json()}


@task(name="record-topup-decision", persist_result=False, cache_policy=NO_CACHE)
def record_decision_task(rt: Runtime, wave: int, approved: bool) -> None:
    """Audit the approval or rejection of a proposed top-up wave."""
    with rt.engine.begin() as conn:
        append_audit(conn, rt.cluster, "survey_topup_decision",
                     {"wave": wave, "approved": approved}, flow_run.get_id())


@task(name="emit-low-response-event", persist_result=False, cache_policy=NO_CACHE)
def emit_low_rate_task(cluster: str, check: RateCheck) -> str | None:
    """Emit the low-response-rate event (counts only); return its id."""
    event = emit_event(event=LOW_RATE_EVENT, resource=cluster_resource(cluster),
                       payload=check.as_json())
    return str(event.id) if event is not None else None


@flow(name=flow_names.RESPONSE_RATE_MONITOR, persist_result=False)
def monitor_flow(as_of: date | None = None) -> dict[str, Any]:
    """Check the response rate of waves past their last reminder; emit an event when it is low.

    Args:
        as_of: the day to judge (default: today, UK time).
    """
    rt = current_runtime()
    check = check_response_rate_task(rt.engine, rt.settings, as_of or datetime.now(UK_TIME).date())
    signal = low_rate_to_signal(rt.engine, rt.cluster, check)  # once per reminder cycle
    event_id = emit_low_rate_task(rt.cluster, check) if signal else None
    if signal:
        record_low_rate_signal(rt.engine, rt.cluster, check, flow_run.get_id())
    return {**check.as_json(), "event": LOW_RATE_EVENT if signal else None,
            "already_signalled": check.low and not signal, "event_id": event_id}


def survey_deployments(settings: Settings) -> list[Any]:
    """Deployments to serve: manual top-up (also proposed on a low-rate event), daily reminders and monitor."""
    cluster = settings.study.cluster
    low_rate = DeploymentEventTrigger(
        name=f"{cluster}: propose a top-up wave when the response rate is low",
        expect={LOW_RATE_EVENT}, match={"prefect.resource.id": f"cluster-eval.cluster.{cluster}"},
        parameters={"wave": None, "size": None})
    return [
        topup_flow.to_deployment(
            name="top-up", tags=["survey", *run_tags(cluster)], triggers=[low_rate], entrypoint_type=MODULE,
            description="Propose a top-up survey wave (parameters wave, size), pause for approval, "
                        "then draw it and send its invitations."),
        remind_flow.to_deployment(
            name="daily", tags=["survey", *run_tags(cluster)], entrypoint_type=MODULE,
            schedules=[Cron(REMINDER_CRON, timezone=SCHEDULE_TIMEZONE)],
            description="Send every survey reminder that is due (idempotent)."),
        monitor_flow.to_deployment(
            name="daily", tags=["survey", *run_tags(cluster)], entrypoint_type=MODULE,
            schedules=[Cron(MONITOR_CRON, timezone=SCHEDULE_TIMEZONE)],
            description="Emit cluster-eval.response-rate.low when the response rate is low."),
    ]


