"""The output folder of ``analyse``: what it holds, when it may be reused, and the swap into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from tasks.core.errors import UserFacingError

GENERATOR = "cluster-eval analyse"
MANIFEST = "manifest.json"
REPORT = "report.html"
REPORT_DOCX = "report.docx"
WORKBOOK = "analysis.xlsx"
RESTRICTED, PUBLICATION, CHARTS = "restricted", "publication", "charts"
#: Everything ``analyse`` writes at the top of its output folder.
OUTPUT_ENTRIES = frozenset({RESTRICTED, PUBLICATION, CHARTS, WORKBOOK, REPORT, REPORT_DOCX,
                            MANIFEST})


def _is_previous_run(out: Path) -> bool:
    """Whether ``out`` holds the manifest of an earlier ``analyse`` run."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def check_output_dir(out: Path) -> str:
    """``new``, ``empty`` or ``replace`` (an earlier analyse run); UserFacingError otherwise."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise UserFacingError(f"--out {out} exists and is not a folder; choose another --out")
    entries = {entry.name for entry in out.iterdir()}
    if not entries:
        return "empty"
    if _is_previous_run(out) and entries <= OUTPUT_ENTRIES:
        return "replace"
    raise UserFacingError(
        f"--out {out} already holds files that cluster-eval analyse did not write; "
        "choose a new folder or empty this one (an earlier analyse output is replaced)"
    )


def swap_into_place(staged: Path, out: Path) -> None:
    """Rename the staged folder to ``out``, replacing an earlier run's folder."""
    check_output_dir(out)  # refuse if someone put files there meanwhile
    if not out.exists():
        os.rename(staged, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

