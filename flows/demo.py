"""Demo flow: every stage, in order, on a synthetic encrypted extract (one subflow per stage)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.analysis import analyse_flow
from flows.ingest import ingest_flow
from flows.responses import import_flow
from flows.retention import retention_flow
from flows.sampling import sample_flow
from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.demo.simulate import demo_passphrase
from tasks.demo.steps import (
    check_demo_ingest,
    demo_output_dir,
    demo_summary,
    make_synthetic_extract,
    simulate_demo_responses,
)

DEMO_SEED = 2021
DEMO_WAVE = 1


@flow(name=flow_names.DEMO, persist_result=False)
def demo_flow(out: str | None = None, families: int = 400, seed: int = DEMO_SEED) -> dict[str, Any]:
    """Run every stage end to end on synthetic data.

    Args:
        out: folder for the analysis outputs (default CLUSTER_EVAL_HOME/outputs/demo).
        families: number of synthetic families in the extract.
        seed: seed of the synthetic extract and the simulated responses.
    """
    runtime = current_runtime()
    out_dir = demo_output_dir(runtime.home, out)
    extract = make_synthetic_extract(runtime.home, demo_passphrase(runtime.secrets), families, seed)
    ingested = ingest_flow(extract)
    check_demo_ingest(ingested)
    wave = sample_flow(wave=DEMO_WAVE)
    responses = simulate_demo_responses(runtime.engine, runtime.home, runtime.cluster, DEMO_WAVE, seed)
    imported = import_flow(responses)
    analysis = analyse_flow(out_dir)
    retention = retention_flow(dry_run=True)
    return demo_summary(ingested, wave, imported, analysis, retention)
