"""Shared fixtures: both database backends, an isolated state folder, the Prefect harness, one real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Prefect reads its settings at import: give the whole test session a private home first.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="cluster-eval-test-prefect-"))
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
os.environ.pop("PREFECT_API_URL", None)
for _name in [n for n in os.environ if n.startswith("CLUSTER_EVAL_") and not n.startswith("CLUSTER_EVAL_TEST_")]:
    del os.environ[_name]

import httpx  # noqa: E402
import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tasks.core.runtime import Runtime, open_runtime, use_runtime  # noqa: E402
from tasks.core.settings import Settings  # noqa: E402

POSTGRES_ENV = "CLUSTER_EVAL_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def prefect_home() -> Path:
    """The PREFECT_HOME of this test session (for privacy scans)."""
    return _PREFECT_HOME


@pytest.fixture(scope="session", autouse=True)
def _no_flow_heartbeats() -> Iterator[None]:
    """No flow-run heartbeat thread in this process: stopping it costs up to 1 s at the end of every flow run.

    (Prefect's heartbeat thread sleeps in 1 s steps and each run joins it; heartbeats only serve crash
    detection by a server's services. The setting cannot be unset by environment, so only in-process.)
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="session")
def prefect_harness(_no_flow_heartbeats: None) -> Iterator[None]:
    """One temporary Prefect server (SQLite, under the session's PREFECT_HOME) per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# Tests using these fixtures talk to a Prefect server: they are end-to-end (left out by -m "not e2e").
SERVER_FIXTURES = frozenset({"prefect_harness", "prefect_server", "live_prefect_server"})


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Mark every test that uses a Prefect server fixture as e2e (a wrapper: before -m selects)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    return (yield)


def _running_prefect_servers() -> set[int]:
    server = sys.modules.get("prefect.server.api.server")
    if server is None:  # no Prefect server code loaded yet: none can be running in this process
        return set()
    instances = getattr(server.SubprocessASGIServer, "_instances", {})  # Prefect's registry of its servers
    return {id(s) for s in instances.values() if getattr(s, "running", False)}


@pytest.fixture(autouse=True)
def _prefect_servers_only_in_e2e(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts a Prefect server (e.g. ephemeral, by running a flow) must be marked e2e."""
    before = _running_prefect_servers()
    yield
    if request.node.get_closest_marker("e2e") is None and _running_prefect_servers() - before:
        pytest.fail("this test started a Prefect server: mark it e2e or give it the prefect_harness fixture")


def _postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests skipped: {POSTGRES_ENV} is not set (.ci/run sets it)")
    name = f"ce_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend (SQLite file; PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'analysis.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database only (for tests that are not about the backend)."""
    return f"sqlite:///{tmp_path / 'analysis.db'}"


def make_settings(home: Path, database_url: str | None = None, **sections: Any) -> Settings:
    """Settings for a test: a private home, the given database, section overrides."""
    return Settings(home=home, database_url=database_url, **sections)


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """An opened runtime (migrated database, state folder) on each backend."""
    rt = open_runtime(make_settings(tmp_path / "var", database_url))
    with use_runtime(rt):
        yield rt


@pytest.fixture
def sqlite_runtime(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    """An opened runtime on SQLite only."""
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url))
    with use_runtime(rt):
        yield rt


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """A real ``prefect server start`` (API, UI, services) on a free loopback port, with its own PREFECT_HOME."""

    def __init__(self, home: Path, **settings: str) -> None:
        """Start it; ``settings``: further PREFECT_* variables of the server (e.g. its own database)."""
        self.home = home
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{self.url}/api",
                    "PREFECT_SERVER_UI_API_URL": f"{self.url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    **settings}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", self.url.rsplit(":", 1)[1]],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_until_healthy(self, timeout: float = 180) -> None:
        """Block until the API answers its health check (fails the test if the server dies or stalls)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, "Prefect server did not start"
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the server and everything it started; remove its PREFECT_HOME."""
        stop_process_group(self.process)
        shutil.rmtree(self.home, ignore_errors=True)


