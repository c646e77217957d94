"""The whole evaluation: its stages run in order as subflows; nothing to do is not a failure; a failed stage
fails the run naming it, after the stages that do not depend on it have run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Completed, Failed, State

import flows.evaluation as evaluation
from flows.evaluation import ANALYSE, INBOX, MONITOR, REMINDERS, RETENTION, StageOutcome, run_stages
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import Runtime


def _completed(line: str) -> State[Any]:
    return Completed(message=line)


def test_a_failed_stage_skips_only_what_depends_on_it() -> None:
    called: list[str] = []

    def stage(name: str, state: State[Any]) -> Any:
        return lambda: called.append(name) or state

    outcomes = run_stages({
        INBOX: stage(INBOX, Failed(message="x", data=UserFacingError("file a.zip: not an encrypted  extract"))),
        REMINDERS: stage(REMINDERS, _completed("as of 2026-12-02: nothing sent")),
        MONITOR: stage(MONITOR, _completed("respondents 3 of target 25")),
        ANALYSE: stage(ANALYSE, _completed("12 tables written")),
        RETENTION: stage(RETENTION, Failed(message="boom", data=RuntimeError("a name that must not show"))),
    })
    assert called == [INBOX, REMINDERS, MONITOR, RETENTION]  # analyse needs the inbox pick-up
    assert outcomes == [
        StageOutcome(INBOX, "failed", "file a.zip: not an encrypted extract"),
        StageOutcome(REMINDERS, "completed", "as of 2026-12-02: nothing sent"),
        StageOutcome(MONITOR, "completed", "respondents 3 of target 25"),
        StageOutcome(ANALYSE, "skipped", "inbox pick-up failed"),
        StageOutcome(RETENTION, "failed", "failed unexpectedly: see the retention flow run"),
    ]
    failed = evaluation.EvaluationFailed(outcomes)
    assert str(failed) == (
        "evaluation failed at inbox pick-up: file a.zip: not an encrypted extract | inbox pick-up FAILED: file "
        "a.zip: not an encrypted extract; reminders: as of 2026-12-02: nothing sent; monitor: respondents 3 of "
        "target 25; analyse skipped (inbox pick-up failed); retention FAILED: failed unexpectedly: "
        "see the retention flow run")


def test_failed_reminders_skip_the_monitor() -> None:
    outcomes = run_stages({
        INBOX: lambda: _completed("inbox empty: nothing to do"),
        REMINDERS: lambda: Failed(data=UserFacingError("mail server down: 2 households not contacted")),
        MONITOR: lambda: pytest.fail("the monitor must not judge waves whose reminders failed"),
        ANALYSE: lambda: _completed("12 tables"), RETENTION: lambda: _completed("0 deleted"),
    })
    assert [(o.stage, o.status) for o in outcomes] == [
        (INBOX, "completed"), (REMINDERS, "failed"), (MONITOR, "skipped"), (ANALYSE, "completed"),
        (RETENTION, "completed")]


# --- as subflows, under the Prefect harness ----------------------------------------------------------------

def _fake(name: str, line: str | None = None, refuse: str | None = None, nothing: str | None = None) -> Flow[..., Any]:
    @project_flow(f"fake-{name}", summary=lambda result: line or "")
    def stage(as_of: date | None = None, out: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        _fake_calls.append(name)
        if refuse:
            raise UserFacingError(refuse)
        if nothing:
            raise NothingToDo(nothing)
        return {}

    return stage


_fake_calls: list[str] = []


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    _fake_calls.clear()
    monkeypatch.setattr(evaluation, "ingest_inbox_flow", _fake(INBOX, "1 extract ingested, 0 rejected"))
    monkeypatch.setattr(evaluation, "remind_flow", _fake(REMINDERS, refuse="the mail server refused: 2 of 5 "
                                                         "households not contacted"))
    monkeypatch.setattr(evaluation, "monitor_flow", _fake(MONITOR, "not called"))
    monkeypatch.setattr(evaluation, "analyse_flow", _fake(ANALYSE, nothing="no extract ingested yet: nothing to do"))
    monkeypatch.setattr(evaluation, "retention_flow", _fake(RETENTION, "3 items deleted, verified"))
    monkeypatch.setattr(evaluation, "check_what_has_started", lambda engine, cluster: evaluation.Started(1, 1))
    yield _fake_calls


def _children(parent: UUID) -> list[Any]:
    """The subflow runs of a flow run, in the order they started."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [parent]}),
                                     sort=FlowRunSort.START_TIME_ASC)


def test_the_evaluation_fails_naming_the_stage_after_running_the_independent_ones(
        prefect_harness: None, sqlite_runtime: Runtime, fake_stages: list[str]) -> None:
    state = evaluation.evaluation_flow(as_of=date(2026, 12, 2), return_state=True)
    assert state.is_failed()
    assert fake_stages == [INBOX, REMINDERS, ANALYSE, RETENTION]
    assert state.message == (
        "evaluation failed at reminders: the mail server refused: 2 of 5 households not contacted | "
        "inbox pick-up: 1 extract ingested, 0 rejected; reminders FAILED: the mail server refused: 2 of 5 "
        "households not contacted; monitor skipped (reminders failed); analyse: no extract ingested "
        "yet: nothing to do; retention: 3 items deleted, verified")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "evaluation 2026-12-02"
    assert [(r.name, r.state.type.value) for r in _children(run.id)] == [
        ("fake-inbox pick-up", "COMPLETED"), ("fake-reminders", "FAILED"), ("fake-analyse", "COMPLETED"),
        ("fake-retention", "COMPLETED")]
    with pytest.raises(evaluation.EvaluationFailed):  # a caller of the flow gets the refusal
        evaluation.evaluation_flow(as_of=date(2026, 12, 2))


def test_before_the_survey_and_the_first_extract_those_stages_are_skipped() -> None:
    started = evaluation.Started(extracts=0, waves=0)
    outcomes = run_stages({INBOX: lambda: _completed("inbox empty: nothing to do"),
                           RETENTION: lambda: _completed("0 deleted")}, evaluation.not_yet(lambda: started))
    assert [o.describe() for o in outcomes] == [
        "inbox pick-up: inbox empty: nothing to do", "reminders skipped (no survey wave drawn yet: nothing to do)",
        "monitor skipped (no survey wave drawn yet: nothing to do)",
        "analyse skipped (no extract ingested yet: nothing to do)", "retention: 0 deleted"]


def test_a_fresh_evaluation_with_nothing_to_do_completes(prefect_harness: None, sqlite_runtime: Runtime) -> None:
    """The real stages on an empty state folder: nothing to do, or nothing to do yet; the run's line joins theirs."""
    state = evaluation.evaluation_flow(as_of=date(2026, 12, 2), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert [(s["stage"], s["status"]) for s in result["stages"]] == [
        (INBOX, "completed"), (REMINDERS, "skipped"), (MONITOR, "skipped"), (ANALYSE, "skipped"),
        (RETENTION, "completed")]
    children = _children(state.state_details.flow_run_id)
    assert len(children) == 2 and children[0].name.startswith("inbox pick-up ")
    assert children[1].name == "retention 2026-12-02"
    assert [c.state.message for c in children] == [result["stages"][0]["line"], result["stages"][4]["line"]]
    assert state.message == (
        f"inbox pick-up: inbox empty: nothing to do; reminders skipped (no survey wave drawn yet: nothing to do); "
        f"monitor skipped (no survey wave drawn yet: nothing to do); analyse skipped (no extract ingested yet: "
        f"nothing to do); retention: {children[1].state.message}")
