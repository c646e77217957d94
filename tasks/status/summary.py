"""The status summary: extracts ingested, survey waves and response rates, next deletions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from tasks.core.db import rows
from tasks.core.prefect import stage_task
from tasks.core.runtime import Runtime
from tasks.retention.inventory import take_inventory
from tasks.retention.plan import keys_held_elsewhere, plan_schedule
from tasks.retention.rules import load_rules
from tasks.retention.steps import project_runs
from tasks.retention.sweep import last_sweep, sweep_problems
from tasks.survey.responses import survey_status


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


def stale_outputs(conn: Connection, cluster_id: str) -> list[str]:
    """Outputs (analysis folders, coding exports) registered before the latest participant withdrawal."""
    return [row["path"] for row in rows(conn, "qual_stale_outputs", {"cluster_id": cluster_id})]


@stage_task("summarise-status")
def summarise_status(runtime: Runtime, running: tuple[str, ...]) -> dict[str, Any]:
    """Counts from the database and the retention schedule as of today (no personal data)."""
    rules = load_rules()
    now = datetime.now(UTC)
    has_secret = runtime.secrets.exists
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, runtime.cluster, rules)
        problems = sweep_problems(
            conn, runtime.settings, runtime.home, rules, inventory, now.date(), has_secret
        )
        extracts = extract_summary(conn, runtime.cluster)
        survey = survey_status(conn, runtime.settings)
        last = last_sweep(conn, runtime.cluster)
        stale = stale_outputs(conn, runtime.cluster)
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
        "warnings": list(schedule.warnings) + problems + keys_held_elsewhere(rules, inventory, has_secret),
        "stale_outputs": stale,
    }
