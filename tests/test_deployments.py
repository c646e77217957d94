"""Served deployments on a real Prefect server: a research assistant re-triggers a top-up wave.

`cluster-eval serve` runs against a real server; the top-up deployment is started the way the
UI's Run button does it (a flow run created from the deployment, here by `prefect deployment
run`), pauses with its proposal, is approved, then draws wave 2 and e-mails its households
through a real local SMTP server. The daily retention deployment is registered with its cron.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, make_settings, stop_process_group
from sqlalchemy import create_engine, text
from test_fieldwork import Inbox

from deployments.serve import build_deployments
from deployments.survey import survey_deployments
from tasks.core.errors import ConfigError
from tasks.demo.render import write_extract

PASSPHRASE = "deployment-test-passphrase"  # noqa: S105 - test passphrase


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done


def _wait_for(what: str, probe: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def _deployments(api: str) -> dict[str, Any]:
    response = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    response.raise_for_status()
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=10).json()}
    return {f"{flows[d['flow_id']]}/{d['name']}": d for d in response.json()}


def _run_state(api: str, run_id: str) -> str:
    return str(httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]["type"])


@pytest.mark.e2e
def test_topup_deployment_is_triggered_paused_approved_and_drawn(
        live_prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, server_env = live_prefect_server
    api = f"{url}/api"
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    env = {**server_env, "CLUSTER_EVAL_HOME": str(tmp_path / "var"),
           "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASSPHRASE, "CLUSTER_EVAL_SMTP__PORT": str(port),
           "CLUSTER_EVAL_SURVEY__SAMPLE_SIZE": "20", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    serving = None
    try:
        extract = write_extract(tmp_path / "extract.zip", families=150, seed=11, passphrase=PASSPHRASE)
        _cli(env, tmp_path, "ingest", str(extract))
        _cli(env, tmp_path, "sample", "--wave", "1")
        serving = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env,  # noqa: S603
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        deployments = _wait_for("deployments", lambda: (d := _deployments(api)) and len(d) >= 4 and d)
        assert {"survey-topup/top-up", "retention-sweep/retention-daily", "send-reminders/daily",
                "response-rate-monitor/daily"} <= set(deployments)
        [schedule] = deployments["retention-sweep/retention-daily"]["schedules"]
        assert schedule["schedule"]["cron"] == "0 2 * * *"
        assert deployments["survey-topup/top-up"]["schedules"] == []

        started = subprocess.run(  # what the UI's Run button does: a run of the deployment
            [sys.executable, "-m", "prefect", "deployment", "run", "survey-topup/top-up",
             "--param", "wave=2", "--param", "size=6", "--param", "poll_interval_seconds=1"],
            env=env, capture_output=True, text=True, timeout=60, check=True)
        run_id = next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line)
        _wait_for("the top-up run to pause for approval", lambda: _run_state(api, run_id) == "PAUSED")
        engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'cluster-eval.db'}")
        with engine.connect() as conn:  # nothing drawn or sent before the decision
            assert conn.execute(text("SELECT count(*) FROM waves")).scalar() == 1
        assert inbox.messages == []

        from prefect.flow_runs import resume_flow_run
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            resume_flow_run(run_id, run_input={"approve": True})
        _wait_for("the approved top-up to finish", lambda: _run_state(api, run_id) == "COMPLETED")

        with engine.connect() as conn:
            routes = dict(conn.execute(text(
                "SELECT route, count(*) FROM households WHERE wave = 2 GROUP BY route")).all())
            overlap = conn.execute(text(
                "SELECT count(*) FROM households h1 JOIN households h2 "
                "ON h1.family_pid = h2.family_pid AND h1.wave < h2.wave")).scalar()
            attempts = conn.execute(text(
                "SELECT count(*) FROM contact_attempts WHERE wave = 2 AND kind = 'invitation'")).scalar()
        engine.dispose()
        assert sum(routes.values()) == 6 and overlap == 0 and attempts == 6
        assert len(inbox.messages) == routes.get("email", 0)
    finally:
        if serving is not None:
            stop_process_group(serving)
        smtp.stop()


def test_survey_schedules_come_from_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", survey={"reminder_cron": "30 8 * * 1-5",
                                                       "monitor_cron": "15 11 * * *"})
    topup, reminders, monitor = survey_deployments(settings)
    assert topup.schedules in (None, [])
    assert [(s.schedule.cron, s.schedule.timezone) for s in reminders.schedules] == [
        ("30 8 * * 1-5", "Europe/London")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in monitor.schedules] == [
        ("15 11 * * *", "Europe/London")]
    assert [d.name for d in build_deployments(settings)] == ["retention-daily", "top-up", "daily", "daily"]


@pytest.mark.parametrize("key", ["reminder_cron", "monitor_cron"])
def test_a_bad_survey_cron_is_one_clear_error(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^survey.{key} '61 9 \\* \\* \\*' is not a valid cron") as caught:
        build_deployments(make_settings(tmp_path / "var", survey={key: "61 9 * * *"}))
    assert "\n" not in str(caught.value)
