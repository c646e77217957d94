"""Ingest flow: one encrypted extract into the analysis store (``cluster-eval ingest FILE``).

The pipeline is ``tasks.ingest.ingest_file``; this flow runs each of its stages as a named
Prefect task (check archive, decrypt, read, validate, pseudonymise, transform, load, report or
quarantine) whose results are never persisted, and publishes the data-quality report as
artifacts. Secrets come from the environment or 0600 key files, never from parameters.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.commands import Outcome
from tasks.ingest import IngestOutcome, QualityReport, ingest_file, load_ingest_secrets
from tasks.runtime import current_runtime
from tasks.secrets import CONTACT_KEY, PSEUDONYM_KEY, get_secret

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


@flow(name="ingest", persist_result=False)
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
    secrets = load_ingest_secrets(runtime.home)
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


def _summary(result: dict[str, Any]) -> str:
    status, sha = result["status"], (result["sha256"] or "")[:12]
    if status == "rejected":
        return f"extract {sha or 'file'} rejected and moved to quarantine: {result['error']}"
    if status == "duplicate":
        return f"extract {sha} was already ingested; nothing to do"
    tables = "; ".join(f"{t} {c['loaded']} loaded, {c['quarantined']} quarantined"
                       for t, c in result["tables"].items())
    population = result["population"]
    return (f"extract {sha} ingested: {tables}. Study population: {population['families']} "
            f"families, {population['episodes']} episodes. Data-quality report: "
            f"outputs/data-quality/{sha}.csv")


def run_ingest_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval ingest FILE [--json]``: exit 1 when the extract is rejected."""
    home = current_runtime().home
    missing = [name for name in (PSEUDONYM_KEY, CONTACT_KEY) if not get_secret(name, home)]
    result = ingest_flow(str(args.file))
    for name in missing:
        if get_secret(name, home):
            print(f"cluster-eval: created a new {name.replace('_', ' ')} at {home.keys / name} "
                  "(mode 0600); keep a secure backup of it", file=sys.stderr)
    if result["status"] == "rejected":
        print(f"cluster-eval: error: {result['error']}", file=sys.stderr)
        return result, 1, _summary
    return result, 0, _summary
