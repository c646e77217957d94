"""Thin Prefect tasks over the coding round trip (the names the Prefect UI shows; counts only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.coding.refi_export import export_coding
from tasks.coding.refi_import import import_coding
from tasks.core.prefect import artifact_key, stage_task
from tasks.core.runtime import Runtime

EXPORT_COUNTS = ("sessions", "turns", "codes", "cases")
IMPORT_COUNTS = ("selections", "segments", "codes_added", "sessions", "segments_dropped_withdrawn")


@stage_task("export-coding")
def export_coding_task(rt: Runtime, out: Path, flow_run_id: str | None) -> dict[str, Any]:
    """Write the REFI-QDA project or coding sheet of the approved sessions and record the export."""
    return export_coding(rt, out, flow_run_id)


@stage_task("import-coding")
def import_coding_task(rt: Runtime, path: Path, flow_run_id: str | None) -> dict[str, Any]:
    """Check a coded project or coding CSV and replace the coded segments with it."""
    return import_coding(rt, path, flow_run_id)


@stage_task("publish-coding-counts")
def publish_coding_counts_task(cluster: str, name: str, result: dict[str, Any]) -> None:
    """Table artifact of an export or import: counts only (no text, no names)."""
    counts = EXPORT_COUNTS if name == "export" else IMPORT_COUNTS
    create_table_artifact(
        key=artifact_key(cluster, f"coding-{name}"),
        table=[{"count": label.replace("_", " "), "value": int(result[label])} for label in counts],
        description=f"Coding {name} ({result.get('format') or result.get('kind') or 'none'}): "
                    f"{result['status']}; exact counts for running the fieldwork; counts only, "
                    "no personal data",
    )
