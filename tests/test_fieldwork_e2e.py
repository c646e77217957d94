"""Full fieldwork through the Prefect flows, against a real SMTP server, with exact counts.

wave 1 -> invitations -> partial responses -> withdrawal -> reminders at +7 and +14 ->
the top-up rule says "needed" after the last reminder -> Prefect event -> top-up proposal
paused for a decision -> rejected, then approved -> top-up drawn and invited -> interview draw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import make_settings, wait_for
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.flow_runs import resume_flow_run
from sqlalchemy import text
from test_fieldwork import Inbox, address, free_port, households, smtp  # noqa: F401 - smtp: fixture
from test_sampling import populate, standard_population

from deployments.survey import survey_deployments
from flows.fieldwork import interviews_flow, invite_flow, remind_flow
from flows.responses import import_flow, withdraw_flow
from flows.sampling import monitor_flow, sample_flow, topup_flow
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.demo.survey_export import generate_survey_export, survey_export_csv
from tasks.survey.fieldwork import uk_date
from tasks.survey.monitor import LOW_RATE_EVENT
from tasks.survey.responses import invitation_times, token_digest

pytestmark = pytest.mark.e2e
MARKERS = ("ZQX", "zqxmail", "07700 9")


@pytest.fixture
def e2e(tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int],  # noqa: F811 - the imported fixture
        prefect_harness: None) -> Iterator[tuple[Runtime, Inbox]]:
    inbox, port = smtp
    settings = make_settings(
        tmp_path / "var", sqlite_url,
        survey={"sample_size": 20, "interview_min": 2, "interview_max": 3, "approval_poll_seconds": 1},
        smtp={"host": "127.0.0.1", "port": port, "retries": 1, "retry_delay_seconds": 0.01})
    rt = open_runtime(settings)
    with use_runtime(rt):
        yield rt, inbox


def latest_artifact(key: str) -> Any:
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    return found[0]


def paused_topup_run(started_after: datetime) -> Any:
    """The paused top-up run started after ``started_after`` (not one another test left paused)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["survey-topup"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                start_time=FlowRunFilterStartTime(after_=started_after)))
    return runs[0] if runs else None


