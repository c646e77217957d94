"""Analysis flow: study data -> restricted and publication tables -> charts, workbook, report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import Engine

from tasks.analysis.report import WrittenOutputs, check_output_dir, make_context, write_outputs
from tasks.analysis.tables import (
    Analysis,
    StudyData,
    build_analysis,
    load_study_data,
    publication_tables,
    record_analysis_run,
)
from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.core.settings import Settings

#: Publication tables shown as Prefect table artifacts (suppressed figures only).
HEADLINE_TABLES = ("population", "referral_routes", "presenting_issues", "closure_outcomes",
                   "onward_referrals", "length_of_support", "ons4", "response_rates")


@task(name="check-output-folder", cache_policy=NO_CACHE, persist_result=False)
def check_output_folder(out: Path) -> str:
    """Refuse an output folder that holds anything but an earlier analysis."""
    return check_output_dir(out.resolve())


@task(name="load-study-data", cache_policy=NO_CACHE, persist_result=False)
def load_study_data_task(engine: Engine, cluster: str) -> StudyData:
    """Read the in-window study population and the survey of the cluster."""
    with engine.connect() as conn:
        return load_study_data(conn, cluster)


@task(name="build-tables", cache_policy=NO_CACHE, persist_result=False)
def build_tables_task(data: StudyData) -> Analysis:
    """Compute every restricted table."""
    analysis = build_analysis(data)
    get_run_logger().info("built %d tables; survey status %s", len(analysis.tables),
                          analysis.survey_status)
    return analysis


@task(name="suppress-small-numbers", cache_policy=NO_CACHE, persist_result=False)
def suppress_tables_task(analysis: Analysis, threshold: int) -> dict[str, pl.DataFrame]:
    """Apply small-number suppression to every table."""
    return publication_tables(analysis.tables, threshold)


@task(name="write-outputs", cache_policy=NO_CACHE, persist_result=False)
def write_outputs_task(out: Path, analysis: Analysis, publication: dict[str, pl.DataFrame],
                       data: StudyData, settings: Settings) -> WrittenOutputs:
    """Write tables, charts, workbook, report and manifest, then move them into place."""
    context = make_context(settings, data.extracts, data.waves, datetime.now(UTC))
    return write_outputs(out, analysis, publication, context)


@task(name="publish-artifacts", cache_policy=NO_CACHE, persist_result=False)
def publish_artifacts_task(publication: dict[str, pl.DataFrame], written: WrittenOutputs) -> None:
    """Headline publication tables as table artifacts and the report location as markdown."""
    for name in HEADLINE_TABLES:
        create_table_artifact(table=publication[name].to_dicts(),
                              key=f"analysis-{name.replace('_', '-')}",
                              description=f"{name} (publication figures: small numbers shown as c)")
    create_markdown_artifact(
        key="analysis-report",
        markdown=(f"# Analysis written\n\n* report: `{written.report}`\n"
                  f"* workbook: `{written.workbook}`\n"
                  f"* tables: {len(written.manifest['tables'])} restricted and publication\n"
                  f"* survey: {written.manifest['survey_status']}\n"),
        description="Where the analysis report is",
    )


@task(name="record-analysis", cache_policy=NO_CACHE, persist_result=False)
def record_analysis_task(engine: Engine, cluster: str, written: WrittenOutputs) -> None:
    """Register the output folder for retention and append an audit entry."""
    with engine.begin() as conn:
        record_analysis_run(conn, cluster, written.out, written.manifest, flow_run.get_id())


@flow(name=flow_names.ANALYSE, persist_result=False)
def analyse_flow(out: str) -> dict[str, Any]:
    """Write the analysis of the in-window study population and the survey.

    Args:
        out: output folder; created, or replaced when it holds an earlier analysis. It gets
            ``restricted/`` (exact tables), ``publication/`` (suppressed tables), ``charts/``,
            ``analysis.xlsx``, ``report.html`` and ``manifest.json``.
    """
    runtime = current_runtime()
    folder = Path(out)
    check_output_folder(folder)
    data = load_study_data_task(runtime.engine, runtime.cluster)
    analysis = build_tables_task(data)
    publication = suppress_tables_task(analysis, runtime.settings.disclosure.threshold)
    written = write_outputs_task(folder, analysis, publication, data, runtime.settings)
    publish_artifacts_task(publication, written)
    record_analysis_task(runtime.engine, runtime.cluster, written)
    return summarise(written)


def summarise(written: WrittenOutputs) -> dict[str, Any]:
    """The command result: where things are and what they hold (no personal data)."""
    manifest = written.manifest
    return {
        "out": str(written.out),
        "report": str(written.report),
        "workbook": str(written.workbook),
        "tables": len(manifest["tables"]),
        "survey_status": manifest["survey_status"],
        "notes": manifest["notes"],
    }


