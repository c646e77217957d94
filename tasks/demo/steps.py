"""Thin Prefect tasks of the demo (the names the Prefect UI shows) and its checks; DEMO ONLY."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tasks.core.db import rows
from tasks.core.errors import UserFacingError
from tasks.core.home import Home, write_private
from tasks.core.prefect import stage_task
from tasks.core.runtime import Runtime
from tasks.demo.qdpx_coder import code_project
from tasks.demo.qualitative import DemoCorpusFiles, write_demo_corpus
from tasks.demo.simulate import make_demo_extract, simulate_responses
from tasks.transcripts.intake import approve_session


@stage_task("make synthetic extract")
def make_synthetic_extract(home: Home, passphrase: str, families: int, seed: int) -> str:
    """Write a synthetic AES-256 ZIP extract into the inbox; return its path."""
    return str(make_demo_extract(home, passphrase, families, seed))


@stage_task("simulate responses (DEMO ONLY)")
def simulate_demo_responses(engine: Engine, home: Home, cluster: str, wave: int, seed: int) -> Path:
    """Write SIMULATED survey responses for a wave's tokens; return the file path."""
    with engine.connect() as conn:
        return simulate_responses(conn, home, cluster, wave, seed)


@stage_task("make synthetic interviews and focus groups (DEMO ONLY)")
def make_synthetic_qualitative(engine: Engine, home: Home, cluster: str, passphrase: str,
                               seed: int) -> DemoCorpusFiles:
    """Write the synthetic register and transcripts (encrypted) and the demo codebook and deny-list.

    Family participants get the survey tokens of respondents who opted in to an interview.
    """
    with engine.connect() as conn:
        tokens = [r["token"] for r in rows(conn, "survey_interview_candidates", {"cluster_id": cluster})]
    return write_demo_corpus(home, passphrase, seed, tokens)


@stage_task("code the project as researchers would (SIMULATED)")
def simulate_coding(exported: str, seed: int) -> Path:
    """Code the exported REFI-QDA project as a QDA tool would; write it next to the export (0600)."""
    source = Path(exported)
    coded = source.with_name(f"{source.stem}-SIMULATED-coded.qdpx")
    write_private(coded, code_project(source.read_bytes(), seed))
    return coded


@stage_task("approve the de-identified transcripts (DEMO ONLY)")
def approve_demo_sessions(runtime: Runtime, sessions: tuple[str, ...], flow_run_id: str | None
                          ) -> list[dict[str, Any]]:
    """Approve every synthetic session as the researcher would after reading its review list.

    One task rather than one ``transcripts-approve`` run per session, so the demo's stages fit one
    page of the Prefect UI; each approval is audited exactly as ``transcripts approve`` does.
    """
    return [approve_session(runtime, session, flow_run_id) for session in sessions]


def with_demo_study_files(runtime: Runtime, files: DemoCorpusFiles) -> Runtime:
    """The runtime with the demo's codebook and deny-list as the qualitative settings (settings are frozen)."""
    qualitative = runtime.settings.qualitative.model_copy(
        update={"codebook": files.codebook, "deny_list": files.deny_list})
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"qualitative": qualitative}))


def demo_coding_path(home: Home) -> Path:
    """Where the demo exports its coding project: HOME/outputs (the analysis folder is replaced on each run)."""
    return home.outputs / "demo-coding.qdpx"


def demo_output_dir(home: Home, out: str | None) -> str:
    """Where the demo's analysis goes: ``out``, else HOME/outputs/demo."""
    return out or str(home.outputs / "demo")


def check_demo_ingest(ingested: dict[str, Any]) -> None:
    """Stop the demo when its own synthetic extract was rejected (nothing after it can run)."""
    if ingested["status"] == "rejected":
        raise UserFacingError(f"demo extract was rejected: {ingested['error']}")


def qualitative_summary(corpus: DemoCorpusFiles, participants: dict[str, Any], transcripts: dict[str, Any],
                        approved: list[dict[str, Any]], exported: dict[str, Any], coding: dict[str, Any]
                        ) -> dict[str, Any]:
    """The qualitative part of the demo's result (counts and file paths only)."""
    return {"participants": participants, "transcripts": transcripts, "approved": len(approved),
            "export": exported, "coding": coding, "planted": corpus.planted}


def demo_summary(ingested: dict[str, Any], wave: dict[str, Any], imported: dict[str, Any],
                 qualitative: dict[str, Any], analysis: dict[str, Any], retention: dict[str, Any]
                 ) -> dict[str, Any]:
    """The demo flow's result: each stage's result, the wave drawn and where the report is."""
    return {"ingest": ingested, "wave": {"wave": wave["wave"], "households": len(wave["households"])},
            "responses": imported, "qualitative": qualitative, "analysis": analysis, "retention": retention,
            "report": analysis.get("report")}


def demo_run_line(result: dict[str, Any]) -> str:
    """The demo run's one-line summary (counts only): what each stage did."""
    population = result["ingest"].get("population") or {}
    qualitative = result["qualitative"]
    responses, analysis = result["responses"], result["analysis"]
    return (f"demo: {population.get('families', 0)} families, {population.get('episodes', 0)} episodes in the "
            f"study window; wave {result['wave']['wave']} drew {result['wave']['households']} households, "
            f"{responses.get('accepted', 0)} SIMULATED responses accepted; "
            f"{qualitative['participants'].get('participants', 0)} participants, {qualitative['approved']} "
            f"transcripts approved, {qualitative['coding'].get('segments', 0)} SIMULATED coded segments; "
            f"{analysis.get('tables', 0)} tables; retention dry run: {len(result['retention'].get('due', []))} "
            "rule(s) due now")
