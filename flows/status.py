"""Status flow: extracts ingested, survey waves and response rates, what retention deletes next."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.core import flow_names
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime
from tasks.retention.steps import running_run_ids
from tasks.status.summary import summarise_status


def _summary(result: Mapping[str, Any]) -> str:
    survey, retention = result["survey"], result["retention"]
    return (f"{result['extracts']['ingested']} extract(s) ingested; {len(survey['waves'])} wave(s), "
            f"respondents {survey['respondents']} of {survey['target_respondents']} targeted; retention: "
            f"{len(retention['due'])} rule(s) due now, {len(retention['next'])} coming next; "
            f"{held_text(retention.get('prefect_events'))}"
            f"{len(result['warnings'])} warning(s), {len(result.get('stale_outputs') or [])} stale output(s)")


def held_text(held: Mapping[str, Any] | None) -> str:
    """The Prefect events an external server still holds after the last sweep ('' when none)."""
    if not held:
        return ""
    return f"Prefect still holds {held['remaining']} event(s) of this cluster until {held['trimmed_by']}; "


@project_flow(flow_names.STATUS, run_name=lambda p: "status", summary=_summary)
def status_flow() -> dict[str, Any]:
    """Report extracts ingested, waves and response rates, and the next retention deletions."""
    return summarise_status(current_runtime(), running_run_ids())
