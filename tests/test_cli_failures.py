"""Any failure of the command line: one line on stderr, exit 1, the detail in HOME/logs/cluster-eval.log (0600)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main as cli_main

LOG = Path("logs") / "cluster-eval.log"


def _run(tmp_path: Path, *args: str, stdout: int | None = subprocess.PIPE,
         **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_EVAL_")}
    return subprocess.run([sys.executable, "-m", "cli", *args],  # noqa: S603
                          env={**clean, "CLUSTER_EVAL_HOME": str(tmp_path / "var"), **env},
                          cwd=tmp_path, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False)


def _assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1
    assert done.stderr == expected + "\n"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def _private_log(tmp_path: Path) -> str:
    log = tmp_path / "var" / LOG
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    return log.read_text()


@pytest.mark.e2e
def test_missing_table_is_one_line_and_the_frames_go_to_the_log(tmp_path: Path) -> None:
    assert _run(tmp_path, "status").returncode == 0
    assert not (tmp_path / "var" / LOG).exists()
    with sqlite3.connect(tmp_path / "var" / "cluster-eval.db") as conn:
        conn.execute("DROP TABLE waves")
    done = _run(tmp_path, "status")
    log_path = (tmp_path / "var" / LOG).resolve()
    _assert_one_line(done, f"cluster-eval: error: unexpected OperationalError; details in {log_path}")
    assert done.stdout == ""
    log = _private_log(tmp_path)
    assert "command status: sqlalchemy.exc.OperationalError" in log
    assert "caused by sqlite3.OperationalError" in log
    assert log.count("Traceback (most recent call last):") == 2 and 'in survey_status' in log
    # exception messages may quote SQL parameters (here the cluster id): only types and frames are written
    assert "no such table" not in log and "'pilot'" not in log and "[parameters:" not in log


@pytest.mark.e2e
def test_reader_gone_is_one_line_without_exit_time_noise(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first byte (like `| head -c 1`, without the race)
    try:
        done = _run(tmp_path, "status", "--json", stdout=write_end)
    finally:
        os.close(write_end)
    log_path = (tmp_path / "var" / LOG).resolve()
    _assert_one_line(done, "cluster-eval: error: standard output was closed before all output was written; "
                           f"details in {log_path}")
    log = _private_log(tmp_path)
    assert log.count("command status: builtins.BrokenPipeError") == 1 and "in _emit" in log


@pytest.mark.e2e
def test_closed_stdout_does_nothing(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_EVAL_")}
    done = subprocess.run(["sh", "-c", 'exec "$0" -m cli status >&-', sys.executable],  # noqa: S603,S607
                          env={**clean, "CLUSTER_EVAL_HOME": str(tmp_path / "var")},
                          cwd=tmp_path, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    _assert_one_line(done, "cluster-eval: error: standard output is closed; nothing done")
    assert not (tmp_path / "var").exists()  # refused before the state folder (or anything) was opened


@pytest.mark.e2e
def test_unreachable_database_keeps_its_line_and_writes_no_log(tmp_path: Path) -> None:
    done = _run(tmp_path, "status", CLUSTER_EVAL_DATABASE_URL="postgresql+psycopg://u:hunter2@127.0.0.1:9/none")
    line = "cluster-eval: error: database postgresql+psycopg://u:***@127.0.0.1:9/none is unreachable"
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and done.stderr.startswith(line)
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr and "details in" not in done.stderr
    # a one-line (UserFacingError) failure is told whole: no file appears under the home (retention counts them)
    assert (tmp_path / "var").is_dir() and not (tmp_path / "var" / "logs").exists()


# --- the helpers in process (no Prefect, no subprocess) ---


def test_record_writes_types_and_frames_but_no_message_of_other_errors() -> None:
    email, household = f"{os.urandom(6).hex()}@example.org", os.urandom(6).hex()  # in no source line
    try:
        try:
            raise KeyError(email)
        except KeyError as inner:
            raise ValueError(f"household {household} of {email}") from inner
    except ValueError as exc:
        record = cli_main._failure_record(exc, "ingest")
    assert "command ingest: builtins.ValueError\n" in record
    assert "caused by builtins.KeyError\n" in record
    assert record.count("Traceback (most recent call last):") == 2
    assert email not in record and household not in record


def test_log_is_appended_0600_and_rotated_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "LOG_MAX_BYTES", 400)
    error = RuntimeError("x")
    first = cli_main._log_failure(tmp_path, error, "status")
    assert first == tmp_path / LOG
    os.chmod(first, 0o644)
    assert cli_main._log_failure(tmp_path, error, "status") == first
    assert stat.S_IMODE(first.stat().st_mode) == 0o600  # an existing log is put back to 0600
    assert first.read_text().count("command status: builtins.RuntimeError") == 2
    first.write_bytes(b"y" * 401)
    cli_main._log_failure(tmp_path, error, "status")
    assert (tmp_path / "logs" / "cluster-eval.log.1").read_bytes() == b"y" * 401
    assert first.read_text().count("builtins.RuntimeError") == 1


def test_log_is_not_written_through_a_symlink_or_without_a_home(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("")
    (tmp_path / LOG).symlink_to(elsewhere)
    assert cli_main._log_failure(tmp_path, RuntimeError(), "status") is None
    assert elsewhere.read_text() == ""
    assert cli_main._log_failure(None, RuntimeError(), "status") is None


def test_fail_says_where_the_detail_is_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main._fail(tmp_path, TypeError("secret"), "status", "unexpected TypeError") == 1
    assert cli_main._fail(None, TypeError("secret"), "status", "unexpected TypeError") == 1
    err = capsys.readouterr().err
    assert err == (f"cluster-eval: error: unexpected TypeError; details in {tmp_path / LOG}\n"
                   "cluster-eval: error: unexpected TypeError\n")


def test_broken_pipe_of_a_socket_is_not_taken_for_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "out.txt", "w") as regular:
        monkeypatch.setattr(sys, "stdout", regular)
        assert cli_main._stdout_broken() is False
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert cli_main._stdout_broken() is True
