"""Top-up waves from the Prefect UI: the wave a run fixes, its decision form, the decision and its audit.

A ``survey-topup`` flow run fixes its wave number when it first runs and records it in
``topup_runs`` (migration 0008) with the proposed size and allocation BEFORE it pauses, so a
retry of the same flow run (Prefect's retries, the UI's Retry) finishes that wave and no other:

* decided ``approved`` and drawn: it only sends the invitations not sent yet (``send_invitations``
  skips every household already invited);
* ``approved`` but not drawn: it draws exactly the approved households per stratum;
* ``rejected``, ``timed_out`` or ``cancelled``: it ends Completed saying so, drawing nothing;
* undecided: it proposes the same wave again and pauses under a new pause key (Prefect refuses a
  pause key it has seen).

Whether a top-up is needed at all is the one rule of ``tasks.survey.need``; an explicit ``size``
draws anyway. The decision form (``TopUpDecision``) and the proposal artifact hold counts only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from fractions import Fraction
from math import ceil
from typing import Any, Literal
from uuid import UUID

from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import Engine

from tasks.core.audit import append_audit
from tasks.core.db import query, rows
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import NothingToDo
from tasks.core.prefect import artifact_key
from tasks.core.settings import Settings
from tasks.survey.need import topup_need
from tasks.survey.outgoing import DeliveryReport, NotContacted
from tasks.survey.sampling import SamplingError, WavePlan, WaveResult, next_wave_number, plan_wave

Decision = Literal["approved", "rejected", "timed_out", "cancelled"]
PROPOSED_AUDIT = "survey_topup_proposed"
DECISION_AUDIT = "survey_topup_decision"
NOTE_MAX_CHARS = 200


class TopUpDecision(RunInput):
    """The research lead's decision on a proposed top-up wave (the form the Prefect UI shows)."""

    decision: Literal["approve", "reject"] = Field(
        title="Decision",
        description="approve: draw this wave and send its invitations now; reject: draw nobody")
    note: str | None = Field(
        None, title="Note",
        description="Optional: why, in a few words. Do not write names or contact details.")


@dataclass(frozen=True)
class TopUpRun:
    """A top-up flow run's fixed wave, its proposal (counts per stratum) and its decision."""

    flow_run_id: str
    wave: int
    requested_size: int | None
    size: int
    allocation: dict[str, int]
    decision: Decision | None = None


@dataclass(frozen=True)
class TopUpStart:
    """Where a top-up run starts: its run (and a proposal to decide on), or a line why nothing is to do."""

    run: TopUpRun | None
    plan: WavePlan | None = None
    stop: str | None = None
    stop_result: dict[str, Any] = field(default_factory=dict)
    retry: bool = False


def check_topup_wave(wave: int) -> int:
    """The wave number if a top-up may draw it (2 or later), else a one-line SamplingError."""
    if wave < 2:
        raise SamplingError("the top-up flow draws waves 2 and later; draw wave 1 with "
                            "cluster-eval sample --wave 1 (or the sample-wave deployment)")
    return wave


def check_topup_parameters(size: int | None, approval_timeout_hours: float) -> None:
    """One-line SamplingError for a size or timeout a person cannot have meant."""
    if size is not None and size < 1:
        raise SamplingError(f"size {size} is not a number of households to draw: give 1 or more, or leave "
                            "it empty for the size the top-up rule proposes")
    if not approval_timeout_hours > 0:
        raise SamplingError(f"approval_timeout_hours {approval_timeout_hours:g} must be more than 0 "
                            "(hours to wait for a decision; default 168, a week)")


def _stored_run(engine: Engine, cluster: str, flow_run_id: str) -> TopUpRun | None:
    with engine.connect() as conn:
        found = rows(conn, "survey_topup_run_get", {"cluster_id": cluster, "flow_run_id": flow_run_id})
    if not found:
        return None
    r = found[0]
    return TopUpRun(flow_run_id, int(r["wave"]),
                    None if r["requested_size"] is None else int(r["requested_size"]), int(r["size"]),
                    {str(k): int(v) for k, v in json.loads(r["allocation"]).items()}, r["decision"])


