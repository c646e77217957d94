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


# --- every command of the parser: an unreachable database, a closed stdout, a missing table ---

# Each command of ``build_parser`` with arguments that parse (files exist but hold nothing useful),
# and a table it reads: dropped, the command must end in one line and exit 1 (at that table or earlier).
COMMANDS: dict[str, tuple[list[str], str | None]] = {
    "demo": (["demo", "--out", "{out}", "--families", "20"], "extracts"),
    "ingest": (["ingest", "{file}", "--json"], "extracts"),
    "sample": (["sample", "--wave", "1", "--json"], "waves"),
    "invite": (["invite", "--wave", "1", "--json"], "waves"),
    "remind": (["remind", "--json"], "contact_attempts"),
    "responses import": (["responses", "import", "{file}", "--json"], "waves"),
    "interviews": (["interviews", "--json"], "interview_draws"),
    "withdraw": (["withdraw", "--token", "ABCD1234"], "households"),
    "analyse": (["analyse", "--out", "{out}"], "families"),
    "retention": (["retention", "--json"], "retention_deletions"),
    "audit verify": (["audit", "verify"], "audit_log"),
    "participants import": (["participants", "import", "{file}", "--json"], "qual_deliveries"),
    "participants withdraw": (["participants", "withdraw", "P001", "--json"], "qual_participants"),
    "transcripts import": (["transcripts", "import", "{file}", "--json"], "qual_deliveries"),
    "transcripts redact": (["transcripts", "redact", "S01", "--json"], "qual_sessions"),
    "transcripts approve": (["transcripts", "approve", "S01", "--json"], "qual_sessions"),
    "coding export": (["coding", "export", "--out", "{out}/coding.qdpx", "--json"], "qual_codes"),
    "coding import": (["coding", "import", "{file}", "--json"], "qual_codes"),
    # serve reads no table of the study before it serves (its runs do): no missing-table case.
    "serve": (["serve"], None),
    "status": (["status", "--json"], "waves"),
}
UNREACHABLE = "postgresql+psycopg://u:hunter2@127.0.0.1:9/none"


def _parser_commands() -> set[str]:
    """Every command of the real parser, as "command" or "command action"."""
    import argparse

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:  # argparse keeps sub-commands only here
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    found = set()
    for name, sub in subcommands(cli_main.build_parser()).items():
        actions = subcommands(sub)
        found |= {f"{name} {action}" for action in actions} if actions else {name}
    return found


def test_the_list_is_every_command_of_the_parser() -> None:
    assert set(COMMANDS) == _parser_commands()


def _argv(command: str, tmp_path: Path) -> list[str]:
    delivery = tmp_path / "delivery.zip"
    if not delivery.exists():
        delivery.write_bytes(b"PK\x03\x04 not really an archive")
    return [a.format(file=delivery, out=tmp_path / "out") for a in COMMANDS[command][0]]


def _one_line_each(runs: dict[str, subprocess.CompletedProcess[str]], line: str) -> dict[str, str]:
    """The commands whose run was not exactly ``line`` on stderr with exit 1 (and what they did)."""
    return {name: f"exit {done.returncode}: {done.stderr[-600:]}" for name, done in runs.items()
            if done.returncode != 1 or done.stderr.count("\n") != 1 or not done.stderr.startswith(line)
            or "Traceback" in done.stderr}


def _run_all(tmp_path: Path, wrap: str | None = None, **env: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run every command at once (4 at a time), each with its own home under ``tmp_path``."""
    from concurrent.futures import ThreadPoolExecutor

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_EVAL_", "PREFECT_API"))}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / command.replace(" ", "-")
        folder.mkdir()
        argv = [sys.executable, "-m", "cli", *_argv(command, folder)]
        if wrap:
            argv = ["sh", "-c", wrap, *argv]
        return subprocess.run(argv, env={**clean, "CLUSTER_EVAL_HOME": str(folder / "var"), **env},  # noqa: S603
                              cwd=folder, stdout=subprocess.DEVNULL if wrap else subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(COMMANDS, pool.map(run, COMMANDS), strict=True))


@pytest.mark.e2e
def test_every_command_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    runs = _run_all(tmp_path, CLUSTER_EVAL_DATABASE_URL=UNREACHABLE)
    line = "cluster-eval: error: database postgresql+psycopg://u:***@127.0.0.1:9/none is unreachable"
    assert _one_line_each(runs, line) == {}
    assert all("hunter2" not in done.stderr for done in runs.values())
    assert [name for name in runs if (tmp_path / name.replace(" ", "-") / "var" / "logs").exists()] == []


@pytest.mark.e2e
def test_every_command_with_stdout_closed_does_nothing(tmp_path: Path) -> None:
    runs = _run_all(tmp_path, wrap='exec "$0" "$@" >&-')
    assert _one_line_each(runs, "cluster-eval: error: standard output is closed; nothing done") == {}
    assert [name for name in runs if (tmp_path / name.replace(" ", "-") / "var").exists()] == []


@pytest.mark.parametrize("command", [name for name, (_, table) in COMMANDS.items() if table])
def test_every_command_with_a_missing_table_is_one_line(
        command: str, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_settings

    from tasks.core.runtime import open_runtime
    from tasks.core.secrets import CONTACT_KEY

    home, database = tmp_path / "var", tmp_path / "analysis.db"
    rt = open_runtime(make_settings(home, f"sqlite:///{database}"))  # a migrated database
    rt.secrets.key_or_create(CONTACT_KEY)  # as after an ingest: commands that need it go on to the tables
    rt.engine.dispose()
    with sqlite3.connect(database) as conn:
        conn.execute(f"DROP TABLE {COMMANDS[command][1]}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", "missing-table-passphrase")
    capsys.readouterr()

    code = cli_main.main(_argv(command, tmp_path))
    err = capsys.readouterr().err

    lines = [line for line in err.splitlines() if line.startswith("cluster-eval: error:")]
    assert code == 1, err[-2000:]
    assert len(lines) == 1 and err.rstrip("\n").splitlines()[-1] == lines[0], err[-2000:]
    assert "Traceback" not in err
