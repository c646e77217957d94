"""Driving the Prefect UI (the default "v2" UI of Prefect 3.9) in headless Chromium, as an operator would.

Selectors are roles and visible text (buttons "Run", "Open menu", menu items "Quick run", "Custom run",
"Resume", the Resume dialog's "Select <Field>" combobox), never generated CSS classes or ids. Waits are on
the page's own elements or on the API's state, never on fixed sleeps.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from conftest import wait_for
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = os.environ.get("CLUSTER_EVAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS_ENV = "CLUSTER_EVAL_TEST_UI_SCREENSHOTS"
UI = "/v2"  # Prefect 3.9's default UI: / redirects here (the old UI answers its own deep links, "Switch to V1 UI")
TIMEOUT_MS = 60_000
RETRIES_ON_BUSY = 5


class Api:
    """The few Prefect REST calls the test needs to find things and wait on states."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = f"{url}/api"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; "503 Service Unavailable" (the SQLite server busy) is retried, as Prefect's client does."""
        for _ in range(RETRIES_ON_BUSY):
            response = httpx.request(method, f"{self.api}{path}", json=body, timeout=10)
            if response.status_code != 503:
                break
            time.sleep(0.5)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def deployments(self) -> dict[str, dict[str, Any]]:
        """Every deployment by ``flow/deployment`` name."""
        deployments = self._post("/deployments/filter", {})
        flows = {f["id"]: f["name"] for f in self._post("/flows/filter", {})}
        return {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments if d["flow_id"] in flows}

    def flow_run(self, run_id: str) -> dict[str, Any]:
        """One flow run as the API returns it."""
        return dict(self._call("GET", f"/flow_runs/{run_id}"))

    def state(self, run_id: str) -> str:
        """The run's state type (SCHEDULED, RUNNING, PAUSED, COMPLETED, FAILED, ...)."""
        return str(self.flow_run(run_id)["state"]["type"])

    def wait_for_state(self, run_id: str, *states: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the run is in one of ``states`` (or any final state, which then fails the test)."""
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

        def probe() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            state = run["state"]["type"]
            assert state in states or state not in final, (
                f"run {run['name']} ended {state}: {run['state']['message']}")
            return run if state in states else None

        return wait_for(f"run {run_id} to be {'/'.join(states)}", probe, timeout)

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        """Every log line of a flow run (and its task runs), oldest first."""
        return list(self._post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200,
                                                "sort": "TIMESTAMP_ASC"}))


def run_processes(run_id: str) -> list[int]:
    """Processes running a flow run: the runner starts each with PREFECT__FLOW_RUN_ID in its environment.

    (Linux /proc; elsewhere none are found, and waiting on them is a no-op.)
    """
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def wait_until_run_process_ended(run_id: str, timeout: float = 120) -> None:
    """Wait until no process runs the flow run: all it logged has then been sent (a process flushes at exit)."""
    wait_for(f"the process of run {run_id} to end", lambda: not run_processes(run_id), timeout)


class Screenshots:
    """Numbered screenshots of each step, under env CLUSTER_EVAL_TEST_UI_SCREENSHOTS or the test's folder."""

    def __init__(self, default: Path) -> None:
        self.folder = Path(os.environ.get(SCREENSHOTS_ENV) or default)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Any, name: str) -> Path:
        """Save the whole page as ``NN-name.png``."""
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@contextmanager
def browser_page(on_error: Path | None = None, width: int = 1400, height: int = 1100) -> Iterator[Any]:
    """One headless Debian Chromium page (Playwright's own browsers are never downloaded).

    When the block fails, the page as it was is saved to ``on_error`` (if given) to show what the UI showed.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                yield page
            except BaseException:
                if on_error is not None:
                    page.screenshot(path=str(on_error), full_page=True)
                raise
        finally:
            browser.close()


def open_deployment(page: Any, url: str, deployment_id: str) -> None:
    """The deployment's page once its status reads "Ready" (served: a runner polls for its runs)."""
    page.goto(f"{url}{UI}/deployments/deployment/{deployment_id}")
    page.get_by_text("Ready", exact=True).wait_for()
    page.get_by_role("button", name="Run", exact=True).wait_for()


def open_run_menu(page: Any) -> None:
    """Click the deployment's Run button: its menu offers Quick run and Custom run."""
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Quick run").wait_for()


def run_menu_item(page: Any, name: str) -> None:
    """Click Run → ``name`` ("Quick run", "Custom run"), opening the menu again if the page closed it.

    The deployment page re-renders when its data refresh (e.g. its status), which closes an open menu.
    """
    item = page.get_by_role("menuitem", name=name)
    for _ in range(3):
        if not item.is_visible():
            open_run_menu(page)
        try:
            item.click(timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"could not click Run → {name}")


def click_until_accepted(page: Any, click: Callable[[], None], endpoint: str, what: str) -> Any:
    """Click, and again while the API answers the UI's POST to ``endpoint`` with 503 (as a person would).

    A Prefect server on SQLite answers "503 Service Unavailable" when its database is busy; Prefect's
    Python client retries those, the UI shows an error toast and leaves the button to be pressed again.
    Returns the accepted response; any other refusal fails the test with the server's answer.
    """
    for _ in range(RETRIES_ON_BUSY):
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(endpoint)) as info:
            click()
        response = info.value
        if response.status != 503:
            break
    assert response.status in (200, 201), f"the UI could not {what}: {response.status} {response.text()}"
    return response


