"""Ingest flow: one encrypted extract into the analysis store (``cluster-eval ingest FILE``).

The pipeline is ``tasks.ingest.pipeline.ingest_file``; this flow runs each of its stages as a named
Prefect task (check archive, decrypt, read, validate, pseudonymise, transform, load, report or
quarantine) whose results are never persisted, and publishes the data-quality report as
artifacts. Secrets come from the environment or 0600 key files, never from parameters.

The run is named ``ingest <first 8 hex digits of the file's SHA-256>``. A rejected extract ends
the run Failed with the line the CLI prints; the same bytes again end it Completed with "extract
<sha256[:12]> was already ingested; nothing to do".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime
from tasks.ingest.pipeline import ingest_file, load_ingest_secrets
from tasks.ingest.steps import finish_ingest, ingest_run_name, report_outcome, run_stage_as_task, summary_line


@project_flow(flow_names.INGEST, run_name=ingest_run_name, summary=summary_line)
def ingest_flow(file: str) -> dict[str, Any]:
    """Ingest one encrypted extract (AES-256 ZIP or age) and report what happened.

    Args:
        file: path of the encrypted extract as delivered through Egress. The passphrase comes
            from CLUSTER_EVAL_EXTRACT_PASSPHRASE (or its key file), the age identity from the
            file named by CLUSTER_EVAL_AGE_IDENTITY; neither is ever a parameter.

    Returns:
        The ``ingest --json`` object of shared/spec/cli.md (a rejection raises ``ExtractRejected``
        carrying it).
    """
    runtime = current_runtime()
    secrets = load_ingest_secrets(runtime.secrets)
    outcome = ingest_file(Path(file), runtime, secrets, stage=run_stage_as_task,
                          flow_run_id=flow_run.get_id())
    report_outcome(outcome, runtime.cluster)
    return finish_ingest(outcome)