# The session's shared server is started as soon as collection shows a test will need it, so that its
# start-up (tens of seconds on a busy machine) overlaps the tests that run before.
_SHARED_SERVER: list[PrefectServer] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the shared Prefect server in the background when a selected test uses it.

    Not in pytest-xdist workers: each collects every test, so there a worker starts it when a test needs it.
    """
    if hasattr(session.config, "workerinput"):
        return
    if any("prefect_server" in getattr(item, "fixturenames", ()) for item in session.items):
        _SHARED_SERVER.append(PrefectServer(Path(tempfile.mkdtemp(prefix="cluster-eval-test-server-"))))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures tests measured (``record_property("measured", line)``): reported, never asserted."""
    lines = [str(value) for report in terminalreporter.stats.get("passed", [])
             for name, value in getattr(report, "user_properties", ()) if name == "measured"]
    if lines:
        terminalreporter.write_sep("-", "measured")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the shared Prefect server, if one was started."""
    while _SHARED_SERVER:
        _SHARED_SERVER.pop().stop()


@pytest.fixture(scope="session")
def prefect_server() -> PrefectServer:
    """The session's one real Prefect server (with its UI) for tests that run the command line as a process.

    Tests sharing it must find their own runs (by time, parent run or cluster tag), not "the only run".
    """
    if not _SHARED_SERVER:  # an xdist worker, or a test pytest_collection_finish did not see
        _SHARED_SERVER.append(PrefectServer(Path(tempfile.mkdtemp(prefix="cluster-eval-test-server-"))))
    server = _SHARED_SERVER[0]
    server.wait_until_healthy()
    return server


@pytest.fixture
def live_prefect_server(prefect_server: PrefectServer, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The shared real Prefect server: its URL and the env to reach it (a private client-side PREFECT_HOME)."""
    return prefect_server.url, {**prefect_server.env, "PREFECT_HOME": str(tmp_path / "prefect")}


def wait_for(what: str, probe: Any, timeout: float = 120, interval: float = 0.5) -> Any:
    """Poll ``probe`` (an API or database read) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)



def run_cli_until(args: list[str], env: dict[str, str], kill_at: str | None,
                  trace: Path) -> subprocess.CompletedProcess[str] | None:
    """Run ``cluster-eval ARGS``; kill its whole process group once ``kill_at`` shows in the trace file.

    With ``kill_at`` None the command runs to its end and its result is returned; killed, None.
    """
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while kill_at is not None:
            if trace.exists() and kill_at in trace.read_text().splitlines():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
                return None
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate()
                pytest.fail(f"{args[0]} ended before {kill_at} (exit {process.returncode}): {err[-2000:]}")
            time.sleep(0.05)
        out, err = process.communicate(timeout=240)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)

def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM (twice: a Prefect runner may ignore the first), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


ANALYSED_AT = datetime(2022, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def analysed(sqlite_runtime: Runtime) -> tuple[Any, dict[str, Any], Any]:
    """The small fixture study of test_analysis (case records and survey), analysed and suppressed.

    Returns the analysis, its publication tables (threshold 5) and the report context as of
    ``ANALYSED_AT``; shared by the report, research-question report and chart tests.
    """
    from test_analysis import base_study, survey_study

    from tasks.analysis.manifest import make_context
    from tasks.analysis.publication import publication_tables
    from tasks.analysis.study_data import load_study_data
    from tasks.analysis.tables import build_analysis

    with sqlite_runtime.engine.begin() as conn:
        base_study().insert(conn)
        survey_study().insert(conn)
    with sqlite_runtime.engine.connect() as conn:
        data = load_study_data(conn, "pilot")
    analysis = build_analysis(data)
    context = make_context(sqlite_runtime.settings, data.extracts, data.waves, ANALYSED_AT)
    return analysis, publication_tables(analysis.tables, 5), context
