"""Thin Prefect tasks of the demo (the names the Prefect UI shows) and its checks; DEMO ONLY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tasks.core.errors import UserFacingError
from tasks.core.home import Home
from tasks.core.prefect import stage_task
from tasks.demo.simulate import make_demo_extract, simulate_responses


@stage_task("make synthetic extract")
def make_synthetic_extract(home: Home, passphrase: str, families: int, seed: int) -> str:
    """Write a synthetic AES-256 ZIP extract into the inbox; return its path."""
    return str(make_demo_extract(home, passphrase, families, seed))


@stage_task("simulate responses (DEMO ONLY)")
def simulate_demo_responses(engine: Engine, home: Home, cluster: str, wave: int, seed: int) -> Path:
    """Write SIMULATED survey responses for a wave's tokens; return the file path."""
    with engine.connect() as conn:
        return simulate_responses(conn, home, cluster, wave, seed)


def demo_output_dir(home: Home, out: str | None) -> str:
    """Where the demo's analysis goes: ``out``, else HOME/outputs/demo."""
    return out or str(home.outputs / "demo")


def check_demo_ingest(ingested: dict[str, Any]) -> None:
    """Stop the demo when its own synthetic extract was rejected (nothing after it can run)."""
    if ingested["status"] == "rejected":
        raise UserFacingError(f"demo extract was rejected: {ingested['error']}")


def demo_summary(ingested: dict[str, Any], wave: dict[str, Any], imported: dict[str, Any],
                 analysis: dict[str, Any], retention: dict[str, Any]) -> dict[str, Any]:
    """The demo flow's result: each stage's result, the wave drawn and where the report is."""
    return {"ingest": ingested, "wave": {"wave": wave["wave"], "households": len(wave["households"])},
            "responses": imported, "analysis": analysis, "retention": retention,
            "report": analysis.get("report")}
