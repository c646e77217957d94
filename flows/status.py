"""Status flow: extracts ingested, survey waves and response rates, what retention deletes next."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.retention.steps import running_run_ids
from tasks.status.summary import summarise_status


@flow(name=flow_names.STATUS, persist_result=False)
def status_flow() -> dict[str, Any]:
    """Report extracts ingested, waves and response rates, and the next retention deletions."""
    return summarise_status(current_runtime(), running_run_ids())
