"""Audit flow: verify the audit log's keyed hash chain and its anchors (a broken chain ends the run Failed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.core import flow_names
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime
from tasks.core.steps import verify_audit_chain


class AuditChainBroken(UserFacingError):
    """The audit log's hash chain is broken; ``result`` is the ``audit verify`` result."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def audit_line(result: Mapping[str, Any]) -> str:
    """The one line ``audit verify`` tells its result by (counts and the entry number only)."""
    if not result["ok"]:
        return f"audit log broken: {result['reason']}"
    unkeyed = result.get("unkeyed_entries") or 0
    older = f" ({unkeyed} unkeyed, from an earlier version)" if unkeyed else ""
    return f"audit log intact: {result['entries']} entries{older}"


@project_flow(flow_names.AUDIT_VERIFY, run_name=lambda p: "audit verify", summary=audit_line)
def audit_verify_flow() -> dict[str, Any]:
    """Recompute every audit entry's hash and back-link, check the anchors; report the first failure."""
    runtime = current_runtime()
    result = verify_audit_chain(runtime.engine, runtime.home)
    if not result["ok"]:
        raise AuditChainBroken(audit_line(result), result)
    return result