def _routes(plan: WavePlan) -> dict[str, int]:
    counts = {"email": 0, "post": 0, "phone": 0}
    for pids in plan.selected.values():
        for pid in pids:
            counts[plan.routes[pid]] += 1
    return counts


def _audit_proposal(engine: Engine, cluster: str, run: TopUpRun, plan: WavePlan, retry: bool,
                    now: datetime) -> None:
    with engine.begin() as conn:
        append_audit(conn, cluster, PROPOSED_AUDIT, {
            "wave": run.wave, "size": run.size, "requested_size": run.requested_size, "retry": retry,
            **_routes(plan)}, run.flow_run_id, now)


def start_topup(engine: Engine, settings: Settings, contact_key: bytes | None, flow_run_id: str,
                wave: int | None, size: int | None, as_of: date, now: datetime | None = None) -> TopUpStart:
    """Fix this flow run's wave (or find the one it fixed before) and propose it if undecided.

    First run: the wave (default: the next one) is recorded with its proposal before any pause;
    with the default size the top-up rule must say "needed". A retry reuses the recorded wave.
    """
    cluster = settings.study.cluster
    now = now or datetime.now(UTC)
    stored = _stored_run(engine, cluster, flow_run_id)
    if stored is not None:
        if stored.decision is not None:
            return TopUpStart(stored, retry=True)
        plan = plan_wave(engine, settings, contact_key, stored.wave, stored.size)
        if isinstance(plan, WaveResult):  # drawn meanwhile by another run or `sample`
            return TopUpStart(None, stop=f"wave {stored.wave} was drawn meanwhile by another run; "
                                         "nothing was drawn by this one",
                              stop_result={"status": "already_drawn", "wave": stored.wave})
        again = replace(stored, size=plan.size, allocation=dict(plan.allocation))
        with engine.begin() as conn:
            conn.execute(query("survey_topup_run_repropose"), {
                "cluster_id": cluster, "flow_run_id": flow_run_id, "size": again.size,
                "allocation": json.dumps(again.allocation, sort_keys=True), "proposed_at": now.isoformat()})
        _audit_proposal(engine, cluster, again, plan, True, now)
        return TopUpStart(again, plan, retry=True)
    number = check_topup_wave(wave or next_wave_number(engine, cluster))
    if size is None:
        need = topup_need(engine, settings, as_of)
        if not need.needed:
            return TopUpStart(None, stop=need.reason, stop_result={"status": "not_needed", **need.as_json()})
    proposal = plan_wave(engine, settings, contact_key, number, size)
    if isinstance(proposal, WaveResult):
        return TopUpStart(None, stop=f"wave {number} was drawn before ({len(proposal.households)} "
                                     "households); a top-up draws nothing new; its invitations: the "
                                     f"send-invitations deployment or cluster-eval invite --wave {number}",
                          stop_result={"status": "already_drawn", "wave": number})
    run = TopUpRun(flow_run_id, number, size, proposal.size, dict(proposal.allocation))
    with engine.begin() as conn:
        conn.execute(query("survey_topup_run_insert"), {
            "cluster_id": cluster, "flow_run_id": flow_run_id, "wave": number, "requested_size": size,
            "size": run.size, "allocation": json.dumps(run.allocation, sort_keys=True),
            "proposed_at": now.isoformat()})
    _audit_proposal(engine, cluster, run, proposal, False, now)
    return TopUpStart(run, proposal)


def topup_run_or_stop(start: TopUpStart) -> TopUpRun:
    """The run to carry on with, or ``NothingToDo`` (the run ends Completed with the line)."""
    if start.run is None:
        raise NothingToDo(start.stop or "nothing to do", start.stop_result)
    return start.run


