"""The production path: deployments/prefect.yaml deployed onto a process work pool, run by `prefect worker start`.

On the session's real Prefect server: a process pool (a unique name per test), `prefect deploy --all
--prefect-file ...` from the root of the checkout, a worker as a separate process, then the ingest
deployment run the way the UI's Run button does it. The worker's run must end exactly as the CLI does
on the same extract, carry the cluster's tag, and leave the extract ingested in the worker's state
folder. The deployments and the pool are deleted at the end, keeping the shared server clean.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import stop_process_group
from sqlalchemy import create_engine, text

from tasks.demo.render import write_extract

PASSPHRASE = "worker-test-passphrase"  # noqa: S105 - test passphrase
REPO = Path(__file__).parents[1]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd,  # noqa: S603 - our interpreter
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _yaml_for_pool(pool: str, into: Path) -> Path:
    """A copy of prefect.yaml naming this test's pool (`prefect deploy --all` ignores --pool)."""
    config = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    assert {d["work_pool"]["name"] for d in config["deployments"]} == {"cluster-eval"}
    for deployment in config["deployments"]:
        deployment["work_pool"] = {"name": pool}
    into.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return into


def _flow_run(api: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _wait_until_finished(api: str, run_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := _flow_run(api, run_id))["state"]["type"] not in TERMINAL:
        assert time.monotonic() < deadline, f"the worker did not finish the run: {run['state']['type']}"
        time.sleep(1)
    return run


def _delete(url: str) -> None:
    """DELETE, retried: the shared SQLite-backed server may answer 503 while busy."""
    for attempt in range(5):
        response = httpx.delete(url, timeout=10)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    assert response.status_code in (202, 204, 404), (url, response.status_code)


def _clean_up(api: str, pool: str) -> int:
    """Delete this pool's deployments (and the top-up's trigger automation) and the pool; how many deployments."""
    found = httpx.post(f"{api}/deployments/filter", timeout=10,
                       json={"work_pools": {"name": {"any_": [pool]}}}).json()
    for deployment in found:
        _delete(f"{api}/automations/owned-by/prefect.deployment.{deployment['id']}")
        _delete(f"{api}/deployments/{deployment['id']}")
    _delete(f"{api}/work_pools/{pool}")
    return len(found)


@pytest.mark.e2e
def test_prefect_yaml_on_a_process_pool_runs_ingest_on_a_worker(
        live_prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, server_env = live_prefect_server
    api = f"{url}/api"
    pool = f"cluster-eval-test-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "var"
    env = {**server_env, "CLUSTER_EVAL_HOME": str(home), "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASSPHRASE,
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    extract = write_extract(tmp_path / "extract.zip", families=40, seed=7, passphrase=PASSPHRASE)
    same = tmp_path / "reference.zip"  # ingest moves the file it took: the CLI gets its own copy
    same.write_bytes(extract.read_bytes())
    sha8 = hashlib.sha256(extract.read_bytes()).hexdigest()[:8]
    worker = None
    try:
        _run(env, tmp_path, "prefect", "work-pool", "create", pool, "--type", "process")
        _run(env, REPO, "prefect", "deploy", "--all", "--prefect-file", str(_yaml_for_pool(pool, tmp_path / "p.yaml")))
        deployed = httpx.post(f"{api}/deployments/filter", timeout=10,
                              json={"work_pools": {"name": {"any_": [pool]}}}).json()
        assert len(deployed) == 21
        ingest = next(d for d in deployed if d["name"] == "ingest-file")
        assert ingest["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO.resolve())}}]
        topup = next(d for d in deployed if d["name"] == "top-up-wave")
        [automation] = httpx.get(f"{api}/automations/related-to/prefect.deployment.{topup['id']}", timeout=10).json()
        assert (automation["name"], automation["trigger"]["expect"], automation["trigger"]["match"]) == (
            "pilot: propose a top-up wave when the response rate is low", ["cluster-eval.response-rate.low"],
            {"prefect.resource.id": "cluster-eval.cluster.pilot"})
        analyse = next(d for d in deployed if d["name"] == "analyse-and-report")
        assert analyse["parameters"] == {"out": str(home.resolve() / "outputs" / "analysis")}
        assert sorted((d["name"], s["schedule"]["cron"], s["schedule"]["timezone"])
                      for d in deployed for s in d["schedules"]) == [
            ("inbox-pick-up", "*/15 * * * *", "Europe/London"), ("monitor-daily", "0 10 * * *", "Europe/London"),
            ("reminders-daily", "0 9 * * *", "Europe/London"), ("retention-daily", "0 2 * * *", "Europe/London")]

        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],  # noqa: S603
                                  env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        started = _run(env, tmp_path, "prefect", "deployment", "run", "ingest/ingest-file",
                       "--param", f"file={extract}")
        run_id = next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line)
        run = _wait_until_finished(api, run_id)

        # The CLI on the same extract, in a state folder of its own, says what the worker's run must say.
        reference = _run({**env, "CLUSTER_EVAL_HOME": str(tmp_path / "reference")}, tmp_path, "cli", "ingest",
                         str(same))
        assert (run["state"]["type"], run["state"]["message"]) == ("COMPLETED", reference.stdout.strip())
        assert run["name"] == f"ingest {sha8}"
        assert "cluster-eval:cluster:pilot" in run["tags"]
        engine = create_engine(f"sqlite:///{home / 'cluster-eval.db'}")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status, count(*) FROM extracts GROUP BY status")).all() == [
                ("ingested", 1)]
        engine.dispose()
    finally:
        if worker is not None:
            stop_process_group(worker)
        deleted = _clean_up(api, pool)
    assert deleted == 21
