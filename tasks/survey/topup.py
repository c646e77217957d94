"""Top-up waves from the Prefect UI: which wave, its proposal, the approval and its audit.

The ``survey-topup`` flow proposes the next wave (or finds it already drawn), publishes the
proposal, pauses for a ``TopUpApproval`` and only then draws the wave and sends its
invitations. The decisions are here as plain functions; the flow only orders them.
"""

from __future__ import annotations

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from sqlalchemy import Engine

from tasks.core.audit import append_audit
from tasks.core.settings import Settings
from tasks.survey.sampling import SamplingError, WavePlan, WaveResult, next_wave_number, plan_wave

APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600


class TopUpApproval(RunInput):
    """The research lead's decision on a proposed top-up wave."""

    approve: bool = False


def check_topup_wave(wave: int) -> int:
    """The wave number if a top-up may draw it (2 or later), else a one-line SamplingError."""
    if wave < 2:
        raise SamplingError("the top-up flow draws waves 2 and later; draw wave 1 with "
                            "cluster-eval sample --wave 1")
    return wave


def propose_topup(engine: Engine, settings: Settings, contact_key: bytes | None, wave: int | None,
                  size: int | None) -> WavePlan | WaveResult:
    """The top-up wave (default: the next one) as already drawn, or its proposal (read-only)."""
    number = check_topup_wave(wave or next_wave_number(engine, settings.study.cluster))
    return plan_wave(engine, settings, contact_key, number, size)


def await_approval(proposal_markdown: str, timeout_seconds: int, poll_interval_seconds: int) -> bool:
    """Pause the calling flow run until the proposal is approved or rejected (fails on timeout)."""
    decision = pause_flow_run(
        wait_for_input=TopUpApproval.with_initial_data(description=proposal_markdown, approve=False),
        timeout=timeout_seconds, poll_interval=poll_interval_seconds)
    return decision.approve


def record_topup_decision(engine: Engine, cluster: str, wave: int, approved: bool,
                          flow_run_id: str | None) -> None:
    """Audit the approval or rejection of a proposed top-up wave."""
    with engine.begin() as conn:
        append_audit(conn, cluster, "survey_topup_decision", {"wave": wave, "approved": approved},
                     flow_run_id)
