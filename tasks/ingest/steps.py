"""Thin Prefect tasks of the ingest stage: pipeline stages as named tasks, the report artifacts.

The stage names the Prefect UI shows ("check archive", "decrypt", "read", "validate",
"pseudonymise", "transform", "load", "quarantine", "report") are those ``ingest_file`` gives its
stage runner; ``run_stage_as_task`` runs each as a task made by ``tasks.core.prefect.as_task``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.core.prefect import as_task, stage_task
from tasks.ingest.pipeline import IngestOutcome, QualityReport

P = ParamSpec("P")
T = TypeVar("T")
REPORT_KEY = "data-quality"


def run_stage_as_task(name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one pipeline stage as a named task whose inputs and result stay in memory."""
    return as_task(name, fn)(*args, **kwargs)


@stage_task("publish report")
def publish_report(report: QualityReport, sha256: str | None) -> None:
    """Publish the data-quality report (counts only) as table and markdown artifacts."""
    short = (sha256 or "unknown")[:12]
    create_table_artifact(table=report.frame.to_dicts(), key=REPORT_KEY,
                          description=f"Data-quality report of extract {short} (counts only)")
    create_markdown_artifact(markdown=report.markdown, key=f"{REPORT_KEY}-summary",
                             description=f"Data-quality summary of extract {short}")


def log_outcome(outcome: IngestOutcome) -> None:
    """Log what happened to the extract in the flow run (counts and the refusal only)."""
    logger = get_run_logger()
    counts = ", ".join(f"{t} {c.loaded}/{c.rows}" for t, c in outcome.tables.items())
    if outcome.status == "rejected":
        logger.warning("extract rejected: %s", outcome.error)
    else:
        logger.info("extract %s: loaded/read %s; population %d families, %d episodes",
                    outcome.status, counts, outcome.population.families,
                    outcome.population.episodes)


def report_outcome(outcome: IngestOutcome) -> None:
    """Publish the data-quality report when the run wrote one, then log the outcome."""
    if outcome.report is not None:
        publish_report(outcome.report, outcome.sha256)
    log_outcome(outcome)
