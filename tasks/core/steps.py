"""Thin Prefect tasks over the core modules (the names the Prefect UI shows)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from tasks.core.audit import check_audit_log
from tasks.core.home import Home
from tasks.core.prefect import stage_task


@stage_task("verify-audit-chain")
def verify_audit_chain(engine: Engine, home: Home) -> dict[str, Any]:
    """Recompute every audit entry's hash and back-link, then check the anchors: the ``audit verify`` result."""
    return check_audit_log(engine, home, prefect=True).as_json()
