"""The project's one way to make a Prefect task: no persisted results, no cache, a fixed name.

Results of this project's tasks can hold study data, so Prefect must never persist them, and
nothing is cached between runs (every run reads the database afresh). Task runs are named
exactly as the task, without Prefect's random suffix, so the UI reads like the pipeline.

An expected refusal (a ``UserFacingError``) raised in a task is logged as its one line, without a
traceback (``RefusalsWithoutTraceback``); the flow (``tasks.core.flowrun.project_flow``) then ends
Failed with that line as its state message.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import IO, Any, ParamSpec, TypeVar

from prefect import Task
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import UserFacingError

P = ParamSpec("P")
R = TypeVar("R")


def artifact_key(cluster: str, name: str) -> str:
    """An artifact key (lowercase letters, digits, dashes) for this cluster: every key carries it."""
    return re.sub(r"[^a-z0-9-]", "-", f"{cluster}-{name}".lower())


def refusal_line(exc: UserFacingError) -> str:
    """The one line a refusal is told by (the CLI prints it after ``cluster-eval: error:``)."""
    return " ".join(str(exc).split())


class RefusalsWithoutTraceback(logging.Filter):
    """Log an expected refusal raised in a task or flow run as its one line, without a traceback.

    Prefect logs a task's exception with its traceback; for a ``UserFacingError`` the traceback
    says nothing the line does not, and the Prefect UI would show it on every failed run.
    """

    def __init__(self, keep: bool = True) -> None:
        super().__init__()
        self.keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UserFacingError):
            record.msg, record.args = f"Refused: {refusal_line(exc)}", ()
            record.exc_info, record.exc_text = None, None
            return self.keep
        return True


def install_refusal_filter() -> None:
    """Attach ``RefusalsWithoutTraceback`` to Prefect's run loggers (once per process).

    Task runs keep the refusal as one line. At flow level ``project_flow`` has already logged
    the line, so the engine's second report of it (a deployment's process re-raises the Failed
    state's exception: "Engine execution exited with unexpected exception") is dropped.
    """
    for name, keep in (("prefect.task_runs", True), ("prefect.flow_runs", False)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RefusalsWithoutTraceback) for f in logger.filters):
            logger.addFilter(RefusalsWithoutTraceback(keep))


install_refusal_filter()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send SIGTERM to the child when this process dies (Linux).

    prctl(PR_SET_PDEATHSIG) survives the exec of the child; it fires when the *thread* that forked
    the child ends, hence ``start_ephemeral_server`` is called from the main thread. None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # this process died between the fork and the prctl
            os._exit(1)

    return preexec


def uvicorn_command_dying_with_parent(server: Any) -> subprocess.Popen[Any]:
    """Start Prefect's ephemeral server process as Prefect 3.9.1 does, but tied to this process's life.

    A copy of ``prefect.server.api.server.SubprocessASGIServer._run_uvicorn_command`` (Prefect 3.9.1)
    plus ``preexec_fn``: Prefect gives no hook to pass one, and without it a command killed with
    SIGKILL leaves its server running (Prefect only stops it at exit). tests/test_process_edges.py
    fails when Prefect's own command or environment changes, so this copy is reviewed then.
    """
    import prefect
    from prefect.settings import get_current_settings

    return subprocess.Popen(  # noqa: S603 - this interpreter, Prefect's own arguments
        args=[sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
              "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
              "--port", str(server.port), "--log-level", "error", "--lifespan", "on"],
        env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
             "PREFECT__SERVER_FINAL": "1",
             **get_current_settings().to_environment_variables(exclude_unset=True)},
        preexec_fn=_die_with_this_process(),  # noqa: PLW1509 - the only way to set PDEATHSIG in the child
    )


@dataclass
class LaunchedServer:
    """An ephemeral server process started early (``launch_ephemeral_server``), not yet waited for."""

    port: int
    process: subprocess.Popen[Any]
    lock: IO[str]  # the PREFECT_HOME start lock, held until the server answers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_lock() -> IO[str]:
    """The PREFECT_HOME start lock, taken: concurrent first starts would migrate one fresh database at once."""
    from prefect.settings import PREFECT_HOME

    home = PREFECT_HOME.value()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = (home / ".server-start.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _release(lock: IO[str]) -> None:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def launch_ephemeral_server() -> LaunchedServer | None:
    """Start the ephemeral server's process now and return without waiting for it (None: not needed).

    The server takes seconds to boot; started first, it boots while this process imports the
    pipeline and opens the store. ``start_ephemeral_server(launched)`` then adopts it. Not needed
    when PREFECT_API_URL names a server or a server is already registered in this process (tests).
    Call from the main thread (see PDEATHSIG).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    registered = sys.modules.get("prefect.server.api.server")
    if registered is not None and registered.SubprocessASGIServer._instances.get(None) is not None:
        return None
    lock = _start_lock()
    try:
        port = _free_port()
        process = uvicorn_command_dying_with_parent(SimpleNamespace(port=port))
    except BaseException:
        _release(lock)
        raise
    launched = LaunchedServer(port, process, lock)
    atexit.register(discard_unadopted, launched)
    return launched


_ADOPTED: set[int] = set()  # ports of launched servers that start_ephemeral_server adopted


def discard_unadopted(launched: LaunchedServer) -> None:
    """Stop a launched server that was never adopted (the command failed before its flow); else nothing."""
    if launched.port in _ADOPTED:
        return
    if launched.process.poll() is None:
        launched.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            launched.process.wait(timeout=10)
    if not launched.lock.closed:
        _release(launched.lock)


def start_ephemeral_server(launched: LaunchedServer | None = None) -> None:
    """Without PREFECT_API_URL, start Prefect's ephemeral server now, in this thread, so it dies with us.

    The server is registered under Prefect's default key (``SubprocessASGIServer._instances[None]``,
    as ``prefect_test_harness`` does), so every client of this process finds it instead of starting
    another; Prefect still stops it at a normal exit. ``launched`` (``launch_ephemeral_server``) is
    a process started earlier: it is adopted and waited for instead of starting another. Call from
    the main thread (see PDEATHSIG).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    early = {launched.port: launched.process} if launched is not None else {}

    class DyingWithParent(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            process = early.pop(self.port, None) if self.port is not None else None
            return process if process is not None else uvicorn_command_dying_with_parent(self)

    current = SubprocessASGIServer._instances.get(None)
    if current is None or not current.running:
        SubprocessASGIServer._instances.pop(None, None)
        current = DyingWithParent()  # __new__ registers it under the None key
        if launched is not None:
            current.port = launched.port
            _ADOPTED.add(launched.port)
    lock = launched.lock if launched is not None else _start_lock()
    try:
        current.start()
    finally:
        _release(lock)
        for process in early.values():  # not adopted (a server was already running): stop it
            process.terminate()


def stage_task(name: str, *, retries: int = 0, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a plain function as a named task with the project's defaults (typing kept)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return as_task(name, fn, retries=retries, **options)

    return decorate


def as_task(name: str, fn: Callable[P, R], *, retries: int = 0, **options: Any) -> Task[P, R]:
    """The task form of a plain function with the project's defaults (for pipelines built at run time)."""
    return Task(fn=fn, name=name, task_run_name=name, persist_result=False, cache_policy=NO_CACHE,
                retries=retries, **options)
