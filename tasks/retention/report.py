"""What a sweep reports: the command's JSON result and the artifact's table (counts, no ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks.retention.plan import Schedule
from tasks.retention.sweep import Deleted
from tasks.retention.verify import Verification


def sweep_report(
    schedule: Schedule,
    dry_run: bool,
    deleted: Sequence[Deleted] = (),
    verification: Verification | None = None,
    compaction: dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The command's JSON result: due, next, deleted, verification."""
    return {
        "as_of": schedule.as_of.isoformat(),
        "dry_run": dry_run,
        "due": [e.view() for e in schedule.due],
        "next": [e.view() for e in schedule.next],
        "unscheduled": list(schedule.unscheduled),
        "deleted": [d.view() for d in deleted],
        "verification": verification.view() if verification else None,
        "compaction": compaction,
        "warnings": list(schedule.warnings) + list(warnings),
    }


def deletion_table(deleted: Sequence[Deleted]) -> list[dict[str, Any]]:
    """Rows of the artifact a sweep publishes: counts per deleted item, no ids."""
    return [
        {
            "category": d.unit.category,
            "rule": d.unit.rule,
            "item": d.unit.target,
            "rows": d.counts["rows"],
            "nulled": sum(d.counts.get("nulled", {}).values()),
            "files": d.counts["files"],
            "keys": d.counts["keys"],
            "flow_runs": d.counts["flow_runs"],
            "artifacts": d.counts["artifacts"],
        }
        for d in deleted
    ]
