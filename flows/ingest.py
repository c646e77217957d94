"""Ingest flow: one encrypted extract into the analysis store (``cluster-eval ingest FILE``).

The pipeline is ``tasks.ingest.pipeline.ingest_file``; this flow runs each of its stages as a named
Prefect task (check archive, decrypt, read, validate, pseudonymise, transform, load, report or
quarantine) whose results are never persisted, and publishes the data-quality report as
artifacts. Secrets come from the environment or 0600 key files, never from parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.ingest.pipeline import ingest_file, load_ingest_secrets
from tasks.ingest.steps import report_outcome, run_stage_as_task


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
    outcome = ingest_file(Path(file), runtime, secrets, stage=run_stage_as_task,
                          flow_run_id=flow_run.get_id())
    report_outcome(outcome)
    return outcome.to_json()