def start_topup() -> tuple[Any, threading.Thread, dict[str, Any]]:
    """Run the top-up flow in a thread and wait until it is paused for approval."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = topup_flow()
        except BaseException as exc:  # reported to the test thread by resume()
            outcome["error"] = exc

    started = datetime.now(UTC)
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    return wait_for("the top-up to pause", lambda: paused_topup_run(started), 60, 0.3), worker, outcome


def resume(run: Any, worker: threading.Thread, outcome: dict[str, Any], approve: bool) -> dict[str, Any]:
    resume_flow_run(run.id, run_input={"decision": "approve" if approve else "reject"})
    worker.join(timeout=120)
    assert not worker.is_alive(), "top-up flow did not finish after resume"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def count(rt: Runtime, sql: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def export_file(tmp_path: Path, tokens: list[str], opt_in: dict[str, str], extra: list[dict[str, str]]) -> Path:
    frame = generate_survey_export(tokens, seed=11, response_rate=1.0)
    frame = frame.with_columns(pl.all().cast(pl.String)).with_columns(
        pl.col("token").replace_strict(opt_in, default=None).alias("q10_interview_opt_in"))
    frame = pl.concat([frame, pl.DataFrame(extra, schema=frame.schema)])
    path = tmp_path / "responses.csv"
    path.write_bytes(survey_export_csv(frame))
    return path


def test_full_fieldwork(e2e: tuple[Runtime, Inbox], tmp_path: Path) -> None:
    rt, inbox = e2e
    populate(rt.engine, rt.home, standard_population())

    # wave 1: 20 of a 75-household frame, Hamilton 10/6/4.
    wave1 = sample_flow(wave=1)
    assert wave1["frame"] == {"domestic_abuse": 16, "housing": 23, "parenting": 36}
    assert wave1["allocation"] == {"domestic_abuse": 4, "housing": 6, "parenting": 10}
    table = latest_artifact("pilot-survey-wave-1-allocation")
    assert table.type == "table" and '"allocated": 10' in str(table.data)

    # invitations: 10 e-mails, pack of 6 letters and 4 calls.
    invited = invite_flow(wave=1)
    assert invited["sent"] == {"invitation": {"email": 10, "post": 6, "phone": 4}}
    assert len(inbox.messages) == 10 and len(invited["packs"]) == 1

    # partial responses: 3 parenting, 1 housing, 1 domestic abuse; plus 1 unknown token,
    # 1 invalid row and 1 earlier duplicate.
    hh = households(rt.engine, 1)
    strata = {h: sorted(t for t, x in hh.items() if x["stratum"] == h)
              for h in ("parenting", "housing", "domestic_abuse")}
    responders = strata["parenting"][:3] + strata["housing"][:1] + strata["domestic_abuse"][:1]
    with rt.engine.connect() as conn:  # no return may predate its invitation (to the second)
        invited_at = invitation_times(conn, "pilot")[strata["parenting"][0]]
    while datetime.now(UTC).replace(microsecond=0).isoformat() <= invited_at:  # the returns come later
        time.sleep(0.05)
    opt_in = {strata["parenting"][0]: "Y", strata["parenting"][1]: "Y", strata["parenting"][2]: "N",
              strata["housing"][0]: "Y", strata["domestic_abuse"][0]: "Y"}
    blank = dict.fromkeys(["q1_life_satisfaction", "q2_worthwhile", "q3_happy_yesterday",
                           "q4_anxious_yesterday", "q5_child_wellbeing", "q6_parenting_confidence",
                           "q7_help_with_difficulties", "q8_worker_relationship",
                           "q9_negative_effects", "q10_interview_opt_in"])
    extra = [
        {**blank, "token": "UNKNOWN-TOKEN-1", "submitted_at": "2022-02-02T10:00:00", "mode": "online"},
        {**blank, "token": strata["housing"][1], "submitted_at": "2022-02-02T10:00:00",
         "mode": "online", "q1_life_satisfaction": "12"},
        {**blank, "token": strata["parenting"][0], "submitted_at": invited_at,  # earlier than its reply
         "mode": "paper", "q10_interview_opt_in": "N"},
    ]
    imported = import_flow(path=export_file(tmp_path, responders, opt_in, extra))
    assert (imported["rows"], imported["accepted"], imported["quarantined"]) == (8, 5, 2)
    assert len(imported["duplicates"]) == 1 and imported["duplicates"][0]["dropped_row"] == 9
    assert imported["response_rate"] == {"issued": 20, "responded": 5, "rate": 0.25,
                                         "target_respondents": 10}
    progress = latest_artifact("pilot-survey-progress")
    assert progress.type == "progress" and float(progress.data) == 50.0
    rates = latest_artifact("pilot-survey-response-rates")
    assert '"responded": 3' in str(rates.data)

    # one e-mail household that has not responded withdraws.
    withdrawn = strata["parenting"][3]
    assert withdraw_flow(token_sha256=token_digest(withdrawn))["status"] == "withdrawn"

    # reminders: +6 nothing; +7 reminder 1 by the same route (6 e-mails, 5 letters, 3 calls);
    # again the same day nothing; +14 reminder 2 as a call list of 14.
    day0 = uk_date(datetime.now(UTC).isoformat())
    assert remind_flow(as_of=day0 + timedelta(days=6))["sent"] == {}
    first = remind_flow(as_of=day0 + timedelta(days=7))
    assert first["sent"] == {"reminder_1": {"email": 6, "post": 5, "phone": 3}}
    assert remind_flow(as_of=day0 + timedelta(days=7))["sent"] == {}
    second = remind_flow(as_of=day0 + timedelta(days=14))
    assert second["sent"] == {"reminder_2": {"email": 0, "post": 0, "phone": 14}}
    assert len(inbox.messages) == 16
    reminded = {r for rcpts, _ in inbox.messages[10:] for r in rcpts}  # after the 10 invitations
    assert address(hh[withdrawn]["family_pid"]) not in reminded
    assert not reminded & {address(hh[t]["family_pid"]) for t in responders}

    # monitor (the top-up rule): wave 1 in fieldwork until +14; then 5 respondents < target 10 ->
    # event with counts only, once per latest wave.
    early = monitor_flow(as_of=day0 + timedelta(days=13))
    assert (early["needed"], early["in_fieldwork"], early["event"]) == (False, [1], None)
    monitored = monitor_flow(as_of=day0 + timedelta(days=14))
    assert (monitored["issued"], monitored["respondents"], monitored["response_rate"], monitored["size"],
            monitored["event"]) == (20, 5, 0.25, 10, LOW_RATE_EVENT)
    again = monitor_flow(as_of=day0 + timedelta(days=15))  # the daily run: one proposal per wave
    assert (again["needed"], again["event"], again["already_signalled"]) == (True, None, True)

    def low_rate_events() -> list[Any]:  # this monitor run's event (other tests share the server)
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[LOW_RATE_EVENT])),
                                      limit=50)
        return [e for e in page.events if str(e.id) == monitored["event_id"]]

    [event] = wait_for("the low-rate event", low_rate_events, 60, 0.3)
    assert event.resource.id == "cluster-eval.cluster.pilot"
    assert event.payload == {
        "needed": True, "as_of": (day0 + timedelta(days=14)).isoformat(), "respondents": 5, "target": 10,
        "size": 10, "issued": 20, "response_rate": 0.25, "waves": [1], "in_fieldwork": [],
        "reason": "a top-up is needed: 5 respondents of the target of 10 after every wave's last reminder; "
                  "10 households to draw at the expected response rate of 0.5"}

    # the top-up runs today: let two weeks pass since the invitations, so it judges as the monitor did.
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE contact_attempts SET attempted_at = :t WHERE kind = 'invitation'"),
                     {"t": (datetime.now(UTC) - timedelta(days=15)).isoformat()})

    # top-up, first proposal rejected: nothing drawn.
    run, worker, outcome = start_topup()
    proposal = latest_artifact("pilot-survey-wave-2-proposal")
    assert "| parenting | 10 | 3 | 30% |" in str(proposal.data)  # issued, responded, rate
    assert "| parenting | 50% | 2 | 5 |" in str(proposal.data)  # wave-1 share, shortfall, draw
    assert "Approving e-mails 5 households now and adds 3 to the post pack and 2 to the call list." in str(
        proposal.data)
    assert resume(run, worker, outcome, approve=False) == {"status": "rejected", "wave": 2}
    assert count(rt, "SELECT COUNT(*) FROM waves") == 1

    # top-up approved: target 10, 5 respondents, rate 0.5 -> 10 households, shortfall 5/3/2.
    run, worker, outcome = start_topup()
    assert count(rt, "SELECT COUNT(*) FROM waves") == 1  # nothing drawn while paused
    assert len(inbox.messages) == 16  # nothing sent while paused
    topped = resume(run, worker, outcome, approve=True)
    assert topped["status"] == "drawn" and topped["wave"] == 2
    assert topped["frame"] == {"domestic_abuse": 12, "housing": 17, "parenting": 26}
    assert topped["allocation"] == {"domestic_abuse": 2, "housing": 3, "parenting": 5}
    assert topped["invitations"]["sent"] == {"invitation": {"email": 5, "post": 3, "phone": 2}}
    assert len(inbox.messages) == 21
    assert not set(households(rt.engine, 2)) & set(hh)

    # interview draw: 4 opted in (2 parenting, 1 housing, 1 domestic abuse); max 3 -> one each.
    draw = interviews_flow()
    assert (draw["eligible"], draw["drawn"], draw["short"]) == (4, 3, False)
    assert sorted(hh[t]["stratum"] for t in draw["tokens"]) == ["domestic_abuse", "housing",
                                                                "parenting"]
    assert interviews_flow()["tokens"] == draw["tokens"]  # drawn once

    # nothing personal reached Prefect: logs, artifacts, flow-run parameters.
    with get_client(sync_client=True) as client:
        logs = " ".join(log.message for log in client.read_logs())
        artifacts = " ".join(str(a.data) + str(a.description) for a in client.read_artifacts())
        params = " ".join(str(r.parameters) for r in client.read_flow_runs())
    for marker in MARKERS:
        assert marker not in logs and marker not in artifacts and marker not in params
    assert withdrawn not in params


def test_deployments_are_defined(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var")
    named = {d.name: d for d in survey_deployments(settings)}
    topup, reminders, monitor = named["top-up-wave"], named["reminders-daily"], named["monitor-daily"]
    assert topup.schedules in (None, []) and topup.triggers[0].expect == {LOW_RATE_EVENT}
    assert list(topup_flow.parameters.properties) == ["wave", "size", "approval_timeout_hours"]
    assert topup.flow_name == "survey-topup" and topup.entrypoint == "flows.sampling.topup_flow"
    assert reminders.entrypoint == "flows.fieldwork.remind_flow"
    assert reminders.schedules[0].schedule.cron == "0 9 * * *"
    assert monitor.schedules[0].schedule.cron == "0 10 * * *"


def test_commands_exit_1_with_one_line(tmp_path: Path, prefect_harness: None,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from cli.main import main

    home, db, port = tmp_path / "var", f"sqlite:///{tmp_path / 'cli.db'}", free_port()
    rt = open_runtime(make_settings(home, db))
    populate(rt.engine, rt.home, standard_population())
    rt.engine.dispose()
    for name, value in {"HOME": str(home), "DATABASE_URL": db, "SURVEY__SAMPLE_SIZE": "20",
                        "SMTP__PORT": str(port), "SMTP__RETRIES": "1",
                        "SMTP__RETRY_DELAY_SECONDS": "0"}.items():
        monkeypatch.setenv(f"CLUSTER_EVAL_{name}", value)

    def run(*argv: str) -> tuple[int, str, list[str]]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err.strip().splitlines()

    assert run("sample", "--wave", "1")[0] == 0
    code, out, err = run("invite", "--wave", "1", "--json")  # nothing listens on the port
    assert code == 1 and len(err) == 1
    assert err[0].startswith("cluster-eval: error: 10 household(s) were not contacted: the mail "
                             f"server 127.0.0.1:{port} did not accept messages after 1 retries; "
                             "10 were contacted and recorded")
    result = json.loads(out)
    assert len(result["not_contacted"]) == 10 and result["sent"]["invitation"]["post"] == 6
    assert not any(m in out + err[0] for m in MARKERS)

    code, out, err = run("withdraw", "not-a-token")
    assert (code, out, err) == (1, "", ["cluster-eval: error: that token was never issued; check it "
                                        "against the fieldwork pack or the invitation e-mail"])
    bad = tmp_path / "bad.csv"
    bad.write_text("token,submitted_at\nabc,2022-01-01\n", encoding="utf-8")
    code, out, err = run("responses", "import", str(bad), "--json")
    assert code == 1 and out == "" and len(err) == 1
    assert err[0].startswith("cluster-eval: error: file bad.csv: is not a survey export v1: "
                             "missing column(s) mode")
    code, out, err = run("interviews")
    assert (code, err) == (1, ["cluster-eval: error: no respondent has opted in to an interview "
                               "yet (q10_interview_opt_in); import responses first"])
