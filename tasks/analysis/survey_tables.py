"""Tables from the survey: response rates, the non-response check, ONS4, scaling questions, q9."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from typing import Any

import polars as pl

from schemas.codes import (
    ETHNICITY_CODES,
    ONS4_MEASURES,
    PREFERRED_CONTACT,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SCALING_QUESTIONS,
)
from tasks.analysis.counts import HOUSEHOLD_SIZE_BANDS, code_counts, household_size_band
from tasks.analysis.registry import ALL, NOT_RECORDED
from tasks.analysis.stats import (
    ONS4_BANDS_ANXIETY,
    ONS4_BANDS_POSITIVE,
    EstimatorOptions,
    band_counts,
    mean,
    percent,
    quartiles,
    round_half_up,
    stratified_estimate,
)
from tasks.analysis.study_data import StudyData
from tasks.core.errors import UserFacingError

NEGATIVE_EFFECT_ANSWERS = ("yes", "no", "not_answered")
STRATUM_CODES: dict[str, tuple[str, ...]] = {
    "primary_issue": PRESENTING_ISSUES,
    "referral_route": REFERRAL_ROUTE,
    "lead_carer_ethnicity": ETHNICITY_CODES,
}


def ons4_reference() -> dict[str, float]:
    """UK ONS4 means (APS, year ending March 2022) from ``schemas/ons4_uk.csv``."""
    text = (files("schemas") / "ons4_uk.csv").read_bytes()
    ref = pl.read_csv(BytesIO(text), schema_overrides={"uk_mean": pl.Float64})
    return dict(zip(ref["measure"].to_list(), ref["uk_mean"].to_list(), strict=True))


def _stratum_order(strata: Iterable[str], stratify_by: str | None) -> list[str]:
    """Strata in code-list order of the stratifying field, unknown ones after them sorted."""
    known = STRATUM_CODES.get(stratify_by or "", ())
    present = set(strata)
    return [s for s in known if s in present] + sorted(present - set(known))


def _stratify_by(waves: pl.DataFrame) -> str | None:
    """The stratifying field of the first wave, None before any wave."""
    return waves["stratify_by"][0] if waves.height else None


def frame_sizes(strata: pl.DataFrame) -> dict[str, int]:
    """N_h per stratum: wave 1's frame sizes; a stratum missing there takes its largest later."""
    first: dict[str, int] = {}
    later: dict[str, int] = {}
    for wave, stratum, n in strata.select("wave", "stratum", "frame_n").iter_rows():
        if wave == 1:
            first[stratum] = n
        else:
            later[stratum] = max(later.get(stratum, 0), n)
    return {**later, **first}


def respondent_rows(survey: pl.DataFrame) -> pl.DataFrame:
    """The sampled households that responded and have not withdrawn."""
    return survey.filter((pl.col("responded") == 1) & (pl.col("withdrawn") == 0))


def _rate(responded: int, issued: int) -> float | None:
    """Response rate as a proportion, 3 decimals; None when nothing was issued."""
    return round_half_up(responded / issued, 3) if issued else None


