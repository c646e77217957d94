"""Processes and files at the edges: killed commands, full disks, linked folders.

* the ephemeral Prefect server a command starts dies with the command, even under kill -9
  (``tasks.core.prefect.start_ephemeral_server``: PR_SET_PDEATHSIG in the server process);
* our copy of Prefect's server command stays identical to Prefect's own (fails on a Prefect upgrade);
* a full disk while ``ingest`` moves the file into HOME/raw (or HOME/quarantine) leaves nothing
  there, no row, the delivered file as it was; the CLI says so in one line (and in JSON with --json);
* a linked folder on the way to the file is resolved: the real file moves into the home.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from conftest import make_settings
from sqlalchemy import text
from test_home_hardening import PASS, SMALL, _delivered, _secrets  # the synthetic extract and its secrets

from cli.main import main
from tasks.core import prefect as core_prefect
from tasks.core.runtime import Runtime, open_runtime
from tasks.demo.render import aes_zip
from tasks.ingest import load as ingest_load
from tasks.ingest.pipeline import ingest_file

LINUX = sys.platform.startswith("linux")


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _environ(pid: int) -> dict[str, str]:
    raw = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace").split("\0")
    return dict(item.split("=", 1) for item in raw if "=" in item)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.e2e
@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_killed_command_leaves_no_prefect_server_running(tmp_path: Path) -> None:
    home = tmp_path / "var"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLUSTER_EVAL_", "PREFECT_API", "PREFECT_HOME"))}
    command = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", "status"], env={**clean, "CLUSTER_EVAL_HOME": str(home)},
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def server() -> int | None:
            servers = [p for p in _children(command.pid) if "uvicorn" in _cmdline(p)]
            return servers[0] if servers else None

        pid = _wait("the command's ephemeral Prefect server", server, 300)
        os.kill(command.pid, signal.SIGSTOP)  # the command cannot finish (and stop its server) by itself now
        argv = _cmdline(pid)
        assert "prefect.server.api.server:create_app" in argv
        assert _environ(pid)["PREFECT_HOME"] == str((home / "prefect").resolve())  # this command's server
        port = argv[argv.index("--port") + 1]
        _wait("the server to answer", lambda: _healthy(port), 300)
        # Prefect 3.9.1's ephemeral server runs its services in process: no child of its own would be
        # left behind. Should that change, this fails and the children need the same treatment.
        assert _children(pid) == []

        command.kill()
        assert command.wait(10) == -signal.SIGKILL
        _wait("the orphaned server to end", lambda: not _alive(pid), 10)
        assert not _healthy(port)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait(10)


@pytest.mark.e2e
@pytest.mark.skipif(not LINUX, reason="/proc is Linux")
def test_the_server_boots_while_the_command_opens_the_store_and_a_refusal_stops_it(tmp_path: Path) -> None:
    """The ephemeral server is launched before the store is opened (it boots meanwhile): a command
    refused there (an unreachable database) stops the server it launched before it exits."""
    home = tmp_path / "var"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLUSTER_EVAL_", "PREFECT_API", "PREFECT_HOME"))}
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers: a hung database
    url = f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/none?connect_timeout=20"
    command = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", "status"],
        env={**clean, "CLUSTER_EVAL_HOME": str(home), "CLUSTER_EVAL_DATABASE_URL": url},
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def server() -> int | None:
            servers = [p for p in _children(command.pid) if "uvicorn" in _cmdline(p)]
            return servers[0] if servers else None

        pid = _wait("the server launched while the database is tried", server, 120)
        assert command.poll() is None  # still trying the database: the server boots meanwhile
        assert _environ(pid)["PREFECT_HOME"] == str((home / "prefect").resolve())
        _, err = command.communicate(timeout=120)
        assert command.returncode == 1
        assert err.count("\n") == 1 and "is unreachable" in err
        _wait("the launched server to stop with the refusal", lambda: not _alive(pid), 10)
    finally:
        silent.close()
        if command.poll() is None:
            command.kill()
            command.wait(10)


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux")
def test_a_child_started_with_the_hook_dies_with_its_parent(tmp_path: Path) -> None:
    """The mechanism alone: a parent spawns ``sleep`` with the hook and is killed; ``sleep`` goes too."""
    script = textwrap.dedent("""
        import subprocess, sys, time
        from tasks.core.prefect import _die_with_this_process
        child = subprocess.Popen(["sleep", "60"], preexec_fn=_die_with_this_process())
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,  # noqa: S603
                              text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert parent.stdout is not None
        sleeper = int(parent.stdout.readline())
        assert _alive(sleeper)
        parent.kill()
        parent.wait(10)
        _wait("sleep to die with its parent", lambda: not _alive(sleeper), 5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_our_server_command_is_prefects_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """``uvicorn_command_dying_with_parent`` copies Prefect 3.9.1's command: fails when Prefect changes it."""
    from prefect.server.api.server import SubprocessASGIServer

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda **kwargs: calls.append(kwargs))
    server = SimpleNamespace(port=8123)
    SubprocessASGIServer._run_uvicorn_command(server)  # type: ignore[arg-type]  # Prefect's own
    core_prefect.uvicorn_command_dying_with_parent(server)  # ours
    prefects, ours = calls
    assert set(prefects) == {"args", "env"}  # Prefect passes nothing else (no hook we could use instead)
    assert ours.pop("preexec_fn") is not None if LINUX else True
    assert ours == prefects
    assert "--port" in prefects["args"] and "8123" in prefects["args"]


