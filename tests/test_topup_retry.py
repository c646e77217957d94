"""Retry of a failed top-up through the API the Prefect UI uses: the same wave, nobody new, nobody twice.

A real Prefect server, `cluster-eval serve` and a local SMTP server that accepts 5 messages and then
answers 451 (try again later). An approved top-up wave of 8 e-mail households fails after e-mailing
5 (run Failed, the one-line reason as its message); the mail server recovers; Retry (the UI's
`set_state` to AwaitingRetry) completes the same run: exactly the 3 remaining households are
e-mailed, no household twice, no new wave. A second top-up cancelled from the UI while it awaits
its decision is audited as cancelled by the flow's on_cancellation hook (run by the Runner).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, make_settings, stop_process_group, wait_for
from sqlalchemy import create_engine, text
from test_fieldwork import Inbox
from test_sampling import Fam, contact, populate

from tasks.core.runtime import open_runtime
from tasks.survey.sampling import draw_wave

pytestmark = pytest.mark.e2e


@dataclass
class FlakyInbox(Inbox):
    """Accepts messages until ``limit`` are in, then answers 451 (a temporary failure) to each."""

    limit: int | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.limit is not None and len(self.messages) >= self.limit:
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


def _topup_deployment(api: str) -> str | None:
    flows = httpx.post(f"{api}/flows/filter", json={"flows": {"name": {"any_": ["survey-topup"]}}},
                       timeout=10).json()
    if not flows:
        return None
    found = httpx.post(f"{api}/deployments/filter",
                       json={"flows": {"id": {"any_": [f["id"] for f in flows]}}}, timeout=10).json()
    return str(found[0]["id"]) if found else None


def _run(api: str, run_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json())


def _state(api: str, run_id: str) -> str:
    return str(_run(api, run_id)["state"]["type"])



def _create_run(url: str, body: dict[str, Any]) -> str:
    """The UI's Run button. A busy SQLite-backed server answers 503 when its database is locked (the
    request was rolled back, nothing created): ask again, as the UI's user would."""
    for _ in range(10):
        answer = httpx.post(url, json=body, timeout=30)
        if answer.status_code < 500:
            break
        time.sleep(1)
    assert answer.is_success, answer.text
    return str(answer.json()["id"])

def test_retry_of_a_failed_topup_invites_the_rest_of_the_same_wave(
        live_prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, server_env = live_prefect_server
    api = f"{url}/api"
    home = tmp_path / "var"
    inbox, port = FlakyInbox(limit=5), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    # 40 families, all reached by e-mail; wave 1 = 10 of them; the top-up asks for 8 more.
    rt = open_runtime(make_settings(home, survey={"sample_size": 10}))
    key = populate(rt.engine, rt.home, [Fam(f"fam{i:04d}", ("parenting", "housing")[i % 2], record=contact(i))
                                        for i in range(1, 41)])
    draw_wave(rt.engine, rt.settings, key, 1, None)
    rt.engine.dispose()
    env = {**server_env, "CLUSTER_EVAL_HOME": str(home), "CLUSTER_EVAL_SURVEY__SAMPLE_SIZE": "10",
           "CLUSTER_EVAL_SURVEY__APPROVAL_POLL_SECONDS": "1", "CLUSTER_EVAL_SMTP__PORT": str(port),
           "CLUSTER_EVAL_SMTP__RETRIES": "1", "CLUSTER_EVAL_SMTP__RETRY_DELAY_SECONDS": "0",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    engine = create_engine(f"sqlite:///{home / 'cluster-eval.db'}")

    def scalar(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    serving = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env, cwd=tmp_path,  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deployment = wait_for("the survey-topup deployment", lambda: _topup_deployment(api))
        run_id = _create_run(f"{api}/deployments/{deployment}/create_flow_run", {"parameters": {"size": 8}})
        wait_for("the top-up to pause for a decision", lambda: _state(api, run_id) == "PAUSED")
        assert scalar("SELECT COUNT(*) FROM waves") == 1 and inbox.messages == []

        resumed = httpx.post(f"{api}/flow_runs/{run_id}/resume",  # the form's Submit: approve
                             json={"run_input": {"decision": "approve"}}, timeout=10)
        assert resumed.json()["status"] == "ACCEPT", resumed.text
        wait_for("the top-up to fail on the mail server", lambda: _state(api, run_id) == "FAILED")
        failed = _run(api, run_id)
        assert failed["state"]["message"] == (
            f"3 household(s) of wave 2 were not contacted: the mail server 127.0.0.1:{port} did not accept "
            "messages after 1 retries; 5 were contacted and recorded; press Retry on this run when the "
            "server is reachable (it sends only the invitations not sent) or run cluster-eval invite --wave 2")
        assert failed["name"] == "top-up wave 2"
        assert len(inbox.messages) == 5
        assert scalar("SELECT COUNT(*) FROM contact_attempts WHERE wave = 2") == 5

        inbox.limit = None  # the mail server is back
        retried = httpx.post(f"{api}/flow_runs/{run_id}/set_state", timeout=10, json={  # the UI's Retry
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": False})
        assert retried.json()["status"] == "ACCEPT", retried.text
        wait_for("the retried top-up to complete", lambda: _state(api, run_id) == "COMPLETED")
        done = _run(api, run_id)
        assert done["state"]["message"] == ("wave 2: 3 remaining invitation(s) sent (3 e-mailed, 0 in the post "
                                            "pack, 0 on the call list); nothing new drawn")
        assert len(inbox.messages) == 8
        recipients = inbox.recipients()
        assert len(set(recipients)) == 8  # each household of wave 2 e-mailed once
        assert scalar("SELECT COUNT(*) FROM waves") == 2  # no wave 3
        assert scalar("SELECT COUNT(*) FROM households WHERE wave = 2") == 8
        assert scalar("SELECT COUNT(*) FROM contact_attempts WHERE wave = 2 AND kind = 'invitation'") == 8
        assert scalar("SELECT COUNT(*) FROM topup_runs") == 1
        assert scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'survey_topup_decision'") == 1
        logs = httpx.post(f"{api}/logs/filter", timeout=10,
                          json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
        assert logs and not any("Traceback" in log["message"] for log in logs)

        # Cancel from the UI while a top-up awaits its decision: the Runner's on_cancellation hook audits it.
        other = _create_run(f"{api}/deployments/{deployment}/create_flow_run", {"parameters": {"size": 2}})
        wait_for("the second top-up to pause", lambda: _state(api, other) == "PAUSED")
        cancel = httpx.post(f"{api}/flow_runs/{other}/set_state", timeout=10,  # the UI's Cancel
                            json={"state": {"type": "CANCELLING", "name": "Cancelling"}})
        assert cancel.json()["status"] == "ACCEPT", cancel.text
        wait_for("the cancellation to be audited", lambda: scalar(
            "SELECT COUNT(*) FROM topup_runs WHERE decision = 'cancelled'") == 1)
        assert _run(api, other)["name"] == "top-up wave 3"
        assert scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'survey_topup_decision' "
                      "AND details LIKE '%cancelled%'") == 1
        assert scalar("SELECT COUNT(*) FROM waves") == 2 and len(inbox.messages) == 8
    finally:
        stop_process_group(serving)
        smtp.stop()
        engine.dispose()