# --- the decision form -------------------------------------------------------------------------


@dataclass(frozen=True)
class StratumFacts:
    """One stratum's row of the decision form (counts only)."""

    stratum: str
    issued: int
    responded: int
    wave1_share: Fraction
    shortfall: int
    proposed: int


@dataclass(frozen=True)
class ProposalFacts:
    """What a person needs to decide on a top-up wave (counts only)."""

    wave: int
    size: int
    frame: int
    seed: int
    stratify_by: str
    respondents: int
    target: int
    expected_response_rate: float
    sample_size: int
    strata: tuple[StratumFacts, ...]
    routes: dict[str, int]


def proposal_facts(engine: Engine, settings: Settings, plan: WavePlan) -> ProposalFacts:
    """Issued, responded, wave-1 share, shortfall and proposed draw per stratum; routes; the target.

    Shortfall: the respondents a stratum still lacks to reach its wave-1 share of the target,
    ``max(0, ceil(share_h x target - responded_h))``.
    """
    cluster = settings.study.cluster
    with engine.connect() as conn:
        so_far = {r["stratum"]: (int(r["issued"]), int(r["responded"]))
                  for r in rows(conn, "survey_topup_strata", {"cluster_id": cluster})}
        wave1 = {r["stratum"]: int(r["allocated"])
                 for r in rows(conn, "survey_wave_strata", {"cluster_id": cluster, "wave": 1})}
    survey = settings.survey
    target = survey.target_respondents
    wave1_total = sum(wave1.values())
    strata = []
    for h in sorted(set(so_far) | set(wave1) | {k for k, n in plan.allocation.items() if n}):
        issued, responded = so_far.get(h, (0, 0))
        share = Fraction(wave1.get(h, 0), wave1_total) if wave1_total else Fraction(0)
        strata.append(StratumFacts(h, issued, responded, share, max(0, ceil(share * target - responded)),
                                   plan.allocation.get(h, 0)))
    return ProposalFacts(plan.wave, plan.size, sum(plan.frame.values()), plan.seed, plan.stratify_by,
                         sum(s.responded for s in strata), target, survey.expected_response_rate,
                         survey.sample_size, tuple(strata), _routes(plan))


def _percent(part: int | Fraction, whole: int | Fraction) -> str:
    if not whole:
        return "–"
    return f"{int((Fraction(part) * 200 / Fraction(whole) + 1) // 2)}%"  # rounded half up


def approval_sentence(routes: Mapping[str, int]) -> str:
    """The plain statement of what approving does now."""
    phone = f" and {routes['phone']} to the call list" if routes.get("phone") else ""
    return (f"Approving e-mails {routes.get('email', 0)} households now and adds {routes.get('post', 0)} "
            f"to the post pack{phone}.")


def decision_form(facts: ProposalFacts) -> str:
    """The markdown above the approve/reject form (and the proposal artifact): counts only."""
    lines = [
        f"**Top-up wave {facts.wave}: approve or reject**", "",
        f"Respondents so far: **{facts.respondents} of the target of {facts.target}** (all waves; "
        f"target = sample size {facts.sample_size} × expected response rate "
        f"{facts.expected_response_rate:g}).", "",
        f"Proposed draw: **{facts.size} households** from the {facts.frame} reachable households never "
        f"sampled, shared by the strata's shortfall (stratified by `{facts.stratify_by}`, seed "
        f"{facts.seed}).", "",
        "So far (all waves):", "",
        "| stratum | issued | responded | rate |",
        "|---|---:|---:|---:|",
    ]
    issued = sum(s.issued for s in facts.strata)
    lines += [f"| {s.stratum} | {s.issued} | {s.responded} | {_percent(s.responded, s.issued)} |"
              for s in facts.strata]
    lines += [f"| **total** | {issued} | {facts.respondents} | {_percent(facts.respondents, issued)} |", "",
              "Proposed:", "",
              "| stratum | wave-1 share | shortfall | draw |",
              "|---|---:|---:|---:|"]
    lines += [f"| {s.stratum} | {_percent(s.wave1_share, 1)} | {s.shortfall} | {s.proposed} |"
              for s in facts.strata]
    lines += [
        f"| **total** | {_percent(sum((s.wave1_share for s in facts.strata), Fraction(0)), 1)} | "
        f"{sum(s.shortfall for s in facts.strata)} | {facts.size} |", "",
        f"Invitations by route: {facts.routes['email']} by e-mail, {facts.routes['post']} by post "
        f"(fieldwork pack), {facts.routes['phone']} by phone (call list).", "",
        f"**{approval_sentence(facts.routes)}** Rejecting draws nobody and contacts nobody.", "",
        "Shortfall: the respondents a stratum still lacks to reach its wave-1 share of the target. "
        "Counts only; do not write names or contact details in the note.",
    ]
    return "\n".join(lines)


