"""``cluster-eval ingest FILE [--json]``: run the ingest flow, report keys it created."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.commands import Outcome
from flows.ingest import ingest_flow
from tasks.core.runtime import current_runtime
from tasks.core.secrets import CONTACT_KEY, PSEUDONYM_KEY


def _summary(result: dict[str, Any]) -> str:
    status, sha = result["status"], (result["sha256"] or "")[:12]
    if status == "rejected":
        return f"extract {sha or 'file'} rejected and moved to quarantine: {result['error']}"
    if status == "duplicate":
        return f"extract {sha} was already ingested; nothing to do"
    tables = "; ".join(f"{t} {c['loaded']} loaded, {c['quarantined']} quarantined"
                       for t, c in result["tables"].items())
    population = result["population"]
    return (f"extract {sha} ingested: {tables}. Study population: {population['families']} "
            f"families, {population['episodes']} episodes. Data-quality report: "
            f"outputs/data-quality/{sha}.csv")


def run_ingest_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval ingest FILE [--json]``: exit 1 when the extract is rejected."""
    home, secrets = current_runtime().home, current_runtime().secrets
    missing = [name for name in (PSEUDONYM_KEY, CONTACT_KEY) if not secrets.exists(name)]
    result = ingest_flow(str(args.file))
    for name in missing:
        if secrets.exists(name):
            print(f"cluster-eval: created a new {name.replace('_', ' ')} at {home.keys / name} "
                  "(mode 0600); keep a secure backup of it", file=sys.stderr)
    if result["status"] == "rejected":
        print(f"cluster-eval: error: {result['error']}", file=sys.stderr)
        return result, 1, _summary
    return result, 0, _summary
