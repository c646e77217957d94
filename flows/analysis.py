"""Analysis flow: study data -> restricted and publication tables -> charts, workbook, report.

Its artifacts are the publication-safe (suppressed) figures only; the exact tables stay in
``restricted/`` of the output folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from tasks.core.flowrun import project_flow
from tasks.core.runtime import current_runtime
from tasks.core.secrets import TRANSCRIPT_KEY
from tasks.survey.fieldwork import uk_today


def _summary(result: Mapping[str, Any]) -> str:
    qualitative = result.get("qualitative") or {}
    strand = (f"{qualitative['themes']} themes, {qualitative['coded_segments']} coded segments"
              if qualitative.get("status") == "analysed"
              else str(qualitative.get("status") or "no_coded_segments").replace("_", " "))
    return (f"{result['tables']} tables written (restricted and publication); survey: "
            f"{str(result['survey_status']).replace('_', ' ')}; qualitative strand: {strand}; "
            f"{len(result['notes'])} note(s)")


@project_flow(flow_names.ANALYSE, run_name=lambda p: f"analyse {uk_today()}", summary=_summary)
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
    threshold = runtime.settings.disclosure.threshold
    folder = Path(out)
    check_output_folder(folder)
    data = read_study_data(runtime.engine, runtime.cluster)
    analysis = build_tables(data, EstimatorOptions.from_settings(runtime.settings.survey),
                            MeasureOptions.from_settings(runtime.settings))
    publication = suppress_small_numbers(analysis, threshold)
    simulated = responses_are_simulated(runtime.engine, runtime.cluster)
    qualitative = read_qualitative_data(runtime.engine, runtime.cluster,
                                        runtime.secrets.key_if_any(TRANSCRIPT_KEY),
                                        runtime.settings.qualitative.codebook)
    framework = build_framework_matrices(qualitative, runtime.settings.qualitative.max_quote_words,
                                         runtime.cluster, threshold)
    written = write_analysis(folder, analysis, publication, data, runtime.settings, simulated,
                             framework)
    publish_artifacts(runtime.cluster, threshold, publication, written)
    record_analysis(runtime.engine, runtime.cluster, written)
    return summarise(written)
