"""End to end: `cluster-eval demo` runs every stage as Prefect subflows on a synthetic extract."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET  # noqa: S405 - parses the demo's own export

import docx
import polars as pl
import pytest
import webvtt
from sqlalchemy import create_engine, text

from cli.main import main
from tasks.demo.qdpx_coder import expected_segments
from tasks.demo.qualitative import make_corpus
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


def _demo_and_stages() -> tuple[Any, list[Any]]:
    """The latest demo run and its subflow runs (one per stage)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        [demo] = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["demo"])),
                                       sort=FlowRunSort.START_TIME_DESC, limit=1)
        stages = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[demo.id])))
    return demo, stages


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
    for stage in ("demo", "ingest", "sample-wave", "import-responses", "participants-import",
                  "transcripts-import", "coding-export", "coding-import", "analyse", "retention-sweep"):
        assert stage in names
    assert "transcripts-approve" not in names  # the demo approves its four sessions in one task
    demo, stages = _demo_and_stages()
    assert (demo.name, demo.state.type.value) == (f"demo {FAMILIES} families", "COMPLETED")
    assert demo.state.message.startswith(
        f"demo: {families} families, {episodes} episodes in the study window; wave 1 drew 50 households, "
        f"{round(50 * DEMO_RESPONSE_RATE)} SIMULATED responses accepted; ")
    assert "retention dry run: " in demo.state.message and "\n" not in demo.state.message
    assert len(stages) == 9 and all(  # every stage ends with its one-line summary
        r.state.type.value == "COMPLETED" and r.state.message and "\n" not in r.state.message for r in stages)
    names_of_runs = {r.name for r in stages}
    assert {"participants import", "transcripts import", "coding export", "coding import"} <= names_of_runs
    assert any(re.fullmatch(r"import responses [0-9a-f]{8}", name) for name in names_of_runs)
    assert any(re.fullmatch(r"retention \d{4}-\d{2}-\d{2} \(dry run\)", name) for name in names_of_runs)

    _check_qualitative(tmp_path / "var", out, printed)


def _turns_per_session(transcripts: dict[str, bytes]) -> dict[str, int]:
    """Labelled paragraphs (docx), labelled lines (txt) and cues (vtt) of the synthetic transcripts."""
    counts = {}
    for name, data in transcripts.items():
        session, fmt = name.rsplit(".", 1)
        if fmt == "vtt":
            counts[session] = len(webvtt.from_buffer(io.StringIO(data.decode())).captions)
        else:
            lines = ([p.text for p in docx.Document(io.BytesIO(data)).paragraphs] if fmt == "docx"
                     else data.decode().splitlines())
            counts[session] = sum(1 for line in lines if re.match(r"^[\w ]{1,40}: ", line))
    return counts


def _check_qualitative(home: Path, out: Path, printed: str) -> None:
    """The qualitative strand ran end to end: register, de-identified transcripts, coding, matrices."""
    corpus = make_corpus(SEED)
    coded = home / "outputs" / "demo-coding-SIMULATED-coded.qdpx"
    expected = Counter((s.session_id, s.turn_no, s.theme, s.subtheme, s.start_cp, s.end_cp)
                       for s in expected_segments(coded.read_bytes()))
    engine = create_engine(f"sqlite:///{home / 'cluster-eval.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM qual_participants")).scalar() == 20
        tokens = conn.execute(text("SELECT count(*) FROM qual_participants p JOIN responses r"
                                   " ON r.token = p.survey_token WHERE r.q10_interview_opt_in")).scalar_one()
        opted_in = int(conn.execute(text("SELECT count(*) FROM responses WHERE q10_interview_opt_in")).scalar_one())
        assert tokens == min(7, opted_in) > 0
        assert conn.execute(text("SELECT count(*) FROM qual_sessions WHERE approved_at IS NOT NULL")).scalar() == 4
        turns: dict[str, int] = dict(conn.execute(text(
            "SELECT session_id, count(*) FROM qual_turns GROUP BY session_id")).all())
        assert turns == _turns_per_session(corpus.transcripts)
        stored = Counter(tuple(r) for r in conn.execute(text(
            "SELECT session_id, turn_no, theme, subtheme, start_cp, end_cp FROM qual_segments")).all())
        assert stored == expected and expected.total() > 60
        assert conn.execute(text("SELECT count(*) FROM qual_codes WHERE origin = 'coding'")).scalar() == 1
    engine.dispose()
    assert (f"qualitative: 20 participants, 4 transcripts de-identified and approved, "
            f"{expected.total()} coded segments") in printed

    # Nothing planted survives de-identification: not in the coding project, nor in any output.
    with zipfile.ZipFile(coded) as project:
        root = ET.fromstring(project.read("project.qde"))  # noqa: S314 - the demo's own export
        sources = {s.get("name"): project.read(f"sources/{s.get('plainTextPath', '').split('//')[1]}").decode()
                   for s in root.iter("{urn:QDA-XML:project:1.0}TextSource")}
    outputs = [(out / "report.html").read_text(), *(p.read_text() for p in (out / "restricted").rglob("*.csv"))]
    for planted in corpus.planted:
        pattern = re.compile(rf"(?<!\w){re.escape(planted.text)}(?!\w)")
        assert not pattern.search(sources[planted.session_id]), (planted.session_id, planted.kind)
        assert not any(pattern.search(o) for o in outputs), (planted.session_id, planted.kind)

    with (out / "restricted" / "framework_counts.csv").open() as handle:
        counts = list(csv.DictReader(handle))
    subthemes = {(r["theme"], r["subtheme"]) for r in counts}
    assert {(r["theme"], r["subtheme"]) for r in corpus.codebook_rows} <= subthemes
    assert any(r["subtheme"] == "Peer support" for r in counts)  # the code added while coding
    assert len(list((out / "restricted" / "framework").glob("*.csv"))) == 4
    report = (out / "report.html").read_text()
    sections = report.split("What families and practitioners said")[1:]
    assert len(sections) >= 3 and all("simulated" in part[:800].lower() for part in sections)  # marked DEMO