def publish_decision_form(engine: Engine, settings: Settings, plan: WavePlan) -> str:
    """Publish the decision form as the wave's proposal artifact; return its markdown."""
    markdown = decision_form(proposal_facts(engine, settings, plan))
    create_markdown_artifact(markdown, key=artifact_key(settings.study.cluster,
                                                        f"survey-wave-{plan.wave}-proposal"),
                             description=f"Proposed survey wave {plan.wave} awaiting a decision: exact counts for "
                                         "running the fieldwork; counts only, no personal data")
    return markdown


# --- the pause and the decision ----------------------------------------------------------------


def approval_timeout_seconds(hours: float) -> int:
    """The pause's timeout in whole seconds (at least 1)."""
    return max(1, round(hours * 3600))


def _run_count(flow_run_id: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_flow_run(UUID(flow_run_id)).run_count)


def _leave_expired_pause(flow_run_id: str) -> None:
    """Put a run whose pause timed out back to Running, so it can end Completed ("not approved").

    The server would otherwise refuse to leave the expired pause for anything but Failed.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
        if state is not None and (state.is_paused() or state.is_failed()):
            client.set_flow_run_state(UUID(flow_run_id), Running(message="the approval timed out"),
                                      force=True)


def await_decision(form_markdown: str, run: TopUpRun, timeout_hours: float,
                   poll_seconds: int) -> TopUpDecision | None:
    """Pause the calling flow run for the decision form; None when nobody decided in time.

    The pause key is unique to this attempt: a retried run pauses again, and Prefect refuses a
    pause key it has seen.
    """
    key = f"top-up-wave-{run.wave}-attempt-{_run_count(run.flow_run_id)}-{secrets.token_hex(3)}"
    try:
        return pause_flow_run(wait_for_input=TopUpDecision.with_initial_data(description=form_markdown),
                              timeout=approval_timeout_seconds(timeout_hours), poll_interval=poll_seconds,
                              key=key)
    except FlowPauseTimeout:
        _leave_expired_pause(run.flow_run_id)
        return None


def one_line_note(note: str | None) -> str | None:
    """The note as one trimmed line of at most 200 characters (None when empty)."""
    text = " ".join((note or "").split())[:NOTE_MAX_CHARS]
    return text or None


def record_decision(engine: Engine, cluster: str, run: TopUpRun, decision: Decision, note: str | None,
                    flow_run_id: str | None, now: datetime | None = None) -> TopUpRun:
    """Record and audit the decision once; a run decided before keeps its first decision."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        changed = conn.execute(query("survey_topup_run_decide"), {
            "cluster_id": cluster, "flow_run_id": run.flow_run_id, "decision": decision,
            "decided_at": now.isoformat()}).rowcount
        if changed:
            append_audit(conn, cluster, DECISION_AUDIT, {
                "wave": run.wave, "decision": decision, "size": run.size, "note": one_line_note(note)},
                flow_run_id, now)
    return _stored_run(engine, cluster, run.flow_run_id) or replace(run, decision=decision)


