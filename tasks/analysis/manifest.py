"""Provenance of an analysis: who, when and with what it was made (report header and manifest.json)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl

from tasks.analysis.folder import GENERATOR, MANIFEST, PUBLICATION, RESTRICTED
from tasks.analysis.framework import NO_SEGMENTS, Framework, QualitativeReport
from tasks.analysis.publication import survey_minimum
from tasks.analysis.tables import Analysis
from tasks.core.settings import Settings


def code_version() -> dict[str, str | None]:
    """Package version and, when run from a git checkout, ``git describe``."""
    try:
        package = version("cluster-eval")
    except PackageNotFoundError:
        package = None
    root = Path(__file__).resolve().parents[2]  # tasks/analysis/manifest.py -> the checkout
    described = None
    git = shutil.which("git")
    if git and (root / ".git").exists():
        try:
            done = subprocess.run(  # noqa: S603 - fixed argument list, no shell
                [git, "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            described = done.stdout.strip() or None if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            described = None
    return {"package": package, "git": described}


def settings_digest(settings: Settings) -> str:
    """SHA-256 of the settings (home and database URL left out: places, not choices)."""
    values = settings.model_dump(mode="json", exclude={"home", "database_url"})
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReportContext:
    """Who, when and with what the analysis was made (manifest and report header)."""

    cluster: str
    window_start: date
    window_end: date
    threshold: int
    generated_at: datetime
    settings_sha256: str
    code: Mapping[str, str | None]
    extracts: Sequence[Mapping[str, Any]] = ()
    waves: Sequence[Mapping[str, Any]] = ()
    #: survey responses were imported from a demo's SIMULATED-... file (the report says so)
    simulated_responses: bool = False
    #: the cross-table disclosure audit of the publication tables (publication.disclosure_audit)
    disclosure_audit: Mapping[str, Any] = field(default_factory=dict)
    #: what the report says of the qualitative strand (tasks.analysis.framework); None = not
    #: analysed yet
    qualitative: QualitativeReport | None = None


def make_context(settings: Settings, extracts: pl.DataFrame, waves: pl.DataFrame,
                 generated_at: datetime, simulated_responses: bool = False) -> ReportContext:
    """The report context from settings and the extract and wave lists."""
    return ReportContext(
        cluster=settings.study.cluster, window_start=settings.study.window_start,
        window_end=settings.study.window_end, threshold=settings.disclosure.threshold,
        generated_at=generated_at, settings_sha256=settings_digest(settings), code=code_version(),
        extracts=extracts.to_dicts(), waves=waves.to_dicts(),
        simulated_responses=simulated_responses,
    )


def _sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def qualitative_entry(framework: Framework | None, files: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest's account of the qualitative strand: status, counts, restricted files."""
    if framework is None:
        return {"status": NO_SEGMENTS, "themes": 0, "coded_segments": 0, "files": []}
    return {"status": framework.status, "themes": len(framework.matrices),
            "coded_segments": framework.coded_segments, "files": list(files)}


def build_manifest(root: Path, analysis: Analysis, context: ReportContext,
                   framework: Framework | None = None,
                   framework_files: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest of a staged output folder (every file but itself, with its SHA-256)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        "generator": GENERATOR,
        "manifest_version": 1,
        "status": "complete",
        "generated_at": context.generated_at.isoformat(),
        "cluster": context.cluster,
        "study_window": {"start": context.window_start.isoformat(),
                         "end": context.window_end.isoformat()},
        "disclosure_threshold": context.threshold,
        "disclosure_audit": dict(context.disclosure_audit),
        "survey_minimum_respondents": survey_minimum(context.threshold),
        "survey_status": analysis.survey_status,
        "survey_estimator": analysis.estimator.as_dict(),
        "simulated_responses": context.simulated_responses,
        "qualitative": qualitative_entry(framework, framework_files),
        "notes": list(analysis.notes),
        "single_respondent_strata": {m: list(s) for m, s in
                                     analysis.single_respondent_strata.items()},
        "settings_sha256": context.settings_sha256,
        "code_version": dict(context.code),
        "extracts": [{"sha256": e["sha256"], "status": e["status"],
                      "received_at": e["received_at"]} for e in context.extracts],
        "sampling": [{"wave": w["wave"], "seed": w["seed"], "size": w["size"],
                      "stratify_by": w["stratify_by"], "drawn_at": w["drawn_at"]}
                     for w in context.waves],
        "tables": {name: {"rows": df.height, "restricted": f"{RESTRICTED}/{name}.csv",
                          "publication": f"{PUBLICATION}/{name}.csv"}
                   for name, df in analysis.tables.items()},
        "files": {p.relative_to(root).as_posix(): _sha256(p) for p in files},
    }

