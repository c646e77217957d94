"""Status flow: extracts ingested, survey waves and response rates, what retention deletes next."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection

from flows.commands import Outcome
from flows.retention import project_runs, running_run_ids
from tasks.db import rows
from tasks.responses import survey_status
from tasks.retention import (
    keys_held_elsewhere,
    last_sweep,
    load_rules,
    plan_schedule,
    sweep_problems,
    take_inventory,
)
from tasks.runtime import Runtime, current_runtime
from tasks.secrets import get_secret


def extract_summary(conn: Connection, cluster_id: str) -> dict[str, Any]:
    """Extracts received, by status, and when the last one arrived."""
    found = rows(conn, "retention_status_extracts", {"cluster_id": cluster_id})
    by_status = {row["status"]: row["extracts"] for row in found}
    last = max(
        (row["last_received_at"] for row in found if row["status"] == "ingested"), default=None
    )
    return {
        "ingested": by_status.get("ingested", 0),
        "by_status": by_status,
        "last_ingested_at": last,
    }


@task(name="summarise-status", cache_policy=NO_CACHE, persist_result=False)
def summarise_status(runtime: Runtime, running: tuple[str, ...]) -> dict[str, Any]:
    """Counts from the database and the retention schedule as of today (no personal data)."""
    rules = load_rules()
    now = datetime.now(UTC)
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, runtime.cluster, rules)
        problems = sweep_problems(
            conn, runtime.settings, runtime.home, rules, inventory, now.date()
        )
        extracts = extract_summary(conn, runtime.cluster)
        survey = survey_status(conn, runtime.settings)
        last = last_sweep(conn, runtime.cluster)
    runs = project_runs(runtime, now, running)
    schedule = plan_schedule(rules, runtime.settings, inventory, runtime.home, runs, now.date())
    return {
        "cluster": runtime.cluster,
        "extracts": extracts,
        "survey": survey,
        "retention": {
            "as_of": now.date().isoformat(),
            "last_sweep": last,
            "due": [e.view() for e in schedule.due],
            "next": [e.view() for e in schedule.next],
            "unscheduled": list(schedule.unscheduled),
        },
        "warnings": list(schedule.warnings)
        + problems
        + keys_held_elsewhere(rules, inventory, lambda name: bool(get_secret(name, runtime.home))),
    }


@flow(name="status", persist_result=False)
def status_flow() -> dict[str, Any]:
    """Report extracts ingested, waves and response rates, and the next retention deletions."""
    return summarise_status(current_runtime(), running_run_ids())


def _summary(result: dict[str, Any]) -> str:
    extracts, survey, retention = result["extracts"], result["survey"], result["retention"]
    lines = [
        f"cluster {result['cluster']}: {extracts['ingested']} extract(s) ingested"
        + (f", last {extracts['last_ingested_at']}" if extracts["last_ingested_at"] else "")
    ]
    for wave in survey["waves"]:
        rate = "-" if wave["response_rate"] is None else f"{100 * wave['response_rate']:.1f}%"
        lines.append(
            f"wave {wave['wave']}: {wave['issued']} issued, {wave['responded']} responded ({rate})"
        )
    if survey["waves"]:
        lines.append(
            f"respondents: {survey['respondents']} of {survey['target_respondents']} targeted"
        )
    for entry in retention["due"]:
        lines.append(f"retention due now: {entry['rule']} (since {entry['due_date']})")
    for entry in retention["next"][:5]:
        lines.append(f"retention next: {entry['rule']} on {entry['due_date']}")
    for item in retention["unscheduled"]:
        lines.append(f"retention not scheduled: {item['rule']} ({item['reason']})")
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def run_status_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval status [--json]``."""
    return status_flow(), 0, _summary