def response_rates_table(survey: pl.DataFrame, strata: pl.DataFrame,
                         waves: pl.DataFrame) -> pl.DataFrame:
    """Issued, responded and response rate per wave and stratum, plus each wave's total."""
    out = []
    wave_list = sorted(set(waves["wave"].to_list()) | set(survey["wave"].to_list()))
    for wave in wave_list:
        in_wave = survey.filter(pl.col("wave") == wave)
        names = set(strata.filter(pl.col("wave") == wave)["stratum"].to_list())
        names |= set(in_wave["stratum"].to_list())
        for stratum in _stratum_order(names, _stratify_by(waves)):
            part = in_wave.filter(pl.col("stratum") == stratum)
            issued, responded = part.height, int(part["responded"].sum())
            out.append((wave, stratum, issued, responded, _rate(responded, issued)))
        issued, responded = in_wave.height, int(in_wave["responded"].sum())
        out.append((wave, ALL, issued, responded, _rate(responded, issued)))
    schema = {"wave": pl.Int64, "stratum": pl.String, "issued": pl.Int64, "responded": pl.Int64,
              "response_rate": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def response_rates_by_route_table(survey: pl.DataFrame, waves: pl.DataFrame) -> pl.DataFrame:
    """Issued, responded and response rate per wave and contact route."""
    out = []
    routes = list(PREFERRED_CONTACT) + sorted(set(survey["route"]) - set(PREFERRED_CONTACT))
    for wave in sorted(set(waves["wave"].to_list()) | set(survey["wave"].to_list())):
        in_wave = survey.filter(pl.col("wave") == wave)
        for route in routes:
            part = in_wave.filter(pl.col("route") == route)
            issued, responded = part.height, int(part["responded"].sum())
            out.append((wave, route, issued, responded, _rate(responded, issued)))
    schema = {"wave": pl.Int64, "route": pl.String, "issued": pl.Int64, "responded": pl.Int64,
              "response_rate": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def family_characteristics(data: StudyData) -> dict[str, dict[str, str | None]]:
    """Per family: referral route of its first in-window episode, ethnicity, household size."""
    first_route: dict[str, str] = {}
    ordered = data.episodes.sort("family_pid", "referral_date", "episode_pid")
    for family, route in ordered.select("family_pid", "referral_route").iter_rows():
        first_route.setdefault(family, route)
    out: dict[str, dict[str, str | None]] = {}
    for family, ethnicity, size in data.families.select(
            "family_pid", "lead_carer_ethnicity", "household_size").iter_rows():
        out[family] = {"referral_route": first_route.get(family),
                       "lead_carer_ethnicity": ethnicity,
                       "household_size": household_size_band(size)}
    return out


def nonresponse_check_table(data: StudyData) -> pl.DataFrame:
    """Frame, issued and respondents side by side on stratum, route, ethnicity and size."""
    traits = family_characteristics(data)
    issued = data.survey
    responded = respondent_rows(data.survey)
    out: list[tuple[Any, ...]] = []

    def add(characteristic: str, counts: list[tuple[str, int, int, int]]) -> None:
        totals = (sum(c[1] for c in counts), sum(c[2] for c in counts), sum(c[3] for c in counts))
        for category, frame, iss, resp in counts:
            out.append((characteristic, category, frame, percent(frame, totals[0]), iss,
                        percent(iss, totals[1]), resp, percent(resp, totals[2])))

    sizes = {s: n for w, s, n in data.strata.select("wave", "stratum", "frame_n").iter_rows()
             if w == 1}
    issued_by = Counter(issued["stratum"].to_list())
    resp_by = Counter(responded["stratum"].to_list())
    names = _stratum_order(set(sizes) | set(issued_by), _stratify_by(data.waves))
    add("stratum", [(s, sizes.get(s, 0), issued_by.get(s, 0), resp_by.get(s, 0)) for s in names])

    for characteristic, codes in (("referral_route", REFERRAL_ROUTE),
                                  ("lead_carer_ethnicity", ETHNICITY_CODES),
                                  ("household_size", HOUSEHOLD_SIZE_BANDS)):
        def values(families: Iterable[str], key: str = characteristic) -> list[str | None]:
            return [traits.get(f, {}).get(key) for f in families]

        frame_c = dict(code_counts(values(traits), codes, not_recorded=True))
        iss_c = dict(code_counts(values(issued["family_pid"]), codes, not_recorded=True))
        resp_c = dict(code_counts(values(responded["family_pid"]), codes, not_recorded=True))
        keep = [*codes] + ([NOT_RECORDED] if frame_c[NOT_RECORDED] or iss_c[NOT_RECORDED] else [])
        add(characteristic, [(c, frame_c[c], iss_c[c], resp_c[c]) for c in keep])
    schema = {"characteristic": pl.String, "category": pl.String, "frame": pl.Int64,
              "frame_percent": pl.Float64, "issued": pl.Int64, "issued_percent": pl.Float64,
              "respondents": pl.Int64, "respondents_percent": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


@dataclass(frozen=True)
class Ons4Result:
    """The ONS4 tables and the strata that had a single respondent, per measure."""

    ons4: pl.DataFrame
    strata: pl.DataFrame
    bands: pl.DataFrame
    single_respondent_strata: dict[str, tuple[str, ...]]


def ons4_tables(survey: pl.DataFrame, strata: pl.DataFrame, waves: pl.DataFrame,
                reference: Mapping[str, float],
                options: EstimatorOptions | None = None) -> Ons4Result:
    """Unweighted and design-weighted ONS4 means with SE and CI, per-stratum detail, bands.

    ``options`` are the estimator's choices (settings ``survey.lonely_stratum`` and
    ``survey.ci``; default certainty and normal), see ``stats.stratified_estimate``.
    """
    respondents = respondent_rows(survey)
    sizes = frame_sizes(strata)
    names = _stratum_order(set(sizes) | set(respondents["stratum"]), _stratify_by(waves))
    main, detail, band_rows = [], [], []
    singles: dict[str, tuple[str, ...]] = {}
    for measure in ONS4_MEASURES:
        by_stratum = {s: respondents.filter(pl.col("stratum") == s)[measure].to_list()
                      for s in names}
        try:
            est = stratified_estimate(by_stratum, sizes, options)
        except ValueError as exc:
            raise UserFacingError(f"survey weights for {measure}: {exc}") from None
        singles[measure] = est.single_respondent_strata
        main.append((measure, est.respondents, est.mean, est.weighted_mean, est.standard_error,
                     est.ci_low, est.ci_high, reference.get(measure)))
        for stratum in names:
            answered = [v for v in by_stratum[stratum] if v is not None]
            detail.append((measure, stratum, sizes.get(stratum, 0), len(answered),
                           round_half_up(mean(answered), 3) if answered else None))
        answered_all = [v for v in respondents[measure].to_list() if v is not None]
        bands = ONS4_BANDS_ANXIETY if measure == "q4_anxious_yesterday" else ONS4_BANDS_POSITIVE
        for band, count in band_counts(answered_all, bands):
            band_rows.append((measure, band, count, percent(count, len(answered_all))))
    ons4 = pl.DataFrame(main, orient="row", schema={
        "measure": pl.String, "respondents": pl.Int64, "mean": pl.Float64,
        "weighted_mean": pl.Float64, "standard_error": pl.Float64, "ci_low": pl.Float64,
        "ci_high": pl.Float64, "uk_mean": pl.Float64})
    detail_df = pl.DataFrame(detail, orient="row", schema={
        "measure": pl.String, "stratum": pl.String, "frame_n": pl.Int64, "respondents": pl.Int64,
        "mean": pl.Float64})
    bands_df = pl.DataFrame(band_rows, orient="row", schema={
        "measure": pl.String, "band": pl.String, "respondents": pl.Int64, "percent": pl.Float64})
    return Ons4Result(ons4, detail_df, bands_df, singles)


def scaling_tables(survey: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Summaries (mean, median, quartiles) and bands of the scaling questions q5-q8."""
    respondents = respondent_rows(survey)
    summary, band_rows = [], []
    for question in SCALING_QUESTIONS:
        answered = [v for v in respondents[question].to_list() if v is not None]
        figures: list[float | None] = [None] * 4
        if answered:
            q1, median, q3 = quartiles(answered)
            figures = [round_half_up(x, 2) for x in (mean(answered), median, q1, q3)]
        summary.append((question, len(answered), *figures))
        for band, count in band_counts(answered, ONS4_BANDS_POSITIVE):
            band_rows.append((question, band, count, percent(count, len(answered))))
    summary_df = pl.DataFrame(summary, orient="row", schema={
        "question": pl.String, "respondents": pl.Int64, "mean": pl.Float64,
        "median": pl.Float64, "q1": pl.Float64, "q3": pl.Float64})
    bands_df = pl.DataFrame(band_rows, orient="row", schema={
        "question": pl.String, "band": pl.String, "respondents": pl.Int64, "percent": pl.Float64})
    return summary_df, bands_df


def negative_effects_table(survey: pl.DataFrame) -> pl.DataFrame:
    """q9 answers: yes, no, not answered; percent of those who answered."""
    answers = respondent_rows(survey)["q9_negative_effects"].to_list()
    yes, no = answers.count(1), answers.count(0)
    missing = len(answers) - yes - no
    return pl.DataFrame(
        list(zip(NEGATIVE_EFFECT_ANSWERS, (yes, no, missing),
                 (percent(yes, yes + no), percent(no, yes + no), None), strict=True)),
        schema={"answer": pl.String, "respondents": pl.Int64, "percent": pl.Float64},
        orient="row",
    )