def decision_of(answer: TopUpDecision | None) -> tuple[Decision, str | None]:
    """The recorded decision and note of the form's answer (None: timed out)."""
    if answer is None:
        return "timed_out", None
    return ("approved" if answer.decision == "approve" else "rejected"), answer.note


def stop_unless_approved(run: TopUpRun, timeout_hours: float) -> None:
    """``NothingToDo`` (Completed, nothing drawn) unless the run's wave was approved."""
    outcome = {"status": run.decision, "wave": run.wave}
    if run.decision == "rejected":
        raise NothingToDo(f"wave {run.wave} was rejected; nothing was drawn", outcome)
    if run.decision == "timed_out":
        raise NothingToDo(f"wave {run.wave} was not approved within {timeout_hours:g} hours; nothing was "
                          "drawn", outcome)
    if run.decision == "cancelled":
        raise NothingToDo(f"wave {run.wave} was cancelled before a decision; nothing was drawn", outcome)
    if run.decision != "approved":
        raise SamplingError(f"wave {run.wave} has no decision; start a new top-up")


def record_cancellation(engine: Engine, cluster: str, flow_run_id: str) -> bool:
    """Record ``cancelled`` for a top-up run still awaiting its decision; True if it was."""
    run = _stored_run(engine, cluster, flow_run_id)
    if run is None or run.decision is not None:
        return False
    return record_decision(engine, cluster, run, "cancelled", None, flow_run_id).decision == "cancelled"


def record_cancelled_topup(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook of ``survey-topup``: audit a cancel from the UI while awaiting a decision.

    The Runner calls it in its own process (``cluster-eval serve`` or a worker), so it opens the
    runtime there from the environment and the TOML file.
    """
    from prefect.logging.loggers import flow_run_logger

    from tasks.core.runtime import current_runtime

    try:
        rt = current_runtime()
        if record_cancellation(rt.engine, rt.cluster, str(flow_run.id)):
            flow_run_logger(flow_run).info("the top-up was cancelled before a decision; audited, nothing drawn")
    except UserFacingError as exc:
        flow_run_logger(flow_run).error(f"the cancellation could not be audited: {' '.join(str(exc).split())}")


# --- the outcome -------------------------------------------------------------------------------


def raise_if_topup_not_contacted(settings: Settings, report: DeliveryReport, wave: int,
                                 result: dict[str, Any]) -> None:
    """Fail the run with one line when the mail server left households of the wave uncontacted."""
    if report.not_contacted:
        smtp = settings.smtp
        raise NotContacted(
            f"{len(report.not_contacted)} household(s) of wave {wave} were not contacted: the mail server "
            f"{smtp.host}:{smtp.port} did not accept messages after {smtp.retries} retries; "
            f"{report.total_sent()} were contacted and recorded; press Retry on this run when the server "
            f"is reachable (it sends only the invitations not sent) or run cluster-eval invite --wave {wave}",
            {**result, "status": "not_contacted"})


def topup_result(wave: WaveResult, report: DeliveryReport) -> dict[str, Any]:
    """What ``survey-topup`` returns once the wave is drawn and invited."""
    return {"status": "drawn", "drawn_now": wave.created, **wave.as_json(), "invitations": report.as_json()}


def topup_summary(result: dict[str, Any]) -> str:
    """One line for the run's log and artifact (counts only)."""
    sent = result["invitations"]["sent"].get("invitation", {})
    routes = (f"{sent.get('email', 0)} e-mailed, {sent.get('post', 0)} in the post pack, "
              f"{sent.get('phone', 0)} on the call list")
    if result["drawn_now"]:
        return f"wave {result['wave']} drawn and invited: {len(result['households'])} households ({routes})"
    return (f"wave {result['wave']}: {sum(sent.values())} remaining invitation(s) sent ({routes}); "
            "nothing new drawn")
