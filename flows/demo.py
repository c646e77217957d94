"""Demo flow: every stage, in order, on a synthetic encrypted extract (one subflow per stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.analysis import analyse_flow
from flows.ingest import ingest_flow
from flows.responses import import_flow
from flows.retention import retention_flow
from flows.sampling import sample_flow
from tasks.core import flow_names
from tasks.core.errors import UserFacingError
from tasks.core.runtime import current_runtime
from tasks.demo.simulate import make_demo_extract, simulate_responses

DEMO_SEED = 2021


@task(name="make synthetic extract", cache_policy=NO_CACHE, persist_result=False)
def make_synthetic_extract(families: int, seed: int) -> str:
    """Write a synthetic AES-256 ZIP extract into the inbox; return its path."""
    return str(make_demo_extract(current_runtime().home, current_runtime().secrets, families, seed))


@task(name="simulate responses (DEMO ONLY)", cache_policy=NO_CACHE, persist_result=False)
def simulate_demo_responses(wave: int, seed: int) -> str:
    """Write SIMULATED survey responses for a wave's tokens; return the file path."""
    runtime = current_runtime()
    with runtime.engine.connect() as conn:
        return str(simulate_responses(conn, runtime.home, runtime.cluster, wave, seed))


@flow(name=flow_names.DEMO, persist_result=False)
def demo_flow(out: str | None = None, families: int = 400, seed: int = DEMO_SEED) -> dict[str, Any]:
    """Run every stage end to end on synthetic data.

    Args:
        out: folder for the analysis outputs (default CLUSTER_EVAL_HOME/outputs/demo).
        families: number of synthetic families in the extract.
        seed: seed of the synthetic extract and the simulated responses.
    """
    out_dir = out or str(current_runtime().home.outputs / "demo")
    extract = make_synthetic_extract(families, seed)
    ingested = ingest_flow(extract)
    if ingested["status"] == "rejected":
        raise UserFacingError(f"demo extract was rejected: {ingested['error']}")
    wave = sample_flow(wave=1)
    responses = simulate_demo_responses(1, seed)
    imported = import_flow(Path(responses))
    analysis = analyse_flow(out_dir)
    retention = retention_flow(dry_run=True)
    return {"ingest": ingested, "wave": {"wave": wave["wave"], "households": len(wave["households"])},
            "responses": imported, "analysis": analysis, "retention": retention,
            "report": analysis.get("report")}


