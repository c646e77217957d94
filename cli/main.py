"""The ``cluster-eval`` command line (contract: shared/spec/cli.md).

Each command validates settings, prepares the state folder and database, then runs the
stage's Prefect flow. Bad input ends in one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.errors import UserFacingError
from tasks.core.runtime import Checkpoint

if TYPE_CHECKING:
    from tasks.core.prefect import LaunchedServer

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def configure_prefect_env(home: Path, verbose: bool = False) -> None:
    """Point Prefect at a private home and quiet its console before Prefect is imported."""
    os.environ.setdefault("PREFECT_HOME", str((home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Results that hold data are never persisted by Prefect (tasks opt in explicitly).
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    # Logs still reach the Prefect API at INFO; the terminal gets our own one-line summary.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "CRITICAL")
    Path(os.environ["PREFECT_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)


# Test hook (kill test): append each retention step's label to this file, then pause, so a
# test can kill -9 the sweep at a chosen point. Unset in production.
TRACE_ENV = "CLUSTER_EVAL_TEST_RETENTION_TRACE"
PAUSE_ENV = "CLUSTER_EVAL_TEST_RETENTION_PAUSE"
# The same hook inside the responses-import transaction (tests/test_responses_kill.py).
RESPONSES_TRACE_ENV = "CLUSTER_EVAL_TEST_RESPONSES_TRACE"
RESPONSES_PAUSE_ENV = "CLUSTER_EVAL_TEST_RESPONSES_PAUSE"


def test_checkpoint(environ: Mapping[str, str]) -> Checkpoint | None:
    """The fault-injection hook of the retention or responses kill test, when its variables are set."""
    hooks = ((TRACE_ENV, PAUSE_ENV), (RESPONSES_TRACE_ENV, RESPONSES_PAUSE_ENV))
    trace, pause = next(((environ[t], float(environ.get(p, "0"))) for t, p in hooks if environ.get(t)), ("", 0.0))
    if not trace:
        return None

    def checkpoint(label: str) -> None:
        with Path(trace).open("a", encoding="utf-8") as out:
            out.write(label + "\n")
        time.sleep(pause)

    return checkpoint


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _qualitative_parsers(sub: Any) -> None:
    """The qualitative strand's commands (shared/spec/qualitative-v1.md)."""
    participants = sub.add_parser("participants", help="the qualitative participants register")
    p_sub = participants.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_import = p_sub.add_parser("import", help="import (replace) the encrypted participants register")
    p_import.add_argument("file", type=Path)
    p_import.add_argument("--json", action="store_true")
    p_withdraw = p_sub.add_parser("withdraw", help="a participant withdraws: remove their data now")
    p_withdraw.add_argument("participant_id")
    p_withdraw.add_argument("--json", action="store_true")

    transcripts = sub.add_parser("transcripts", help="interview and focus-group transcripts")
    t_sub = transcripts.add_subparsers(dest="action", required=True, metavar="ACTION")
    t_import = t_sub.add_parser("import", help="import an encrypted archive of transcripts")
    t_import.add_argument("file", type=Path)
    t_import.add_argument("--json", action="store_true")
    for action, text in (("redact", "de-identify a session again (after deny-list changes)"),
                         ("approve", "approve a session's de-identified transcript")):
        t_action = t_sub.add_parser(action, help=text)
        t_action.add_argument("session")
        t_action.add_argument("--json", action="store_true")

    coding = sub.add_parser("coding", help="the coding round trip with the researchers' QDA tool")
    c_sub = coding.add_subparsers(dest="action", required=True, metavar="ACTION")
    c_export = c_sub.add_parser("export", help="write a REFI-QDA project (.qdpx) or an Excel coding sheet")
    c_export.add_argument("--out", type=Path, required=True)
    c_export.add_argument("--json", action="store_true")
    c_import = c_sub.add_parser("import", help="import a coded REFI-QDA project (.qdpx) or coding CSV")
    c_import.add_argument("file", type=Path)
    c_import.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="cluster-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run every stage on a synthetic encrypted extract")
    demo.add_argument("--out", type=Path, default=None, help="report folder (default HOME/outputs/demo)")
    demo.add_argument("--families", type=_positive, default=400, help="synthetic families")

    ingest = sub.add_parser("ingest", help="ingest one encrypted extract")
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--json", action="store_true")

    sample = sub.add_parser("sample", help="draw survey wave N")
    sample.add_argument("--wave", type=_positive, required=True)
    sample.add_argument("--size", type=_positive, default=None)
    sample.add_argument("--json", action="store_true")

    invite = sub.add_parser("invite", help="send wave N's invitations (e-mail + fieldwork pack)")
    invite.add_argument("--wave", type=_positive, required=True)
    invite.add_argument("--json", action="store_true")

    remind = sub.add_parser("remind", help="send every reminder that is due")
    remind.add_argument("--as-of", type=_iso_date, default=None)
    remind.add_argument("--json", action="store_true")

    responses = sub.add_parser("responses", help="survey responses")
    responses_sub = responses.add_subparsers(dest="action", required=True, metavar="ACTION")
    rimport = responses_sub.add_parser("import", help="import a survey response export")
    rimport.add_argument("file", type=Path)
    rimport.add_argument("--json", action="store_true")

    interviews = sub.add_parser("interviews", help="draw the family interview sub-sample")
    interviews.add_argument("--json", action="store_true")

    withdraw = sub.add_parser("withdraw", help="a household withdraws: delete its data now")
    withdraw.add_argument("token", nargs="?", default=None,
                          help="the household's survey token (or give it with --token)")
    withdraw.add_argument("--token", dest="token_option", metavar="TOKEN", default=None,
                          help="the token as an option; --token=TOKEN also takes a token starting with '-'")

    analyse = sub.add_parser("analyse", help="write tables, charts, workbook and report")
    analyse.add_argument("--out", type=Path, required=True)

    retention = sub.add_parser("retention", help="apply the retention schedule")
    retention.add_argument("--as-of", type=_iso_date, default=None)
    retention.add_argument("--dry-run", action="store_true")
    retention.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit_sub.add_parser("verify", help="check the hash chain")

    _qualitative_parsers(sub)

    serve = sub.add_parser("serve", help="serve every deployment to PREFECT_API_URL")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="serve to a server on another machine without PREFECT_API_AUTH_STRING")

    status = sub.add_parser("status", help="extracts, waves, response rates, next deletions")
    status.add_argument("--json", action="store_true")
    return parser