# --------------------------------------------------------------------------- a full disk during the move

ENOSPC_TEXT = os.strerror(errno.ENOSPC)


@pytest.fixture
def rt(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(tmp_path / "var", sqlite_url))
    yield runtime
    runtime.engine.dispose()


def _full_disk(monkeypatch: pytest.MonkeyPatch, home: Path, *, fail_copy: int | None) -> list[str]:
    """Make moves into ``home`` fail with ENOSPC: the rename, or each copy across disks from the ``fail_copy``-th.

    With ``fail_copy`` a rename into the home is refused as cross-device (EXDEV), as when the delivery
    folder is on another disk; that copy then writes half its bytes before the disk is full.
    """
    real_rename, real_copy = os.rename, ingest_load.copyfileobj
    copies: list[str] = []

    def rename(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if Path(target).is_relative_to(home):
            if fail_copy is None:
                raise OSError(errno.ENOSPC, ENOSPC_TEXT)
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_rename(source, target, *args, **kwargs)

    def copy(src: Any, dst: Any) -> None:
        copies.append(Path(src.name).name)
        if fail_copy is not None and len(copies) >= fail_copy:
            dst.write(src.read(max(1, os.fstat(src.fileno()).st_size // 2)))
            dst.flush()
            raise OSError(errno.ENOSPC, ENOSPC_TEXT)
        real_copy(src, dst)

    monkeypatch.setattr(ingest_load.os, "rename", rename)
    monkeypatch.setattr(ingest_load, "copyfileobj", copy)
    return copies


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _stored(rt: Runtime) -> tuple[int, int]:
    with rt.engine.connect() as conn:
        return (conn.execute(text("SELECT count(*) FROM extracts")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM stored_files")).scalar_one())


@pytest.mark.parametrize(("fail_copy", "copied"), [
    (None, []),                                   # one filesystem: the rename itself fails
    (1, ["extract.zip"]),                         # across filesystems: the extract's copy fills the disk
    (2, ["extract.zip", "extract.zip.sha256"]),   # the sidecar's copy fills it: the extract moves back
])
def test_full_disk_during_the_move_leaves_nothing_behind(rt: Runtime, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         fail_copy: int | None, copied: list[str]) -> None:
    data = aes_zip(SMALL, PASS)
    source = _delivered(tmp_path / "egress", "extract.zip", data, sidecar=True)
    sidecar_text = source.with_name("extract.zip.sha256").read_text()
    copies = _full_disk(monkeypatch, rt.home.root, fail_copy=fail_copy)

    outcome = ingest_file(source, rt, _secrets(rt))

    assert copies == copied
    assert outcome.status == "rejected" and outcome.sha256 == hashlib.sha256(data).hexdigest()
    assert outcome.error == (f"file extract.zip: the extract could not be moved into {rt.home.raw} "
                             f"({ENOSPC_TEXT}); nothing was stored; free space in or check that folder and "
                             "run the ingest again; the file was left in place")
    assert _everything_under(rt.home.raw) == []  # no 0-byte, partial or temporary file
    assert _everything_under(rt.home.quarantine) == []
    assert _stored(rt) == (0, 0)
    assert source.read_bytes() == data and _mode(source) == 0o644  # the delivered file as it came
    assert source.with_name("extract.zip.sha256").read_text() == sidecar_text
    assert _mode(source.with_name("extract.zip.sha256")) == 0o644
    assert sorted(p.name for p in source.parent.iterdir()) == ["extract.zip", "extract.zip.sha256"]


def test_full_disk_during_the_quarantine_move_leaves_nothing_behind(rt: Runtime, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    source = _delivered(tmp_path / "egress", "broken.zip", b"%PDF-1.7\n" + b"x" * 500, sidecar=True)
    copies = _full_disk(monkeypatch, rt.home.root, fail_copy=2)  # the sidecar's copy fills the disk

    outcome = ingest_file(source, rt, _secrets(rt))

    assert copies == ["broken.zip", "broken.zip.sha256"]
    assert outcome.status == "rejected" and outcome.kept_at is None
    assert outcome.error is not None and outcome.error.startswith("file broken.zip: ")
    assert outcome.error.endswith(f"; the rejected file could not be moved into {rt.home.quarantine} "
                                  f"({ENOSPC_TEXT}); the file was left in place")
    assert "quarantined" not in outcome.error
    assert _everything_under(rt.home.quarantine) == [] and _everything_under(rt.home.raw) == []
    assert source.read_bytes().startswith(b"%PDF") and _mode(source) == 0o644
    assert sorted(p.name for p in source.parent.iterdir()) == ["broken.zip", "broken.zip.sha256"]


@pytest.mark.e2e
def test_cli_full_disk_prints_one_line_and_json(prefect_harness: None, tmp_path: Path, sqlite_url: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    data = aes_zip(SMALL, PASS)
    source = _delivered(tmp_path / "egress", "extract.zip", data)
    _full_disk(monkeypatch, home.resolve(), fail_copy=1)

    assert main(["ingest", str(source), "--json"]) == 1
    out, err = capsys.readouterr()

    result = json.loads(out)
    assert result["status"] == "rejected" and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["error"].endswith(f"({ENOSPC_TEXT}); nothing was stored; free space in or check that "
                                    "folder and run the ingest again; the file was left in place")
    assert result["population"] == {"families": 0, "episodes": 0}
    assert err.splitlines()[-1] == f"cluster-eval: error: {result['error']}"
    assert len([line for line in err.splitlines() if line.startswith("cluster-eval: error:")]) == 1
    assert "Traceback" not in err
    assert _everything_under(home / "raw") == [] and source.read_bytes() == data

    assert main(["ingest", str(source)]) == 1  # without --json: the summary says where the file is
    out, err = capsys.readouterr()
    assert out.startswith(f"extract {result['sha256'][:12]} rejected and left in place: file extract.zip: ")


# --------------------------------------------------------------------------- a linked folder on the way


def test_a_linked_folder_is_resolved_and_the_real_file_moves_into_the_home(rt: Runtime, tmp_path: Path) -> None:
    data = aes_zip(SMALL, PASS)
    real = _delivered(tmp_path / "egress" / "real", "extract.zip", data, sidecar=True)
    linked = tmp_path / "linked"
    linked.symlink_to(real.parent, target_is_directory=True)

    outcome = ingest_file(linked / "extract.zip", rt, _secrets(rt))

    assert outcome.status == "ingested", outcome.error
    sha = hashlib.sha256(data).hexdigest()
    assert outcome.kept_at == rt.home.raw / f"{sha[:12]}-extract.zip"
    assert list(real.parent.iterdir()) == []  # the real file and its sidecar left; no copy, no link
    assert linked.is_symlink() and list(linked.iterdir()) == []
    assert _everything_under(rt.home.raw) == [f"{sha[:12]}-extract.zip", f"{sha[:12]}-extract.zip.sha256"]
    assert (rt.home.raw / f"{sha[:12]}-extract.zip").read_bytes() == data
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(rt.home.root) and p.is_file()
               and p.name != "analysis.db" and p.read_bytes() == data]
    assert outside == []  # no copy of the encrypted file anywhere outside the home
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT file_name, raw_path FROM extracts")).all() == [
            ("extract.zip", str(outcome.kept_at))]
        paths = [Path(p) for p in conn.execute(text("SELECT path FROM stored_files")).scalars()]
    assert paths and all(p.is_relative_to(rt.home.root) and p.is_file() for p in paths)
