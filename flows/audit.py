"""Audit flow: verify the hash chain of the audit log."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.core import flow_names
from tasks.core.audit import verify_audit
from tasks.core.runtime import current_runtime


@flow(name=flow_names.AUDIT_VERIFY, persist_result=False)
def audit_verify_flow() -> dict[str, Any]:
    """Recompute every audit entry's hash and back-link; report the first broken one."""
    with current_runtime().engine.connect() as conn:
        check = verify_audit(conn)
    return {"ok": check.ok, "entries": check.entries,
            "first_broken_seq": check.first_broken_seq, "reason": check.reason}