def _emit(result: dict[str, Any], as_json: bool, summary: Callable[[dict[str, Any]], str]) -> None:
    if as_json:
        print(json.dumps(result, indent=None, sort_keys=False, default=str))
    else:
        print(summary(result))


def _check_named_server() -> None:
    """A server named by PREFECT_API_URL must answer: one line naming it, not Prefect's traceback."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from deployments.serve import check_server, server_access

        check_server(server_access(), allow_unauthenticated=True)


def _launch_server(args: argparse.Namespace) -> LaunchedServer | None:
    """Start the ephemeral server's process first, so it boots while the command imports and opens the store."""
    if args.command == "serve":  # serve needs a named server
        return None
    from tasks.core.prefect import launch_ephemeral_server

    return launch_ephemeral_server()


def _run(args: argparse.Namespace, launched: LaunchedServer | None = None) -> int:
    # Imported here so Prefect reads the environment configure_prefect_env() prepared.
    from prefect import tags

    from cli import commands
    from tasks.core.runtime import current_runtime

    handler = commands.HANDLERS[(args.command, getattr(args, "action", None))]
    if args.command != "serve":  # serve makes the stricter check itself (credentials when remote)
        _check_named_server()
        from tasks.core.prefect import start_ephemeral_server

        start_ephemeral_server(launched)  # no server named: Prefect's own, tied to this process so that it dies with us
    with tags(*current_runtime().run_tags):  # every run of this command carries its cluster
        result, code, summary = handler(args)
    if result is not None:
        _emit(result, getattr(args, "json", False), summary)
    return code


LOG_NAME = "cluster-eval.log"
LOG_MAX_BYTES = 1_000_000  # past this the log moves to cluster-eval.log.1 (one old file kept)


def _failure_record(exc: BaseException, command: str) -> str:
    """Type and frames of ``exc`` and its causes, never their messages (they may quote values)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    parts = [f"{stamp} pid {os.getpid()} command {command}: {type(exc).__module__}.{type(exc).__qualname__}\n"]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current is not exc:
            parts.append(f"caused by {type(current).__module__}.{type(current).__qualname__}\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(current.__traceback__))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "".join(parts) + "\n"


def _log_failure(home: Path | None, exc: BaseException, command: str) -> Path | None:
    """Append the detail of a failure to HOME/logs/cluster-eval.log (dir 0700, file 0600); None if impossible."""
    if home is None:
        return None
    from tasks.core.home import DIR_MODE, FILE_MODE

    folder = home / "logs"
    path = folder / LOG_NAME
    try:
        folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(folder, DIR_MODE)
        try:
            if path.lstat().st_size > LOG_MAX_BYTES:
                os.replace(path, folder / f"{LOG_NAME}.1")
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, _failure_record(exc, command).encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


def _stdout_gone() -> None:
    """Point stdout at /dev/null so the exit-time flush cannot raise again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _stdout_broken() -> bool:
    """True when stdout is closed or is a pipe nobody reads any more (POLLERR on Linux)."""
    if sys.stdout is None:
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # no poll() or no file descriptor: believe the BrokenPipeError


def _fail(home: Path | None, exc: BaseException, command: str, what: str) -> int:
    where = _log_failure(home, exc, command)
    detail = f"; details in {where}" if where else ""
    try:
        print(f"cluster-eval: error: {what}{detail}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cluster-eval`` console script.

    Every failure ends in one line on stderr and exit 1 (KeyboardInterrupt: 130). For a failure that is
    not a UserFacingError, once the state folder exists, its type and traceback frames are appended to
    HOME/logs/cluster-eval.log and the line says so.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(str(part) for part in (args.command, getattr(args, "action", None)) if part)
    if sys.stdout is None:  # started with stdout closed: its descriptor may be reused by a file we open
        print("cluster-eval: error: standard output is closed; nothing done", file=sys.stderr)
        return 1
    home: Path | None = None
    try:
        from tasks.core.settings import load_settings

        settings = load_settings()
        from tasks.core.home import prepare_home

        home = prepare_home(settings.home).root
        configure_prefect_env(settings.home, args.verbose)
        launched = _launch_server(args)
        try:
            from tasks.core.runtime import open_runtime, use_runtime

            with use_runtime(open_runtime(settings, checkpoint=test_checkpoint(os.environ))):
                code = _run(args, launched)
        finally:
            if launched is not None:  # refused before its flow: the server it launched goes now
                from tasks.core.prefect import discard_unadopted

                discard_unadopted(launched)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit-time flush
        return code
    except UserFacingError as exc:  # the line is the whole story: no log entry (and no new file under the home)
        print(f"cluster-eval: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cluster-eval: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if not _stdout_broken():  # e.g. a socket: not the reader of our output going away
            return _fail(home, exc, command, f"unexpected {type(exc).__name__}")
        _stdout_gone()
        return _fail(home, exc, command, "standard output was closed before all output was written")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the detail in the log
        return _fail(home, exc, command, f"unexpected {type(exc).__name__}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
