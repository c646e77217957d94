"""Analysis flow: study data -> restricted and publication tables -> charts, workbook, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from tasks.analysis.measures import MeasureOptions
from tasks.analysis.stats import EstimatorOptions
from tasks.analysis.steps import (
    build_framework_matrices,
    build_tables,
    check_output_folder,
    publish_artifacts,
    read_qualitative_data,
    read_study_data,
    record_analysis,
    responses_are_simulated,
    summarise,
    suppress_small_numbers,
    write_analysis,
)
from tasks.core import flow_names
from tasks.core.runtime import current_runtime
from tasks.core.secrets import TRANSCRIPT_KEY


@flow(name=flow_names.ANALYSE, persist_result=False)
def analyse_flow(out: str) -> dict[str, Any]:
    """Write the analysis of the in-window study population and the survey.

    Args:
        out: output folder; created, or replaced when it holds an earlier analysis. It gets
            ``restricted/`` (exact tables), ``publication/`` (suppressed tables), ``charts/``,
            ``analysis.xlsx``, ``report.html``, ``report.docx`` and ``manifest.json``. Once the
            qualitative strand is coded, ``restricted/`` also gets the Framework matrices
            (``framework/<theme>.csv``, ``framework.xlsx``), ``framework_counts.csv`` and
            ``triangulation.csv``, and the report what families and practitioners said.
    """
    runtime = current_runtime()
    folder = Path(out)
    check_output_folder(folder)
    data = read_study_data(runtime.engine, runtime.cluster)
    analysis = build_tables(data, EstimatorOptions.from_settings(runtime.settings.survey),
                            MeasureOptions.from_settings(runtime.settings))
    publication = suppress_small_numbers(analysis, runtime.settings.disclosure.threshold)
    simulated = responses_are_simulated(runtime.engine, runtime.cluster)
    qualitative = read_qualitative_data(runtime.engine, runtime.cluster,
                                        runtime.secrets.key_if_any(TRANSCRIPT_KEY),
                                        runtime.settings.qualitative.codebook)
    framework = build_framework_matrices(qualitative, runtime.settings.qualitative.max_quote_words)
    written = write_analysis(folder, analysis, publication, data, runtime.settings, simulated,
                             framework)
    publish_artifacts(publication, written)
    record_analysis(runtime.engine, runtime.cluster, written)
    return summarise(written)
