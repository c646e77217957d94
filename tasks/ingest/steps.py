"""Thin Prefect parts of the ingest stage: stages as named tasks, the report artifacts, run names.

The stage names the Prefect UI shows ("check archive", "decrypt", "read", "validate",
"pseudonymise", "transform", "load", "quarantine", "report") are those ``ingest_file`` gives its
stage runner; ``run_stage_as_task`` runs each as a task made by ``tasks.core.prefect.as_task``.

The data-quality report of an ingested extract is published as ``<cluster>-data-quality`` (table)
and ``<cluster>-data-quality-summary`` (markdown): the last good report. A rejected extract's
counts go to ``<cluster>-data-quality-rejected`` instead, so a bad file never hides the last good
report.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TagsContext
from prefect.utilities.annotations import quote

from tasks.core.errors import InputRejected
from tasks.core.flowrun import NothingToDo
from tasks.core.prefect import artifact_key, as_task, stage_task
from tasks.ingest.pipeline import LEFT_IN_PLACE, IngestOutcome, QualityReport

P = ParamSpec("P")
T = TypeVar("T")
REPORT_NAME = "data-quality"
REJECTED_REPORT_NAME = "data-quality-rejected"


class ExtractRejected(InputRejected):
    """The extract was rejected: its one line (``outcome.error``) and the ``ingest --json`` object."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(str(result["error"]))
        self.result = result


# Benchmarks: when set, each stage appends one JSON line (stage, seconds inside the task, CPU
# seconds of the process meanwhile, the process's peak RSS so far, its start as Unix time) to
# this file. Names and figures only, never a value of the extract.
STAGE_TIMES_ENV = "CLUSTER_EVAL_STAGE_TIMES"


def _timed(name: str, fn: Callable[P, T], into: str) -> Callable[P, T]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        started_at, start, cpu = time.time(), time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu  # all threads: steadier than wall on a busy host
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            with open(into, "a", encoding="utf-8") as out:
                out.write(json.dumps({"stage": name, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                      "peak_rss_mib": peak_mib, "started_at": started_at}) + "\n")

    return run


def run_stage_as_task(name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one pipeline stage as a named task whose inputs and result stay in memory.

    The arguments are wrapped in ``quote`` so Prefect does not walk the tables (a million rows)
    looking for futures to wait on: a stage's inputs are never futures.
    The task run carries no tags (``untagged``).
    """
    into = os.environ.get(STAGE_TIMES_ENV)
    task: Any = as_task(name, _timed(name, fn, into) if into else fn)  # quoted arguments: not P
    with untagged():
        return cast(T, task(*(quote(a) for a in args), **{k: quote(v) for k, v in kwargs.items()}))


def untagged() -> TagsContext:
    """A context whose task runs carry no tags; the flow run keeps its own (the cluster's).

    A tagged task run asks the server for tag concurrency slots before it starts, the one blocking
    API call of a task. After a stage of more than a few seconds that call met the server's SQLite
    locked by its own background work, was answered 503 and retried ~2 s later: 8 s of a
    million-family ingest went to such waits (benchmarks/ingest.py, "Prefect share").
    """
    return TagsContext(current_tags=set())


def report_keys(cluster: str) -> tuple[str, str, str]:
    """The artifact keys of the data-quality report: table, summary, rejected-extract summary."""
    return (artifact_key(cluster, REPORT_NAME), artifact_key(cluster, f"{REPORT_NAME}-summary"),
            artifact_key(cluster, REJECTED_REPORT_NAME))


@stage_task("publish report")
def publish_report(report: QualityReport, sha256: str | None, cluster: str, rejected: bool) -> None:
    """Publish the data-quality report (counts only): the last good report, or the rejection's counts."""
    short = (sha256 or "unknown")[:12]
    table_key, summary_key, rejected_key = report_keys(cluster)
    if rejected:
        create_markdown_artifact(markdown=report.markdown, key=rejected_key,
                                 description=f"Rejected extract {short}: data-quality counts (the last "
                                 f"good report stays under {summary_key})")
        return
    create_table_artifact(table=report.frame.to_dicts(), key=table_key,
                          description=f"Data-quality report of extract {short} (counts only)")
    create_markdown_artifact(markdown=report.markdown, key=summary_key,
                             description=f"Data-quality summary of extract {short}")


def report_outcome(outcome: IngestOutcome, cluster: str) -> None:
    """Publish the data-quality report when the run wrote one (never over the last good one when rejected)."""
    if outcome.report is not None:
        with untagged():
            publish_report(outcome.report, outcome.sha256, cluster, outcome.status == "rejected")


def summary_line(result: Mapping[str, Any]) -> str:
    """One line on an ``ingest --json`` object (counts only): the CLI's summary and the run's."""
    status, sha = result["status"], (result["sha256"] or "")[:12]
    if status == "rejected":
        where = "left in place" if str(result["error"]).endswith(LEFT_IN_PLACE) else "moved to quarantine"
        return f"extract {sha or 'file'} rejected and {where}: {result['error']}"
    if status == "duplicate":
        return duplicate_line(sha)
    tables = "; ".join(f"{t} {c['loaded']} loaded, {c['quarantined']} quarantined"
                       for t, c in result["tables"].items())
    population = result["population"]
    return (f"extract {sha} ingested: {tables}. Study population: {population['families']} "
            f"families, {population['episodes']} episodes. Data-quality report: "
            f"outputs/data-quality/{sha}.csv")


def duplicate_line(sha12: str) -> str:
    """What a duplicate extract is told by (the state message of its Completed run)."""
    return f"extract {sha12} was already ingested; nothing to do"


def finish_ingest(outcome: IngestOutcome) -> dict[str, Any]:
    """The flow's result; a rejection raises ``ExtractRejected``, a duplicate ``NothingToDo``."""
    result = outcome.to_json()
    if outcome.status == "rejected":
        raise ExtractRejected(result)
    if outcome.status == "duplicate":
        raise NothingToDo(duplicate_line((outcome.sha256 or "")[:12]), result)
    return result


def ingest_run_name(parameters: Mapping[str, Any]) -> str:
    """``ingest <first 8 hex digits of the file's SHA-256>``, or ``ingest (file not found)``."""
    try:
        with Path(str(parameters["file"])).open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except (OSError, KeyError):
        return "ingest (file not found)"
    return f"ingest {digest[:8]}"


def claim_owner_finished(run_id: str) -> bool | None:
    """Whether the flow run that made an inbox claim folder has ended (None: cannot tell, leave it)."""
    from prefect.client.orchestration import get_client

    try:
        run_uuid = UUID(run_id)
    except ValueError:
        return None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_uuid)
    except Exception:  # noqa: BLE001 - unknown to this server, or the server unreachable: cannot tell
        return None
    return bool(run.state is not None and run.state.is_final())
