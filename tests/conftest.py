"""Shared fixtures: both database backends, an isolated state folder, the Prefect harness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (SQLite, under the session's PREFECT_HOME) per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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


def make_settings(home: Path, database_url: str | None = None, **sections: dict) -> Settings:
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


@pytest.fixture
def live_prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Prefect server with its UI on a free port; yields its URL and the env to reach it."""
    port = free_port()
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
        stop_process_group(server)


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
