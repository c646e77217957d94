"""Audit flow: verify the hash chain of the audit log."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow

from flows.commands import Outcome
from tasks.audit import verify_audit
from tasks.runtime import current_runtime


@flow(name="audit-verify", persist_result=False)
def audit_verify_flow() -> dict[str, Any]:
    """Recompute every audit entry's hash and back-link; report the first broken one."""
    with current_runtime().engine.connect() as conn:
        check = verify_audit(conn)
    return {"ok": check.ok, "entries": check.entries,
            "first_broken_seq": check.first_broken_seq, "reason": check.reason}


def _summary(result: dict[str, Any]) -> str:
    if result["ok"]:
        return f"audit log intact: {result['entries']} entries"
    return f"audit log broken at entry {result['first_broken_seq']}: {result['reason']}"


def run_audit_verify_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval audit verify``: exit 1 when the chain is broken."""
    result = audit_verify_flow()
    if not result["ok"]:
        import sys

        print(f"cluster-eval: error: {_summary(result)}", file=sys.stderr)
        return None, 1, _summary
    return result, 0, _summary
