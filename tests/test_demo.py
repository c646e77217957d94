"""End to end: `cluster-eval demo` runs every stage as Prefect subflows on a synthetic extract."""

from __future__ import annotations

import asyncio
import csv
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from cli.main import main
from tasks.demo.simulate import DEMO_RESPONSE_RATE
from tasks.demo.synthetic import generate_tables

FAMILIES = 150
SEED = 2021  # flows.demo.DEMO_SEED


def _expected_population() -> tuple[int, int]:
    episodes = generate_tables(FAMILIES, SEED)["episodes"].with_columns(
        pl.col("referral_date").str.to_date(), pl.col("closure_date").str.to_date()
    )
    in_window = episodes.filter(
        (pl.col("referral_date") <= date(2021, 6, 30))
        & (pl.col("closure_date").is_null() | (pl.col("closure_date") >= date(2021, 1, 1)))
    )
    return in_window["family_id"].n_unique(), in_window.height


def _subflow_names() -> list[str]:
    from prefect.client.orchestration import get_client

    async def names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            flows = {f.id: f.name for f in await client.read_flows()}
            return [flows[r.flow_id] for r in runs]

    return asyncio.run(names())


@pytest.mark.e2e
def test_demo_runs_every_stage(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"

    assert main(["demo", "--families", str(FAMILIES), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert f"report:    {out / 'report.html'}" in printed
    assert (out / "report.html").stat().st_size > 10_000
    families, episodes = _expected_population()
    with (out / "restricted" / "population.csv").open() as handle:
        population = next(csv.DictReader(handle))
    assert (int(population["families"]), int(population["episodes"])) == (families, episodes)

    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'cluster-eval.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM households WHERE wave = 1")).scalar() == 50
        assert conn.execute(text("SELECT count(*) FROM responses")).scalar() == round(50 * DEMO_RESPONSE_RATE)
        assert conn.execute(text("SELECT status FROM extracts")).scalar() == "ingested"
    engine.dispose()
    with (out / "restricted" / "response_rates.csv").open() as handle:
        overall = [r for r in csv.DictReader(handle) if r["stratum"] == "all"]
    assert [(r["wave"], r["issued"], r["responded"]) for r in overall] == [("1", "50", "30")]

    names = _subflow_names()
    for stage in ("demo", "ingest", "sample-wave", "import-responses", "analyse", "retention-sweep"):
        assert stage in names
