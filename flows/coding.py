"""Coding round-trip flows: export a coding project, import the coded project (qualitative-v1.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.coding.steps import export_coding_task, import_coding_task, publish_coding_counts_task
from tasks.core import flow_names
from tasks.core.runtime import current_runtime


@flow(name=flow_names.CODING_EXPORT, persist_result=False)
def coding_export_flow(out: Path) -> dict[str, Any]:
    """Export the approved, de-identified transcripts for coding.

    Args:
        out: where to write: ``.qdpx`` for a REFI-QDA project (NVivo, ATLAS.ti, MAXQDA, QualCoder,
            Taguette), ``.csv`` or ``.xlsx`` for an Excel coding sheet.
    """
    rt = current_runtime()
    result = export_coding_task(rt, Path(out), flow_run.get_id())
    publish_coding_counts_task(rt.cluster, "export", result)
    return result


@flow(name=flow_names.CODING_IMPORT, persist_result=False)
def coding_import_flow(path: Path) -> dict[str, Any]:
    """Import the researchers' coding; it replaces every coded segment stored before.

    Args:
        path: the coded REFI-QDA project (``.qdpx``) or a coding ``.csv``/``.xlsx`` (session_id,
            line_start, line_end, theme, subtheme); importing the same file again changes nothing.
    """
    rt = current_runtime()
    result = import_coding_task(rt, Path(path), flow_run.get_id())
    publish_coding_counts_task(rt.cluster, "import", result)
    return result