def created_run(page: Any, click: Callable[[], None]) -> str:
    """Click what creates a flow run (Quick run, Submit); the run's id from the API's answer.

    The UI then shows a "Flow run created" toast with a "View run" link; the run's page is opened by
    its id (the toast disappears after a few seconds, which a busy machine can outlast).
    """
    response = click_until_accepted(page, click, "/create_flow_run", "create the run")
    run_id = str(response.json()["id"])
    page.goto(f"{page.url.split(UI, 1)[0]}{UI}/runs/flow-run/{run_id}")
    return run_id


def quick_run(page: Any) -> str:
    """Run → Quick run (the deployment's default parameters); the new run's id, its page open."""
    return created_run(page, lambda: run_menu_item(page, "Quick run"))


def custom_run_form(page: Any, parameters: dict[str, str]) -> None:
    """Run → Custom run, with text parameters filled in (not submitted yet)."""
    run_menu_item(page, "Custom run")
    for name, value in parameters.items():
        field = page.get_by_label(name, exact=True)
        field.fill(value)


def _optional_field(scope: Any, label: str, kind: str) -> Any:
    """The field of an ``X | None`` schema property (tabs "X" / "None"), switched to its ``kind`` tab."""
    group = scope.get_by_text(f"{label} (Optional)", exact=True).locator(
        "xpath=ancestor::*[.//*[@role='tablist']][1]")
    group.get_by_role("tab", name=kind, exact=True).click()
    return group


def optional_int_parameter(page: Any, name: str, value: int) -> None:
    """Set an ``int | None`` parameter on the Custom run form: choose its "int" tab, type the number."""
    _optional_field(page, name, "int").get_by_role("spinbutton").fill(str(value))


def optional_text(scope: Any, label: str, value: str) -> None:
    """Fill a ``str | None`` field (e.g. a run input's note): choose its "str" tab, type the text."""
    _optional_field(scope, label, "str").get_by_role("textbox").fill(value)


def submit_custom_run(page: Any) -> str:
    """Submit the Custom run form; the new run's id, its page open."""
    return created_run(page, page.get_by_role("button", name="Submit", exact=True).click)


def open_run(page: Any, url: str, run_id: str) -> None:
    """The flow run's page (header with its name and state badge)."""
    page.goto(f"{url}{UI}/runs/flow-run/{run_id}")
    page.get_by_role("tab", name="Details").wait_for()


def resume_form(page: Any) -> Any:
    """The paused run's "Open menu" → Resume: the dialog with the run input's description and form."""
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Resume", exact=True).wait_for()
    return dialog


def resume(page: Any, dialog: Any) -> None:
    """Press the form's Resume button: the UI validates the input, then resumes the run with it."""
    click_until_accepted(page, dialog.get_by_role("button", name="Resume", exact=True).click, "/resume",
                         "resume the run")
    dialog.wait_for(state="hidden")


def choose(page: Any, dialog: Any, field: str, option: str) -> None:
    """Pick ``option`` in the dialog's select for ``field`` (a Literal field renders as a combobox)."""
    dialog.get_by_role("button", name=f"Select {field}").click()
    page.get_by_role("option", name=option, exact=True).click()


def tables(scope: Any) -> list[list[dict[str, str]]]:
    """Every HTML table in ``scope`` (e.g. the rendered markdown of the form) as rows of header -> cell."""
    found = []
    for table in scope.locator("table").all():
        headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
        rows = [[c.strip() for c in row.locator("td").all_inner_texts()]
                for row in table.locator("tbody tr").all()]
        found.append([dict(zip(headers, cells, strict=True)) for cells in rows])
    return found


def fits_across(container: Any, element: Any) -> bool:
    """Whether ``element`` lies within ``container``'s width (nothing cut off or scrolled out sideways)."""
    outer, inner = container.bounding_box(), element.bounding_box()
    assert outer is not None and inner is not None
    return bool(inner["x"] >= outer["x"] and inner["x"] + inner["width"] <= outer["x"] + outer["width"])


def tab_text(page: Any, tab: str, expect: str | None = None) -> str:
    """Click one of the run page's tabs and return the page's text once ``expect`` shows (if given)."""
    page.get_by_role("tab", name=tab, exact=True).click()
    if expect is not None:
        page.get_by_text(expect).first.wait_for()
    return str(page.inner_text("body"))


def state_badge(page: Any, state: str) -> Any:
    """The run header's state badge (e.g. "Failed")."""
    return page.locator("[data-slot='badge']").filter(has_text=re.compile(f"^{state}$")).first


def rgb(css_color: str) -> tuple[int, int, int]:
    """``rgb(r, g, b)`` / ``rgba(...)`` as integers (Chromium's computed colours)."""
    parts = re.findall(r"[\d.]+", css_color)
    assert len(parts) >= 3, css_color
    return int(float(parts[0])), int(float(parts[1])), int(float(parts[2]))
