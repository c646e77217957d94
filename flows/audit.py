"""Audit flow: verify the hash chain of the audit log."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.core.steps import verify_audit_chain


@flow(name=flow_names.AUDIT_VERIFY, persist_result=False)
def audit_verify_flow() -> dict[str, Any]:
    """Recompute every audit entry's hash and back-link; report the first broken one."""
    return verify_audit_chain(current_runtime().engine)
