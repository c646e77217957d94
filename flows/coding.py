"""Coding round-trip flows: export a coding project, import the coded project (qualitative-v1.md §4).

A coding imported last time ends Completed with a line saying there was nothing to do (its
counts artifact is left as the last import published it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from tasks.coding.steps import export_coding_task, import_coding_task, publish_coding_counts_task
from tasks.core import flow_names
from tasks.core.flowrun import NothingToDo, project_flow
from tasks.core.runtime import current_runtime


def _export_summary(result: Mapping[str, Any]) -> str:
    return (f"coding export ({result['format']}): {result['sessions']} approved session(s), {result['turns']} "
            f"turns, {result['codes']} codes, {result['cases']} cases")


def _import_summary(result: Mapping[str, Any]) -> str:
    return (f"coding import ({result['kind']}): {result['selections']} coded selection(s) in {result['sessions']} "
            f"session(s), {result['segments']} segments stored, {result['segments_dropped_withdrawn']} in "
            f"withdrawn participants' turns left out, {result['codes_added']} code(s) added while coding")


@project_flow(flow_names.CODING_EXPORT, run_name=lambda p: "coding export", summary=_export_summary)
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


@project_flow(flow_names.CODING_IMPORT, run_name=lambda p: "coding import", summary=_import_summary)
def coding_import_flow(path: Path) -> dict[str, Any]:
    """Import the researchers' coding; it replaces every coded segment stored before.

    Args:
        path: the coded REFI-QDA project (``.qdpx``) or a coding ``.csv``/``.xlsx`` (session_id,
            line_start, line_end, theme, subtheme); importing the same file again changes nothing.
    """
    rt = current_runtime()
    result = import_coding_task(rt, Path(path), flow_run.get_id())
    if result["status"] == "duplicate":
        raise NothingToDo(f"this coding is the one imported last (sha256 {result['sha256'][:12]}…); "
                          "nothing to do", result)
    publish_coding_counts_task(rt.cluster, "import", result)
    return result
