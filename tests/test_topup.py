"""The survey top-up in process: the one top-up rule, the decision form's figures, decisions and their audit.

Study: the standard population (frame parenting 36 e-mail, housing 23 post, domestic abuse 16
phone), wave 1 of 20 (10/6/4) invited 20 days ago (past its last reminder at +14) unless a test says
otherwise; target respondents 20 x 0.5 = 10. The monitor and the top-up must agree on both sides
of the target and while a wave is still in fieldwork.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import make_settings, wait_for
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import resume_flow_run
from prefect.input.run_input import keyset_from_paused_state
from sqlalchemy import text
from test_fieldwork import fieldwork, households, respond
from test_fieldwork_e2e import paused_topup_run
from test_sampling import populate, standard_population

from flows.sampling import monitor_flow, topup_flow
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.survey.fieldwork import send_invitations, uk_today
from tasks.survey.mailer import FakeMailer
from tasks.survey.monitor import LOW_RATE_EVENT
from tasks.survey.need import WaveFieldwork, judge_topup_need, topup_need
from tasks.survey.sampling import SamplingError, draw_wave, wave_seed
from tasks.survey.topup import (
    record_cancelled_topup,
    record_decision,
    start_topup,
    stop_unless_approved,
)

FORM = """**Top-up wave 2: approve or reject**

Respondents so far: **5 of the target of 10** (all waves; target = sample size 20 × expected response rate 0.5).

Proposed draw: **10 households** from the 55 reachable households never sampled, shared by the strata's \
shortfall (stratified by `primary_issue`, seed {seed}).

So far (all waves):

| stratum | issued | responded | rate |
|---|---:|---:|---:|
| domestic_abuse | 4 | 1 | 25% |
| housing | 6 | 1 | 17% |
| parenting | 10 | 3 | 30% |
| **total** | 20 | 5 | 25% |

Proposed:

| stratum | wave-1 share | shortfall | draw |
|---|---:|---:|---:|
| domestic_abuse | 20% | 1 | 2 |
| housing | 30% | 2 | 3 |
| parenting | 50% | 2 | 5 |
| **total** | 100% | 5 | 10 |

Invitations by route: 5 by e-mail, 3 by post (fieldwork pack), 2 by phone (call list).

**Approving e-mails 5 households now and adds 3 to the post pack and 2 to the call list.** Rejecting \
draws nobody and contacts nobody.

Shortfall: the respondents a stratum still lacks to reach its wave-1 share of the target. Counts only; \
do not write names or contact details in the note."""


@pytest.fixture
def study(tmp_path: Path, sqlite_url: str, prefect_harness: None) -> Iterator[Runtime]:
    settings = make_settings(tmp_path / "var", sqlite_url,
                             survey={"sample_size": 20, "approval_poll_seconds": 1})
    rt = replace(open_runtime(settings), mailer=FakeMailer())
    with use_runtime(rt):
        yield rt


@pytest.fixture
def any_backend(tmp_path: Path, database_url: str, prefect_harness: None) -> Iterator[Runtime]:
    """The study's runtime on SQLite and on PostgreSQL."""
    settings = make_settings(tmp_path / "var", database_url, survey={"sample_size": 20})
    rt = replace(open_runtime(settings), mailer=FakeMailer())
    with use_runtime(rt):
        yield rt


def wave_one(rt: Runtime, responders: dict[str, int], invited_days_ago: int = 20) -> None:
    """Wave 1 drawn and invited ``invited_days_ago`` days ago; the first n households per stratum responded."""
    key = populate(rt.engine, rt.home, standard_population())
    draw_wave(rt.engine, rt.settings, key, 1, None)
    send_invitations(fieldwork(rt, rt.settings, key, rt.mailer), 1,
                     now=datetime.now(UTC) - timedelta(days=invited_days_ago))
    hh = households(rt.engine, 1)
    respond(rt.engine, [t for stratum, n in responders.items()
                        for t in sorted(t for t, h in hh.items() if h["stratum"] == stratum)[:n]])


