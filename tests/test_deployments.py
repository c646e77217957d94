"""Deployments: every stage startable from the UI, schedules in UK time, prefect.yaml kept equal, serve's checks.

The end-to-end test serves every deployment with `cluster-eval serve` on a real server, checks what the
API stores (names, crons, time zone), then a research assistant re-triggers a top-up wave: started the
way the UI's Run button does it (a flow run of the deployment, here by `prefect deployment run`), paused
with its proposal, approved, then wave 2 drawn and e-mailed through a real local SMTP server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from conftest import free_port, make_settings, stop_process_group, wait_for
from prefect.utilities.templating import apply_values
from sqlalchemy import create_engine, text
from test_fieldwork import Inbox

from deployments.serve import ServerAccess, build_deployments, check_server, is_loopback
from deployments.survey import survey_deployments
from tasks.core.errors import ConfigError
from tasks.core.runtime import RUN_TAG
from tasks.core.settings import Settings
from tasks.demo.render import write_extract

PASSPHRASE = "deployment-test-passphrase"  # noqa: S105 - test passphrase
REPO = Path(__file__).parents[1]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"

#: Every deployment, flow/deployment, in the order build_deployments returns them.
DEPLOYMENTS = [
    "ingest/ingest-file", "ingest-inbox/inbox-pick-up", "sample-wave/draw-wave", "send-invitations/invite-wave",
    "send-reminders/reminders-daily", "survey-topup/top-up-wave", "response-rate-monitor/monitor-daily",
    "import-responses/import-survey-export", "draw-interviews/draw-interview-sample", "analyse/analyse-and-report",
    "retention-sweep/retention-daily", "evaluation/whole-evaluation", "status/status-report",
    "audit-verify/verify-audit-log", "participants-import/import-register",
    "participants-withdraw/withdraw-participant", "transcripts-import/import-transcripts",
    "transcripts-redact/redact-session", "transcripts-approve/approve-session",
    "coding-export/export-for-coding", "coding-import/import-coding",
]
#: The scheduled ones and their default crons (UK time).
DEFAULT_CRONS = {
    "ingest-inbox/inbox-pick-up": "*/15 * * * *", "send-reminders/reminders-daily": "0 9 * * *",
    "response-rate-monitor/monitor-daily": "0 10 * * *", "retention-sweep/retention-daily": "0 2 * * *",
}


def _full_name(deployment: Any) -> str:
    return f"{deployment.flow_name}/{deployment.name}"


def test_every_stage_has_one_uniquely_named_deployment(tmp_path: Path) -> None:
    deployments = build_deployments(make_settings(tmp_path / "var"))
    assert [_full_name(d) for d in deployments] == DEPLOYMENTS
    assert len({d.name for d in deployments}) == len(DEPLOYMENTS)  # unique even without the flow name
    assert not any(d.flow_name == "withdraw" for d in deployments)  # a token must never be a parameter
    for d in deployments:
        assert d.description and d.entrypoint_type.value == "module_path", d.name
        assert d.tags[1:] == [RUN_TAG, f"{RUN_TAG}:cluster:pilot"], d.name
    by_name = {_full_name(d): d for d in deployments}
    assert by_name["analyse/analyse-and-report"].parameters == {
        "out": str((tmp_path / "var").resolve() / "outputs" / "analysis")}
    assert by_name["sample-wave/draw-wave"].parameters == {"wave": 1}
    assert by_name["send-invitations/invite-wave"].parameters == {"wave": 1}
    assert by_name["retention-sweep/retention-daily"].parameters == {"dry_run": False}
    [trigger] = by_name["survey-topup/top-up-wave"].triggers
    assert trigger.expect == {"cluster-eval.response-rate.low"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "cluster-eval.cluster.pilot"}


def test_schedules_come_from_settings_in_uk_time(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", survey={"reminder_cron": "30 8 * * 1-5", "monitor_cron": "15 11 * * *"},
                             retention={"sweep_cron": "45 3 * * *"}, deployments={"inbox_cron": "5 * * * *"})
    scheduled = {_full_name(d): [(s.schedule.cron, s.schedule.timezone) for s in d.schedules]
                 for d in build_deployments(settings) if d.schedules}
    assert scheduled == {
        "ingest-inbox/inbox-pick-up": [("5 * * * *", "Europe/London")],
        "send-reminders/reminders-daily": [("30 8 * * 1-5", "Europe/London")],
        "response-rate-monitor/monitor-daily": [("15 11 * * *", "Europe/London")],
        "retention-sweep/retention-daily": [("45 3 * * *", "Europe/London")],
    }
    for d in build_deployments(settings):
        said = "UK time (Europe/London)" in (d.description or "")
        assert said == bool(d.schedules), d.name
    reminders = next(d for d in survey_deployments(settings) if d.name == "reminders-daily")
    assert reminders.description.endswith("Schedule: 30 8 * * 1-5 UK time (Europe/London), "
                                          "setting survey.reminder_cron.")


@pytest.mark.parametrize(("section", "key"), [("survey", "reminder_cron"), ("survey", "monitor_cron"),
                                              ("retention", "sweep_cron"), ("deployments", "inbox_cron")])
def test_a_bad_cron_is_one_clear_error(tmp_path: Path, section: str, key: str) -> None:
    settings = make_settings(tmp_path / "var", **{section: {key: "61 9 * * *"}})
    with pytest.raises(ConfigError, match=f"^{section}.{key} '61 9 \\* \\* \\*' is not a valid cron") as caught:
        build_deployments(settings)
    assert "\n" not in str(caught.value)


def _yaml_deployments(checkout: str, home: str) -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments with its build steps' outputs applied, as `prefect deploy` does."""
    config = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    outputs = {"checkout": {"stdout": checkout}, "home": {"stdout": home}}
    return {d["name"]: {**apply_values(d, outputs, remove_notset=False), "pull": apply_values(config["pull"], outputs)}
            for d in config["deployments"]}


