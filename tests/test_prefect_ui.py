"""The Prefect UI, in a real browser, shows the demo's stages and the ingest steps by name.

Uses the session's real Prefect server (with its UI) on a free loopback port, runs `cluster-eval demo`
against it as a user would (PREFECT_API_URL set), then opens this demo's run pages in headless Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("CLUSTER_EVAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STAGES = ("ingest", "sample-wave", "import-responses", "participants-import", "transcripts-import",
          "coding-export", "coding-import", "analyse", "retention-sweep")
INGEST_STEPS = ("check archive", "decrypt", "read", "validate", "pseudonymise", "transform", "load",
                "report")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)"),
]


def _run_id(url: str, flow_name: str, **flow_runs: dict[str, Any]) -> str:
    """The latest run of a flow matching the filter (the server is shared with other tests)."""
    response = httpx.post(f"{url}/api/flow_runs/filter", timeout=10,
                          json={"flows": {"name": {"any_": [flow_name]}}, "flow_runs": flow_runs,
                                "sort": "START_TIME_DESC", "limit": 1})
    response.raise_for_status()
    [run] = response.json()
    return str(run["id"])


def _tab_text(page, url: str, run_id: str, tab: str) -> str:  # noqa: ANN001 - playwright Page
    page.goto(f"{url}/runs/flow-run/{run_id}", wait_until="networkidle")
    page.get_by_text(tab, exact=True).first.click()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    return page.inner_text("body")


def test_ui_shows_every_stage_and_ingest_step(live_prefect_server: tuple[str, dict[str, str]],
                                              tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, env = live_prefect_server
    started = datetime.now(UTC).isoformat()
    demo = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli", "demo", "--families", "120"],
        env={**env, "CLUSTER_EVAL_HOME": str(tmp_path / "var")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300, check=False)
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            demo_id = _run_id(url, "demo", start_time={"after_": started})
            subflows = _tab_text(page, url, demo_id, "Subflow Runs")
            ingest_tasks = _tab_text(page, url, _run_id(url, "ingest", parent_flow_run_id={"any_": [demo_id]}),
                                     "Task Runs")
            page.screenshot(path=os.environ.get("CLUSTER_EVAL_TEST_UI_SCREENSHOT", str(tmp_path / "ui.png")))
        finally:
            browser.close()
    assert f"{len(STAGES)} Flow runs" in subflows
    for stage in STAGES:
        assert f"\n{stage}\n" in subflows
    for step in INGEST_STEPS:
        assert f"\n{step}" in ingest_tasks
    assert "cluster-eval:cluster:pilot" in subflows
