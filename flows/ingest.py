"""Ingest flow: one encrypted extract into the analysis store (``cluster-eval ingest FILE``).

The pipeline is ``tasks.ingest.pipeline.ingest_file``; this flow runs each of its stages as a named
Prefect task (check archive, decrypt, read, validate, pseudonymise, transform, load, report or
quarantine) whose results are never persisted, and publishes the data-quality report as
artifacts. Secrets come from the environment or 0600 key files, never from parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.ingest.pipeline import IngestOutcome, QualityReport, ingest_file, load_ingest_secrets

P = ParamSpec("P")
T = TypeVar("T")
REPORT_KEY = "data-quality"


def run_as_task(name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one pipeline stage as a named task whose inputs and result stay in memory."""
    stage = task(fn, name=name, persist_result=False, cache_policy=NO_CACHE, retries=0)
    return stage(*args, **kwargs)


@task(name="publish report", persist_result=False, cache_policy=NO_CACHE)
def publish_report(report: QualityReport, sha256: str | None) -> None:
    """Publish the data-quality report (counts only) as table and markdown artifacts."""
    short = (sha256 or "unknown")[:12]
    create_table_artifact(table=report.frame.to_dicts(), key=REPORT_KEY,
                          description=f"Data-quality report of extract {short} (counts only)")
    create_markdown_artifact(markdown=report.markdown, key=f"{REPORT_KEY}-summary",
                             description=f"Data-quality summary of extract {short}")


@flow(name=flow_names.INGEST, persist_result=False)
def ingest_flow(file: str) -> dict[str, Any]:
    """Ingest one encrypted extract (AES-256 ZIP or age) and report what happened.

    Args:
        file: path of the encrypted extract as delivered through Egress. The passphrase comes
            from CLUSTER_EVAL_EXTRACT_PASSPHRASE (or its key file), the age identity from the
            file named by CLUSTER_EVAL_AGE_IDENTITY; neither is ever a parameter.

    Returns:
        The ``ingest --json`` object of shared/spec/cli.md.
    """
    runtime = current_runtime()
    secrets = load_ingest_secrets(runtime.secrets)
    outcome = ingest_file(Path(file), runtime, secrets, stage=run_as_task,
                          flow_run_id=str(flow_run.id) if flow_run.id else None)
    if outcome.report is not None:
        publish_report(outcome.report, outcome.sha256)
    _log(outcome)
    return outcome.to_json()


def _log(outcome: IngestOutcome) -> None:
    logger = get_run_logger()
    counts = ", ".join(f"{t} {c.loaded}/{c.rows}" for t, c in outcome.tables.items())
    if outcome.status == "rejected":
        logger.warning("extract rejected: %s", outcome.error)
    else:
        logger.info("extract %s: loaded/read %s; population %d families, %d episodes",
                    outcome.status, counts, outcome.population.families,
                    outcome.population.episodes)


