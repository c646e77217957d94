"""Demo flow: every stage, in order, on a synthetic encrypted extract (one subflow per stage).

After the survey, the qualitative strand runs on a synthetic corpus of interviews and focus groups:
register, transcripts (de-identified and approved), a coding export, its SIMULATED coding and the
coding import, so the analysis shows the Framework matrices and what families and practitioners
said (all marked as simulated).
"""

from __future__ import annotations

from typing import Any

from prefect.runtime import flow_run

from flows.analysis import analyse_flow
from flows.coding import coding_export_flow, coding_import_flow
from flows.ingest import ingest_flow
from flows.participants import participants_import_flow
from flows.responses import import_flow
from flows.retention import retention_flow
from flows.sampling import sample_flow
from flows.transcripts import transcripts_import_flow
from tasks.core import flow_names
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime, use_runtime
from tasks.demo.simulate import demo_passphrase
from tasks.demo.steps import (
    approve_demo_sessions,
    check_demo_ingest,
    demo_coding_path,
    demo_output_dir,
    demo_run_line,
    demo_summary,
    make_synthetic_extract,
    make_synthetic_qualitative,
    qualitative_summary,
    simulate_coding,
    simulate_demo_responses,
    with_demo_study_files,
)

DEMO_SEED = 2021
DEMO_WAVE = 1


@project_flow(flow_names.DEMO, run_name=lambda p: f"demo {p.get('families', 400)} families", summary=demo_run_line)
def demo_flow(out: str | None = None, families: int = 400, seed: int = DEMO_SEED) -> dict[str, Any]:
    """Run every stage end to end on synthetic data (each stage a subflow with its own one-line summary).

    Args:
        out: folder for the analysis outputs (default CLUSTER_EVAL_HOME/outputs/demo).
        families: number of synthetic families in the extract.
        seed: seed of the synthetic extract, the simulated responses, the synthetic interviews and
            focus groups and their simulated coding.
    """
    runtime = current_runtime()
    out_dir = demo_output_dir(runtime.home, out)
    passphrase = demo_passphrase(runtime.secrets)
    extract = make_synthetic_extract(runtime.home, passphrase, families, seed)
    ingested = ingest_flow(extract)
    check_demo_ingest(ingested)
    wave = sample_flow(wave=DEMO_WAVE)
    responses = simulate_demo_responses(runtime.engine, runtime.home, runtime.cluster, DEMO_WAVE, seed)
    imported = import_flow(responses)
    corpus = make_synthetic_qualitative(runtime.engine, runtime.home, runtime.cluster, passphrase, seed)
    with use_runtime(with_demo_study_files(runtime, corpus)) as study:  # the demo's codebook and deny-list
        participants = participants_import_flow(corpus.register)
        transcripts = transcripts_import_flow(corpus.transcripts)
        approved = approve_demo_sessions(study, corpus.sessions, flow_run.get_id())
        exported = coding_export_flow(demo_coding_path(runtime.home))
        coding = coding_import_flow(simulate_coding(exported["out"], seed))
        analysis = analyse_flow(out_dir)
    retention = retention_flow(dry_run=True)
    qualitative = qualitative_summary(corpus, participants, transcripts, approved, exported, coding)
    return demo_summary(ingested, wave, imported, qualitative, analysis, retention)
