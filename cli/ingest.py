"""``cluster-eval ingest FILE [--json]``: run the ingest flow, report keys it created."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.commands import Outcome
from flows.ingest import ingest_flow
from tasks.core.runtime import current_runtime
from tasks.core.secrets import CONTACT_KEY, PSEUDONYM_KEY
from tasks.ingest.steps import ExtractRejected, summary_line


def _summary(result: dict[str, Any]) -> str:
    return summary_line(result)


def run_ingest_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval ingest FILE [--json]``: exit 1 when the extract is rejected."""
    home, secrets = current_runtime().home, current_runtime().secrets
    missing = [name for name in (PSEUDONYM_KEY, CONTACT_KEY) if not secrets.exists(name)]
    try:
        result = ingest_flow(str(args.file))
    except ExtractRejected as rejected:  # the run ended Failed with this line
        result = rejected.result
    for name in missing:
        if secrets.exists(name):
            print(f"cluster-eval: created a new {name.replace('_', ' ')} at {home.keys / name} "
                  "(mode 0600); keep a secure backup of it", file=sys.stderr)
    if result["status"] == "rejected":
        print(f"cluster-eval: error: {result['error']}", file=sys.stderr)
        return result, 1, _summary
    return result, 0, _summary