def count(rt: Runtime, sql: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def audit(rt: Runtime, event: str) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        found = conn.execute(text("SELECT details FROM audit_log WHERE event = :e ORDER BY seq"), {"e": event})
        return [json.loads(r[0]) for r in found]


class TopUp:
    """``topup_flow`` running in a thread (as a worker would run it); the test decides."""

    def __init__(self, **params: Any) -> None:
        self.outcome: dict[str, Any] = {}
        self.started = datetime.now(UTC)
        self.thread = threading.Thread(target=self._run, kwargs=params, daemon=True)
        self.thread.start()

    def _run(self, **params: Any) -> None:
        try:
            self.outcome["state"] = topup_flow(**params, return_state=True)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread by finish()
            self.outcome["error"] = exc

    def paused(self) -> Any:
        ended = ("state", "error")
        return wait_for("the top-up to pause",
                        lambda: paused_topup_run(self.started) or any(k in self.outcome for k in ended), 60, 0.2)

    def finish(self, run_input: dict[str, Any] | None = None) -> Any:
        if run_input is not None:
            resume_flow_run(self.paused().id, run_input=run_input)
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the top-up did not finish"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["state"]


def run_of(state: Any) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


# --- the one top-up rule ---------------------------------------------------------------------

def test_rule_needs_every_wave_past_its_last_reminder_and_respondents_below_target(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", survey={"sample_size": 20})
    day = uk_today()
    over = WaveFieldwork(1, 20, 9, 0, day - timedelta(days=14))
    assert judge_topup_need([over], settings, day).as_json() == {
        "needed": True, "as_of": day.isoformat(), "respondents": 9, "target": 10, "size": 2, "issued": 20,
        "response_rate": 0.45, "waves": [1], "in_fieldwork": [],
        "reason": "a top-up is needed: 9 respondents of the target of 10 after every wave's last reminder; "
                  "2 households to draw at the expected response rate of 0.5"}
    reached = judge_topup_need([replace(over, responded=10)], settings, day)
    assert (reached.needed, reached.size, reached.reason) == (
        False, 0, "no top-up is needed: 10 respondents already reach the target of 10")
    running = judge_topup_need([over, WaveFieldwork(2, 2, 0, 0, day - timedelta(days=13))], settings, day)
    assert (running.needed, running.in_fieldwork, running.reason) == (
        False, (2,), f"no top-up yet: wave 2 is in fieldwork until {day + timedelta(days=1)} (its last "
                     "reminder); 9 respondents of the target of 10 so far")
    uninvited = judge_topup_need([over, WaveFieldwork(2, 8, 0, 3, day - timedelta(days=30))], settings, day)
    assert (uninvited.needed, uninvited.in_fieldwork) == (False, (2,))
    assert uninvited.reason.startswith("no top-up yet: wave 2 has 3 household(s) not invited yet")
    assert judge_topup_need([], settings, day).reason == "no survey wave has been drawn yet: a top-up follows wave 1"
    ended = make_settings(tmp_path / "var", survey={"sample_size": 20, "fieldwork_end": day - timedelta(days=1)})
    assert judge_topup_need([over], ended, day).reason == (
        f"no top-up is proposed: fieldwork ended on {day - timedelta(days=1)} (survey.fieldwork_end)")


def test_target_minus_one_monitor_signals_and_topup_proposes(study: Runtime) -> None:
    wave_one(study, {"parenting": 5, "housing": 3, "domestic_abuse": 1})  # 9 = target - 1
    monitored = monitor_flow()
    assert (monitored["needed"], monitored["respondents"], monitored["target"], monitored["size"],
            monitored["event"]) == (True, 9, 10, 2, LOW_RATE_EVENT)
    assert monitor_flow()["already_signalled"] is True  # once per latest wave
    topup = TopUp()
    paused = topup.paused()
    assert paused.name == "top-up wave 2"
    state = topup.finish({"decision": "reject"})
    assert (state.is_completed(), state.message) == (True, "wave 2 was rejected; nothing was drawn")
    assert state.result() == {"status": "rejected", "wave": 2}
    assert count(study, "SELECT COUNT(*) FROM waves") == 1
    assert audit(study, "survey_topup_proposed") == [
        {"wave": 2, "size": 2, "requested_size": None, "retry": False, "email": 1, "post": 0, "phone": 1}]
    assert audit(study, "survey_topup_decision") == [
        {"wave": 2, "decision": "rejected", "size": 2, "note": None}]


def test_target_reached_monitor_is_silent_and_topup_completes_with_the_reason(study: Runtime) -> None:
    wave_one(study, {"parenting": 5, "housing": 3, "domestic_abuse": 2})  # 10 = target
    monitored = monitor_flow()
    assert (monitored["needed"], monitored["event"], monitored["already_signalled"]) == (False, None, False)
    state = topup_flow(return_state=True)
    line = "no top-up is needed: 10 respondents already reach the target of 10"
    assert (state.is_completed(), state.message, monitored["reason"]) == (True, line, line)
    bad = topup_flow(size=0, return_state=True)
    assert (bad.is_failed(), bad.message) == (True, "size 0 is not a number of households to draw: give 1 "
                                                     "or more, or leave it empty for the size the top-up rule "
                                                     "proposes")
    assert state.result()["status"] == "not_needed"
    assert run_of(state).name == "top-up"
    assert count(study, "SELECT COUNT(*) FROM topup_runs") == 0
    assert count(study, "SELECT COUNT(*) FROM waves") == 1


def test_wave_in_fieldwork_monitor_is_silent_and_topup_completes(study: Runtime) -> None:
    wave_one(study, {"parenting": 5, "housing": 3, "domestic_abuse": 1}, invited_days_ago=10)
    monitored = monitor_flow()
    assert (monitored["needed"], monitored["in_fieldwork"], monitored["event"]) == (False, [1], None)
    state = topup_flow(return_state=True)
    assert state.is_completed() and state.message == monitored["reason"]
    assert state.message.startswith("no top-up yet: wave 1 is in fieldwork until ")
    assert topup_need(study.engine, study.settings, uk_today() + timedelta(days=4)).needed is True
    # an explicit size draws anyway (the research lead's call), after approval
    topup = TopUp(size=4)
    state = topup.finish({"decision": "approve"})
    assert state.is_completed() and state.message.startswith("wave 2 drawn and invited: 4 households")
    assert count(study, "SELECT COUNT(*) FROM households WHERE wave = 2") == 4


# --- the decision form and the decisions ------------------------------------------------------

def test_form_figures_then_approve_draws_invites_and_audits_the_note(study: Runtime) -> None:
    wave_one(study, {"parenting": 3, "housing": 1, "domestic_abuse": 1})
    sent_before = len(study.mailer.sent)  # type: ignore[attr-defined]
    topup = TopUp()
    paused = topup.paused()
    assert paused.name == "top-up wave 2"
    [row] = [dict(r._mapping) for r in study.engine.connect().execute(text(
        "SELECT wave, requested_size, size, allocation, decision FROM topup_runs"))]
    assert row == {"wave": 2, "requested_size": None, "size": 10, "decision": None,
                   "allocation": '{"domestic_abuse": 2, "housing": 3, "parenting": 5}'}
    keyset = keyset_from_paused_state(paused.state)
    with get_client(sync_client=True) as client:
        description = client.read_flow_run_input(paused.id, keyset["description"])
        schema = json.loads(client.read_flow_run_input(paused.id, keyset["schema"]))
        [artifact] = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pilot-survey-wave-2-proposal"])))
    assert artifact.data == FORM.format(seed=wave_seed(study.settings.survey.seed, 2))
    assert json.loads(description) == artifact.data
    assert schema["required"] == ["decision"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert "names or contact details" in schema["properties"]["note"]["description"]
    assert count(study, "SELECT COUNT(*) FROM waves") == 1  # nothing drawn while paused

    state = topup.finish({"decision": "approve", "note": "  budget agreed\n by the board  "})
    assert state.is_completed()
    assert state.message == "wave 2 drawn and invited: 10 households (5 e-mailed, 3 in the post pack, " \
                            "2 on the call list)"
    result = state.result()
    assert (result["status"], result["allocation"]) == (
        "drawn", {"domestic_abuse": 2, "housing": 3, "parenting": 5})
    assert len(study.mailer.sent) - sent_before == 5  # type: ignore[attr-defined]
    assert audit(study, "survey_topup_decision") == [
        {"wave": 2, "decision": "approved", "size": 10, "note": "budget agreed by the board"}]
    assert run_of(state).name == "top-up wave 2"


def test_timeout_completes_not_approved_and_audits(study: Runtime) -> None:
    wave_one(study, {"parenting": 3, "housing": 1, "domestic_abuse": 1})
    state = TopUp(approval_timeout_hours=0.0005).finish()  # 2 seconds
    assert (state.is_completed(), state.message) == (
        True, "wave 2 was not approved within 0.0005 hours; nothing was drawn")
    assert run_of(state).state.type == StateType.COMPLETED
    assert audit(study, "survey_topup_decision") == [
        {"wave": 2, "decision": "timed_out", "size": 10, "note": None}]
    assert count(study, "SELECT COUNT(*) FROM waves") == 1


# --- retries and cancellation (plain functions; the UI's Retry is tests/test_topup_retry.py) -------

def test_a_run_keeps_its_wave_and_decision_across_retries(any_backend: Runtime) -> None:
    study = any_backend
    wave_one(study, {"parenting": 3, "housing": 1, "domestic_abuse": 1})
    key = study.secrets.key_if_any("contact_key")
    run_id = "00000000-0000-0000-0000-000000000001"
    first = start_topup(study.engine, study.settings, key, run_id, None, None, uk_today())
    assert first.run is not None and (first.run.wave, first.run.size, first.retry) == (2, 10, False)
    # another run draws wave 2 meanwhile with `sample`; this run's retry never moves on to wave 3
    again = start_topup(study.engine, study.settings, key, run_id, None, None, uk_today())
    assert again.run is not None and (again.run.wave, again.run.size, again.retry) == (2, 10, True)
    decided = record_decision(study.engine, "pilot", again.run, "approved", None, run_id)
    retried = start_topup(study.engine, study.settings, key, run_id, None, None, uk_today())
    assert retried.run == decided and retried.plan is None
    stop_unless_approved(decided, 168)  # approved: carry on
    assert record_decision(study.engine, "pilot", decided, "rejected", None, run_id).decision == "approved"

    other = "00000000-0000-0000-0000-000000000002"
    proposed = start_topup(study.engine, study.settings, key, other, None, 3, uk_today())
    assert proposed.run is not None and proposed.run.wave == 2
    cancelled_run = FlowRun(id=UUID(other), flow_id=uuid4(), name="top-up wave 2")
    record_cancelled_topup(None, cancelled_run, None)  # the Runner's call on Cancel in the UI
    record_cancelled_topup(None, cancelled_run, None)  # recorded once
    cancelled = start_topup(study.engine, study.settings, key, other, None, 3, uk_today())
    assert cancelled.run is not None and cancelled.run.decision == "cancelled"
    with pytest.raises(Exception, match="^wave 2 was cancelled before a decision; nothing was drawn$"):
        stop_unless_approved(cancelled.run, 168)
    assert [d["decision"] for d in audit(study, "survey_topup_decision")] == ["approved", "cancelled"]
    with pytest.raises(SamplingError, match="the top-up flow draws waves 2 and later"):
        start_topup(study.engine, study.settings, key, "x", 1, 3, uk_today())
