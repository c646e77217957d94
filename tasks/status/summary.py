"""The status summary: extracts ingested, survey waves and response rates, next deletions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
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
from tasks.retention.verify import VERIFICATION_EVENT
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


def prefect_events_held(conn: Connection, cluster_id: str, today: date) -> dict[str, Any] | None:
    """Events the last sweep could not delete (external Prefect server) while the server keeps them."""
    found = rows(conn, "audit_events", {"cluster_id": cluster_id, "event": VERIFICATION_EVENT})
    last = json.loads(found[-1]["details"]) if found else {}
    trimmed = last.get("events_trimmed_by")
    if not last.get("events") or not trimmed or date.fromisoformat(trimmed) < today:
        return None
    return {"remaining": last["events"], "trimmed_by": trimmed, "server": last.get("events_server"),
            "as_of": last.get("as_of")}


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
        held = prefect_events_held(conn, runtime.cluster, now.date())
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
            "prefect_events": held,
        },
        "warnings": list(schedule.warnings) + problems + keys_held_elsewhere(rules, inventory, has_secret),
        "stale_outputs": stale,
    }
