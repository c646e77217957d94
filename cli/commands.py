"""Command handlers: each runs one stage flow and returns (result, exit code, summary).

A handler takes the parsed arguments and returns the JSON-able result (or None), the exit
status and a function that renders the result as one human-readable summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module
from typing import Any

Summary = Callable[[dict[str, Any]], str]
Outcome = tuple[dict[str, Any] | None, int, Summary]
Handler = Callable[[argparse.Namespace], Outcome]


def _lazy(module: str, name: str) -> Handler:
    def handler(args: argparse.Namespace) -> Outcome:
        return getattr(import_module(module), name)(args)

    return handler


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("demo", None): _lazy("cli.demo", "run_demo_command"),
    ("ingest", None): _lazy("cli.ingest", "run_ingest_command"),
    ("sample", None): _lazy("cli.survey", "run_sample_command"),
    ("invite", None): _lazy("cli.survey", "run_invite_command"),
    ("remind", None): _lazy("cli.survey", "run_remind_command"),
    ("interviews", None): _lazy("cli.survey", "run_interviews_command"),
    ("responses", "import"): _lazy("cli.survey", "run_import_command"),
    ("withdraw", None): _lazy("cli.survey", "run_withdraw_command"),
    ("analyse", None): _lazy("cli.analysis", "run_analyse_command"),
    ("retention", None): _lazy("cli.retention", "run_retention_command"),
    ("audit", "verify"): _lazy("cli.retention", "run_audit_verify_command"),
    ("serve", None): _lazy("cli.serve", "run_serve_command"),
    ("status", None): _lazy("cli.retention", "run_status_command"),
    ("participants", "import"): _lazy("cli.participants", "run_participants_import_command"),
    ("participants", "withdraw"): _lazy("cli.participants", "run_participants_withdraw_command"),
    ("transcripts", "import"): _lazy("cli.transcripts", "run_transcripts_import_command"),
    ("transcripts", "redact"): _lazy("cli.transcripts", "run_transcripts_redact_command"),
    ("transcripts", "approve"): _lazy("cli.transcripts", "run_transcripts_approve_command"),
    ("coding", "export"): _lazy("cli.coding", "run_coding_export_command"),
    ("coding", "import"): _lazy("cli.coding", "run_coding_import_command"),
}
