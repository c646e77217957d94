"""Thin Prefect tasks of the analysis stage (the names the Prefect UI shows) and the command result."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from sqlalchemy import Engine

from tasks.analysis.folder import check_output_dir
from tasks.analysis.framework import Framework, QualitativeData, build_framework, load_qualitative, read_codebook_order
from tasks.analysis.manifest import make_context
from tasks.analysis.measures import MeasureOptions
from tasks.analysis.outputs import WrittenOutputs, record_analysis_run, write_outputs
from tasks.analysis.publication import disclosure_audit, publication_tables
from tasks.analysis.stats import EstimatorOptions
from tasks.analysis.study_data import StudyData, load_study_data
from tasks.analysis.tables import Analysis, build_analysis
from tasks.core.db import query
from tasks.core.errors import UserFacingError
from tasks.core.prefect import artifact_key, stage_task
from tasks.core.settings import Settings

#: Publication tables shown as Prefect table artifacts (suppressed figures only).
HEADLINE_TABLES = ("population", "referral_routes", "presenting_issues", "closure_outcomes",
                   "onward_referrals", "length_of_support", "ons4", "response_rates")


def publication_safe(threshold: int) -> str:
    """What an analysis artifact shows, and why (README "What the Prefect UI may show")."""
    return (f"publication-safe figures: counts below {threshold} suppressed (shown as c), as in "
            "publication/; counts only, no personal data")


def publishable_count(count: int, threshold: int) -> int | str:
    """A count as the publication tables show it: 1 to threshold-1 suppressed as ``c``."""
    return "c" if 0 < count < threshold else count


@stage_task("check-output-folder")
def check_output_folder(out: Path) -> str:
    """Refuse an output folder that holds anything but an earlier analysis."""
    return check_output_dir(out.resolve())


@stage_task("load-study-data")
def read_study_data(engine: Engine, cluster: str) -> StudyData:
    """Read the in-window study population and the survey of the cluster."""
    with engine.connect() as conn:
        return load_study_data(conn, cluster)


@stage_task("build-tables")
def build_tables(data: StudyData, estimator: EstimatorOptions | None = None,
                 measures: MeasureOptions | None = None) -> Analysis:
    """Compute every restricted table (survey estimator options from settings ``survey``)."""
    analysis = build_analysis(data, estimator=estimator, measures=measures)
    get_run_logger().info("built %d tables; survey status %s", len(analysis.tables),
                          analysis.survey_status)
    return analysis


@stage_task("suppress-small-numbers")
def suppress_small_numbers(analysis: Analysis, threshold: int) -> dict[str, pl.DataFrame]:
    """Apply small-number suppression to every table."""
    return publication_tables(analysis.tables, threshold)


@stage_task("check-simulated-responses")
def responses_are_simulated(engine: Engine, cluster: str) -> bool:
    """Whether survey responses came from a demo's SIMULATED-... file (the report says so)."""
    with engine.connect() as conn:
        return bool(conn.execute(query("analysis_simulated_imports"),
                                 {"cluster": cluster}).scalar_one())


@stage_task("read-qualitative-data")
def read_qualitative_data(engine: Engine, cluster: str, key: bytes | None,
                          codebook: Path | None) -> QualitativeData:
    """Read the register, codes, coded segments and (decrypted in memory) transcript turns."""
    with engine.connect() as conn:
        return load_qualitative(conn, cluster, key, read_codebook_order(codebook))


@stage_task("build-framework-matrices")
def build_framework_matrices(data: QualitativeData, max_quote_words: int, cluster: str,
                             threshold: int) -> Framework:
    """Framework matrices, counts, triangulation and the report's words and quotes."""
    framework = build_framework(data, max_quote_words)
    shown = {key: publishable_count(value, threshold) if key == "participants" else value
             for key, value in framework.summary().items()}
    create_table_artifact(table=[shown], key=artifact_key(cluster, "analysis-qualitative"),
                          description="Qualitative strand: themes, coded segments and participants not "
                                      f"withdrawn; {publication_safe(threshold)}")
    get_run_logger().info("qualitative strand: %s, %d themes, %d coded segments",
                          framework.status, len(framework.matrices), framework.coded_segments)
    return framework


@stage_task("write-outputs")
def write_analysis(out: Path, analysis: Analysis, publication: dict[str, pl.DataFrame],
                   data: StudyData, settings: Settings, simulated: bool = False,
                   framework: Framework | None = None) -> WrittenOutputs:
    """Write tables, charts, workbook, report and manifest, then move them into place."""
    context = make_context(settings, data.extracts, data.waves, datetime.now(UTC), simulated)
    audit = disclosure_audit(analysis.tables, publication, settings.disclosure.threshold)
    if not audit["pass"]:
        failed = [s["set"] for s in audit["sets"] if not s["pass"]]
        raise UserFacingError(f"disclosure audit failed for linked set(s) {failed}: a suppressed "
                              "figure can be worked out across tables; nothing was written, "
                              "report this as a bug")
    context = replace(context, disclosure_audit=audit)
    return write_outputs(out, analysis, publication, context, framework)


@stage_task("publish-artifacts")
def publish_artifacts(cluster: str, threshold: int, publication: dict[str, pl.DataFrame],
                      written: WrittenOutputs) -> None:
    """Headline publication tables (suppressed) as table artifacts and the report location as markdown."""
    for name in HEADLINE_TABLES:
        create_table_artifact(table=publication[name].to_dicts(),
                              key=artifact_key(cluster, f"analysis-{name}"),
                              description=f"{name}: {publication_safe(threshold)}")
    create_markdown_artifact(
        key=artifact_key(cluster, "analysis-report"),
        markdown=(f"# Analysis written\n\n* report: `{written.report}`\n"
                  f"* workbook: `{written.workbook}`\n"
                  f"* tables: {len(written.manifest['tables'])} restricted and publication\n"
                  f"* survey: {written.manifest['survey_status']}\n"),
        description="Where the analysis report is (file locations and table counts; no figures, "
                    "no personal data)",
    )


@stage_task("record-analysis")
def record_analysis(engine: Engine, cluster: str, written: WrittenOutputs) -> None:
    """Register the output folder for retention and append an audit entry."""
    with engine.begin() as conn:
        record_analysis_run(conn, cluster, written.out, written.manifest, flow_run.get_id())


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
        "qualitative": {k: manifest["qualitative"][k] for k in ("status", "themes", "coded_segments")},
    }
