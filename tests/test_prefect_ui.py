"""The Prefect UI, in a real browser, shows the demo's stages and the ingest steps by name.

Starts a real Prefect server (with its UI) on a free loopback port, runs `cluster-eval demo`
against it as a user would (PREFECT_API_URL set), then opens the run pages in headless Chromium.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = os.environ.get("CLUSTER_EVAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STAGES = ("ingest", "sample-wave", "import-responses", "analyse", "retention-sweep")
INGEST_STEPS = ("check archive", "decrypt", "read", "validate", "pseudonymise", "transform", "load",
                "report")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Prefect server with its UI; yields its URL and the environment to reach it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"{url}/api",
           "PREFECT_SERVER_UI_API_URL": f"{url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "Prefect server did not start"
            time.sleep(0.5)
        yield url, env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _run_id(url: str, flow_name: str) -> str:
    response = httpx.post(f"{url}/api/flow_runs/filter", timeout=10,
                          json={"flows": {"name": {"any_": [flow_name]}}, "limit": 1})
    response.raise_for_status()
    [run] = response.json()
    return str(run["id"])


def _tab_text(page, url: str, run_id: str, tab: str) -> str:  # noqa: ANN001 - playwright Page
    page.goto(f"{url}/runs/flow-run/{run_id}", wait_until="networkidle")
    page.get_by_text(tab, exact=True).first.click()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    return page.inner_text("body")


def test_ui_shows_every_stage_and_ingest_step(prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, env = prefect_server
    demo = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "flows.cli", "demo", "--families", "120"],
        env={**env, "CLUSTER_EVAL_HOME": str(tmp_path / "var")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300, check=False)
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            subflows = _tab_text(page, url, _run_id(url, "demo"), "Subflow Runs")
            ingest_tasks = _tab_text(page, url, _run_id(url, "ingest"), "Task Runs")
            page.screenshot(path=os.environ.get("CLUSTER_EVAL_TEST_UI_SCREENSHOT", str(tmp_path / "ui.png")))
        finally:
            browser.close()
    assert f"{len(STAGES)} Flow runs" in subflows
    for stage in STAGES:
        assert f"\n{stage}\n" in subflows
    for step in INGEST_STEPS:
        assert f"\n{step}" in ingest_tasks
    assert "cluster-eval:cluster:pilot" in subflows
