"""The protocol's tables: database -> polars frames -> restricted and publication tables.

Plain functions, no Prefect, no files. ``tasks.analysis.study_data.load_study_data`` reads one
cluster; ``build_analysis`` turns the frames into the restricted tables (exact figures), built in
``tasks.analysis.case_tables``, ``tasks.analysis.survey_tables`` and
``tasks.analysis.measures`` (referrals received, re-referrals, Kaplan-Meier length of support,
delivery indicators; options from settings ``study`` and ``delivery``) and listed in
``tasks.analysis.registry.TABLES``; ``tasks.analysis.publication`` formats them with fixed
decimals and applies small-number suppression.

Conventions (the report's methods section says the same):

* the population is the in-window episodes (extract-v1.md section 2), their families and
  those families' children; closure, onward-referral and length-of-support tables use the
  closed in-window episodes;
* percentages: ``tasks.analysis.stats.percent`` of the table's own base, one decimal, halves up;
  published as whole numbers where the base is under 100 (``publication.whole_percents``);
* medians and quartiles: Hyndman-Fan type 7 (``tasks.analysis.stats.quartiles``, Excel QUARTILE.INC);
* every code of a table's code list is a row, 0 when none; ``not_recorded`` counts missing
  values (always shown in the demographics tables, only when non-zero elsewhere);
* rows are in code-list order, so two runs on the same data give identical tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import polars as pl

from tasks.analysis.case_tables import (
    closure_outcomes_table,
    closure_referrals_table,
    days_to_allocation_table,
    demographics_tables,
    goal_score_change_table,
    issues_by_service_table,
    length_of_support_bands_table,
    length_of_support_by_issue_table,
    length_of_support_by_service_table,
    length_of_support_table,
    onward_referrals_table,
    population_table,
    presenting_issues_table,
    referral_routes_table,
    specialist_reasons_table,
    specialist_referrals_table,
    stepped_up_issues_table,
)
from tasks.analysis.measures import MeasureOptions, measure_tables, resolve_data_as_of
from tasks.analysis.registry import TABLES
from tasks.analysis.stats import LONELY_EFFECT, EstimatorOptions
from tasks.analysis.study_data import StudyData
from tasks.analysis.survey_tables import (
    negative_effects_table,
    nonresponse_check_table,
    ons4_reference,
    ons4_tables,
    respondent_rows,
    response_rates_by_route_table,
    response_rates_table,
    scaling_tables,
)
from tasks.core.errors import UserFacingError


@dataclass(frozen=True)
class Analysis:
    """Restricted tables in ``TABLES`` order plus what the report needs to say about them."""

    tables: dict[str, pl.DataFrame]
    issued: int
    respondents: int
    single_respondent_strata: dict[str, tuple[str, ...]]
    notes: tuple[str, ...]
    estimator: EstimatorOptions = EstimatorOptions()
    #: window, delivery target and data_as_of (resolved: configured or the latest extract date)
    measures: MeasureOptions = MeasureOptions()

    @property
    def survey_status(self) -> str:
        """``no_sample``, ``no_responses`` or ``responses``."""
        if not self.issued:
            return "no_sample"
        return "responses" if self.respondents else "no_responses"


def build_analysis(data: StudyData, reference: Mapping[str, float] | None = None,
                   estimator: EstimatorOptions | None = None,
                   measures: MeasureOptions | None = None) -> Analysis:
    """Every restricted table from the study data; UserFacingError when there is no population."""
    if data.episodes.height == 0:
        raise UserFacingError(
            "the study population is empty: no in-window episodes for this cluster; ingest an "
            "extract first (cluster-eval ingest FILE) or check study.window_start/window_end"
        )
    estimator = estimator or EstimatorOptions()
    measures = measures or MeasureOptions()
    measures = replace(measures, data_as_of=resolve_data_as_of(measures.data_as_of,
                                                               data.latest_date))
    tables, singles = _restricted_tables(data, reference or ons4_reference(), estimator, measures)
    issued = data.survey.height
    respondents = respondent_rows(data.survey).height
    notes = _notes(issued, respondents, int(data.episodes["closed"].sum()), singles,
                   estimator.lonely_stratum)
    return Analysis(tables, issued, respondents, singles, notes, estimator, measures)


def _restricted_tables(data: StudyData, reference: Mapping[str, float],
                       estimator: EstimatorOptions | None = None,
                       measures: MeasureOptions | None = None
                       ) -> tuple[dict[str, pl.DataFrame], dict[str, tuple[str, ...]]]:
    """Every restricted table in ``TABLES`` order (columns checked) and the single-respondent strata."""
    ep = data.episodes
    ons4 = ons4_tables(data.survey, data.strata, data.waves, reference, estimator)
    scaling, scaling_bands = scaling_tables(data.survey)
    tables: dict[str, pl.DataFrame] = {
        "population": population_table(data),
        "referral_routes": referral_routes_table(ep),
        "presenting_issues": presenting_issues_table(ep, data.issues),
        "presenting_issues_by_service": issues_by_service_table(data.issues, data.services),
        "closure_outcomes": closure_outcomes_table(ep),
        "onward_referrals": onward_referrals_table(ep),
        "closure_referrals": closure_referrals_table(ep),
        "length_of_support": length_of_support_table(ep),
        "length_of_support_bands": length_of_support_bands_table(ep),
        "length_of_support_by_issue": length_of_support_by_issue_table(ep),
        "length_of_support_by_service": length_of_support_by_service_table(ep, data.services),
        "days_to_allocation": days_to_allocation_table(ep),
        "goal_score_change": goal_score_change_table(data.goals),
        "specialist_referrals": specialist_referrals_table(data.specialist),
        "specialist_referral_reasons": specialist_reasons_table(data.specialist),
        "stepped_up_issues": stepped_up_issues_table(data.issues, data.specialist),
        **demographics_tables(data.families, data.children),
        "response_rates": response_rates_table(data.survey, data.strata, data.waves),
        "response_rates_by_route": response_rates_by_route_table(data.survey, data.waves),
        "nonresponse_check": nonresponse_check_table(data),
        "ons4": ons4.ons4,
        "ons4_strata": ons4.strata,
        "ons4_bands": ons4.bands,
        "scaling_questions": scaling,
        "scaling_bands": scaling_bands,
        "negative_effects": negative_effects_table(data.survey),
        **measure_tables(data, measures or MeasureOptions()),
    }
    ordered = {info.name: tables[info.name] for info in TABLES}
    for info in TABLES:
        if tuple(ordered[info.name].columns) != info.columns:
            raise AssertionError(f"table {info.name} has columns {ordered[info.name].columns}")
    return ordered, ons4.single_respondent_strata


def _notes(issued: int, respondents: int, closed: int,
           single_respondent_strata: Mapping[str, tuple[str, ...]],
           lonely_stratum: str = "certainty") -> tuple[str, ...]:
    """What the report says about missing survey data, closures and single-respondent strata."""
    notes: list[str] = []
    if not issued:
        notes.append("No survey wave has been drawn yet: the survey tables are empty and the "
                     "ONS4 rows show 0 respondents.")
    elif not respondents:
        notes.append("No survey responses have been imported yet: the ONS4 and scaling rows "
                     "show 0 respondents and no figures.")
    if not closed:
        notes.append("No in-window episode is closed yet: closure, onward-referral and length "
                     "of support tables are all zero.")
    for measure, singles in single_respondent_strata.items():
        if singles:  # counted, not named: the report is publication-safe
            notes.append(f"{measure}: {len(singles)} stratum(a) with a single respondent add "
                         f"{LONELY_EFFECT[lonely_stratum]} the standard error "
                         "(restricted/ons4_strata.csv).")
    return tuple(notes)