def test_prefect_yaml_has_the_same_deployments_as_serve(tmp_path: Path) -> None:
    home = tmp_path / "srv" / "cluster-eval"
    served = build_deployments(Settings(home=home))  # default settings but the state folder
    assert Settings().deployments.inbox_cron == "*/15 * * * *"
    declared = _yaml_deployments(str(REPO), str(home.resolve()))
    assert list(declared) == [d.name for d in served]
    for d in served:
        y = declared[d.name]
        module, function = d.entrypoint.rsplit(".", 1)
        assert y["entrypoint"] == f"{module.replace('.', '/')}.py:{function}", d.name
        assert y["parameters"] == d.parameters, d.name
        assert " ".join(y["description"].split()) == d.description, d.name
        assert y["tags"] == d.tags[:2], d.name  # the flows add the cluster's tag at run time
        assert [(s["cron"], s["timezone"]) for s in y.get("schedules", [])] == [
            (s.schedule.cron, s.schedule.timezone) for s in d.schedules or []], d.name
        assert [{k: v for k, v in t.items() if k != "type"} for t in y.get("triggers", [])] == [
            t.model_dump(mode="json", include={"name", "enabled", "match", "expect", "parameters"})
            for t in d.triggers], d.name
        assert y["work_pool"] == {"name": "cluster-eval"}
        assert y["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert (REPO / y["entrypoint"].split(":")[0]).is_file(), d.name


# --- cluster-eval serve: refuse a server that is down, unsafe or refusing us -------------------------------

def _serve(tmp_path: Path, api_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLUSTER_EVAL_HOME": str(tmp_path / "var"),
               "PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path / "prefect"), **env}
    return subprocess.run([sys.executable, "-m", "cli", "serve", *args], env=environ, cwd=tmp_path,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)


def test_serve_refuses_a_server_that_is_down_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    done = _serve(tmp_path, url)
    assert done.returncode == 1
    assert done.stderr == (f"cluster-eval: error: no Prefect server answers at PREFECT_API_URL {url}: start it "
                           "(prefect server start --host 127.0.0.1) or correct PREFECT_API_URL\n")
    assert done.stdout == ""


def test_serve_refuses_a_remote_server_without_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli.main import main

    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(tmp_path / "var"))
    with temporary_settings({PREFECT_API_URL: "http://user:secret@192.0.2.10:4200/api"}):  # TEST-NET: never contacted
        assert main(["serve"]) == 1
    assert capsys.readouterr().err == (
        "cluster-eval: error: PREFECT_API_URL http://192.0.2.10:4200/api is not on this machine and no "
        "PREFECT_API_AUTH_STRING is set: protect the server with PREFECT_SERVER_API_AUTH_STRING and set the "
        "same value in PREFECT_API_AUTH_STRING, or pass --allow-unauthenticated\n")


class _Answers:
    """A fake httpx.get: the status code per path, and the headers each request carried."""

    def __init__(self, **codes: int) -> None:
        self.codes, self.seen = codes, []  # type: ignore[var-annotated]

    def __call__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 0) -> httpx.Response:
        path = url.rsplit("/api", 1)[1]
        self.seen.append((path, dict(headers or {})))
        return httpx.Response(self.codes[path.strip("/").replace("/", "_")])


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:4200/api", True), ("http://localhost:4200/api", True), ("http://[::1]:4200/api", True),
    ("http://127.8.9.10/api", True), ("http://0.0.0.0:4200/api", False), ("https://prefect.example.org/api", False),
    ("http://10.0.0.5:4200/api", False)])
