"""The ``cluster-eval`` command line (contract: shared/spec/cli.md).

Each command validates settings, prepares the state folder and database, then runs the
stage's Prefect flow. Bad input ends in one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from tasks.core.errors import UserFacingError
from tasks.core.runtime import Checkpoint

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


def test_checkpoint(environ: Mapping[str, str]) -> Checkpoint | None:
    """The fault-injection hook of the retention kill test, when its variables are set."""
    trace = environ.get(TRACE_ENV)
    if not trace:
        return None
    pause = float(environ.get(PAUSE_ENV, "0"))

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
    withdraw.add_argument("token")

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


def _run(args: argparse.Namespace) -> int:
    # Imported here so Prefect reads the environment configure_prefect_env() prepared.
    from prefect import tags

    from cli import commands
    from tasks.core.runtime import current_runtime

    handler = commands.HANDLERS[(args.command, getattr(args, "action", None))]
    if args.command != "serve":  # serve makes the stricter check itself (credentials when remote)
        _check_named_server()
    with tags(*current_runtime().run_tags):  # every run of this command carries its cluster
        result, code, summary = handler(args)
    if result is not None:
        _emit(result, getattr(args, "json", False), summary)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cluster-eval`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from tasks.core.settings import load_settings

    try:
        settings = load_settings()
        from tasks.core.home import prepare_home

        prepare_home(settings.home)
        configure_prefect_env(settings.home, args.verbose)
        from tasks.core.runtime import open_runtime, use_runtime

        with use_runtime(open_runtime(settings, checkpoint=test_checkpoint(os.environ))):
            return _run(args)
    except UserFacingError as exc:
        print(f"cluster-eval: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cluster-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