def test_loopback_servers_are_this_machine_only(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_serve_checks_credentials_against_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = "https://prefect.example.org/api"
    answers = _Answers(health=200, admin_version=200)
    monkeypatch.setattr(httpx, "get", answers)
    check_server(ServerAccess(remote, auth_string="admin:pass"))  # noqa: S106 - test credential
    assert answers.seen == [("/health", {}), ("/admin/version", {"Authorization": "Basic YWRtaW46cGFzcw=="})]
    check_server(ServerAccess(remote), allow_unauthenticated=True)  # told to: allowed
    check_server(ServerAccess(remote, api_key="pnu_x"))  # Prefect Cloud: an API key
    assert answers.seen[-1] == ("/admin/version", {"Authorization": "Bearer pnu_x"})

    monkeypatch.setattr(httpx, "get", _Answers(health=200, admin_version=401))
    with pytest.raises(ConfigError, match=f"^the Prefect server at PREFECT_API_URL {remote} rejected "
                                          "PREFECT_API_AUTH_STRING$"):
        check_server(ServerAccess(remote, auth_string="admin:wrong"))  # noqa: S106 - test credential
    with pytest.raises(ConfigError, match="^the Prefect server at PREFECT_API_URL http://127.0.0.1:4200/api needs "
                                          "credentials: set PREFECT_API_AUTH_STRING to its "
                                          "PREFECT_SERVER_API_AUTH_STRING$"):
        check_server(ServerAccess("http://127.0.0.1:4200/api"))
    monkeypatch.setattr(httpx, "get", _Answers(health=503, admin_version=200))
    with pytest.raises(ConfigError, match="is not healthy \\(health check: HTTP 503\\)$"):
        check_server(ServerAccess("http://127.0.0.1:4200/api"))


# --- end to end: serve on a real server, re-trigger a top-up wave ---------------------------------------

def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done


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
           "CLUSTER_EVAL_SURVEY__SAMPLE_SIZE": "20", "CLUSTER_EVAL_SURVEY__APPROVAL_POLL_SECONDS": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    serving = None
    try:
        extract = write_extract(tmp_path / "extract.zip", families=150, seed=11, passphrase=PASSPHRASE)
        _cli(env, tmp_path, "ingest", str(extract))
        _cli(env, tmp_path, "sample", "--wave", "1")
        serving = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env,  # noqa: S603
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        deployments = wait_for("deployments", lambda: (d := _deployments(api)) and set(DEPLOYMENTS) <= set(d) and d)
        stored = {name: [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in d["schedules"]]
                  for name, d in deployments.items() if name in DEPLOYMENTS and d["schedules"]}
        assert stored == {name: [(cron, "Europe/London")] for name, cron in DEFAULT_CRONS.items()}
        assert deployments["analyse/analyse-and-report"]["parameters"] == {
            "out": str((tmp_path / "var").resolve() / "outputs" / "analysis")}
        refused = httpx.post(  # an invalid parameter: refused with a readable reason, no run created
            f"{api}/deployments/{deployments['sample-wave/draw-wave']['id']}/create_flow_run",
            json={"parameters": {"wave": "two"}}, timeout=10)
        assert (refused.status_code, refused.json()["detail"]) == (
            409, "Error creating flow run: Validation failed for field 'wave'. Failure reason: 'two' is not "
                 "of type 'integer'")

        started = subprocess.run(  # what the UI's Run button does: a run of the deployment
            [sys.executable, "-m", "prefect", "deployment", "run", "survey-topup/top-up-wave",
             "--param", "wave=2", "--param", "size=6"],
            env=env, capture_output=True, text=True, timeout=60, check=True)
        run_id = next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line)
        wait_for("the top-up run to pause for approval", lambda: _run_state(api, run_id) == "PAUSED")
        engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'cluster-eval.db'}")
        with engine.connect() as conn:  # nothing drawn or sent before the decision
            assert conn.execute(text("SELECT count(*) FROM waves")).scalar() == 1
        assert inbox.messages == []

        from prefect.flow_runs import resume_flow_run
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            resume_flow_run(run_id, run_input={"decision": "approve"})
        wait_for("the approved top-up to finish", lambda: _run_state(api, run_id) == "COMPLETED")

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
