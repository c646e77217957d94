"""Key-findings sentences written from the publication (suppressed) tables.

Every number in a sentence is a published cell, and the sentence carries where it came from
(:class:`Ref`: table, row, column and the text shown), so a test can check each number against
the publication table. A figure that is suppressed ("c") or a table that is not in this
analysis is never worked around: the sentence says the figure is not published, or is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from tasks.analysis.disclosure import SUPPRESSED
from tasks.analysis.labels import label

Publication = Mapping[str, pl.DataFrame]


@dataclass(frozen=True)
class Ref:
    """Where a number of a sentence comes from: publication table, row index, column, text."""

    table: str
    row: int
    column: str
    text: str


@dataclass(frozen=True)
class Finding:
    """One key-findings sentence and the published cells its numbers come from."""

    text: str
    refs: tuple[Ref, ...] = ()


def _published(value: object) -> bool:
    """Whether a publication cell holds a figure (not suppressed, not empty)."""
    return value is not None and str(value) not in ("", SUPPRESSED)


def cell(pub: Publication, table: str, column: str, **where: str) -> Ref | None:
    """The first row of ``table`` matching ``where`` as a Ref, or None when it is not published."""
    df = pub.get(table)
    if df is None or column not in df.columns:
        return None
    for index, row in enumerate(df.iter_rows(named=True)):
        if all(str(row.get(key)) == value for key, value in where.items()):
            value = row[column]
            return Ref(table, index, column, str(value)) if _published(value) else None
    return None


def largest(pub: Publication, table: str, code: str, column: str,
            exclude: Sequence[str] = ()) -> tuple[str, Ref] | None:
    """The code with the largest published count in ``column`` (ties: first in table order)."""
    df = pub.get(table)
    if df is None or code not in df.columns or column not in df.columns:
        return None
    best: tuple[str, Ref, float] | None = None
    for index, row in enumerate(df.iter_rows(named=True)):
        value = row[column]
        if str(row[code]) in exclude or not _published(value):
            continue
        number = float(value)
        if number > 0 and (best is None or number > best[2]):
            best = (str(row[code]), Ref(table, index, column, str(value)), number)
    return None if best is None else (best[0], best[1])


def _say(template: str, *refs: Ref | None, otherwise: str = "") -> Finding | None:
    """``template`` filled with the refs' texts, or ``otherwise`` (no numbers) if one is missing."""
    if any(ref is None for ref in refs):
        return Finding(otherwise) if otherwise else None
    found = tuple(ref for ref in refs if ref is not None)
    return Finding(template.format(*(ref.text for ref in found)), found)


def _population(pub: Publication) -> list[Finding | None]:
    return [
        _say("The study population is {} families with {} episodes open to the Cluster in "
             "the study window.", cell(pub, "population", "families"),
             cell(pub, "population", "episodes"),
             otherwise="The size of the study population is not published (small numbers)."),
        _say("{} of the episodes were closed by the end of the data.",
             cell(pub, "population", "closed_episodes")),
    ]


def rq_1a(pub: Publication) -> list[Finding | None]:
    """Referral routes and outcomes at case closure."""
    found = _population(pub)
    route = largest(pub, "referral_routes", "referral_route", "episodes")
    if route:
        code, ref = route
        found.append(_say("The most common referral route was " + label(code).lower()
                          + " ({} episodes, {}%).", ref,
                          cell(pub, "referral_routes", "percent", referral_route=code)))
    outcome = largest(pub, "closure_outcomes", "closure_outcome", "episodes")
    found.append(_say(
        "The most common outcome at closure was " + label(outcome[0]).lower()
        + " ({} closed episodes).", outcome[1]) if outcome else
        Finding("Outcomes at closure are not published in detail (small numbers)."))
    found.append(_say(
        "{} of the {} families whose episode closed were referred to the Cluster again within "
        "a year ({}%).", cell(pub, "re_referrals", "re_referred_within_12_months"),
        cell(pub, "re_referrals", "families_with_closed_episode"),
        cell(pub, "re_referrals", "percent")))
    found.append(_say(
        "{} closed episodes were referred on to children's social care.",
        cell(pub, "onward_referrals", "episodes", onward_referral="childrens_social_care"),
        otherwise="Onward referrals to children's social care are not published (small "
                  "numbers)."))
    return found


def rq_1b(pub: Publication) -> list[Finding | None]:
    """Short-term specialist (RES Team, Early Help Hub) intervention and its outcomes."""
    found: list[Finding | None] = []
    for service in ("res_team", "early_help_hub"):
        found.append(_say(
            "{} referrals to the " + label(service) + " returned to the Cluster.",
            cell(pub, "specialist_referrals", "referrals", service=service,
                 outcome="returned_to_cluster")))
    found.append(_say("{} of the ended specialist referrals ({}%) returned to the Cluster.",
                      cell(pub, "delivery_indicators", "n", indicator="specialist_returned",
                           result="yes"),
                      cell(pub, "delivery_indicators", "percent",
                           indicator="specialist_returned", result="yes")))
    issue = largest(pub, "stepped_up_issues", "issue", "episodes")
    found.append(_say(
        "Among episodes with a specialist referral, the most common presenting issue was "
        + label(issue[0]).lower() + " ({} episodes).", issue[1]) if issue else
        Finding("The presenting issues of episodes with a specialist referral are not "
                "published in detail (small numbers)."))
    return found


def rq_1c(pub: Publication) -> list[Finding | None]:
    """Delivery as intended: time to allocation, goals, length of support."""
    return [
        _say("{}% of episodes were allocated within the target time.",
             cell(pub, "delivery_indicators", "percent", indicator="allocation",
                  result="within_target")),
        _say("{}% of episodes had goals recorded, and {}% of those with goals had a goal "
             "reviewed.", cell(pub, "delivery_indicators", "percent", indicator="goals_recorded",
                               result="yes"),
             cell(pub, "delivery_indicators", "percent", indicator="goals_reviewed",
                  result="yes")),
        _say("Counting episodes still open, the Kaplan-Meier median length of support was {} "
             "days (confidence interval {} to {}).",
             cell(pub, "length_of_support_km", "median_days"),
             cell(pub, "length_of_support_km", "median_ci_low"),
             cell(pub, "length_of_support_km", "median_ci_high")),
        _say("The median time from referral to allocation was {} days ({} allocated "
             "episodes).", cell(pub, "days_to_allocation", "median_days"),
             cell(pub, "days_to_allocation", "n"),
             otherwise="The time from referral to allocation is not published (small "
                       "numbers)."),
        _say("{} episodes had no allocation date.", cell(pub, "days_to_allocation",
                                                          "not_allocated")),
        _say("Closed episodes lasted a median of {} days (lower quartile {}, upper quartile "
             "{}).", cell(pub, "length_of_support", "median_days"),
             cell(pub, "length_of_support", "q1_days"),
             cell(pub, "length_of_support", "q3_days"),
             otherwise="The length of support of closed episodes is not published (small "
                       "numbers)."),
    ]


def rq_2a(pub: Publication) -> list[Finding | None]:
    """How and under what circumstances support works: goal scores by area."""
    area = largest(pub, "goal_score_change", "goal_area", "reviewed")
    if not area:
        return [Finding("Goal scaling scores are not published by goal area (small numbers).")]
    code, ref = area
    return [_say("Of the goal areas, " + label(code).lower() + " had the most reviewed goals "
                 "({}), with a mean change in score of {} points.", ref,
                 cell(pub, "goal_score_change", "mean_change", goal_area=code))]


def rq_2b(pub: Publication) -> list[Finding | None]:
    """Perceived impacts: ONS4 wellbeing and the scaling questions."""
    found: list[Finding | None] = []
    for measure in ("q1_life_satisfaction", "q4_anxious_yesterday"):
        found.append(_say(
            label(measure) + ": weighted mean {} (confidence interval {} to {}) against "
            "the UK mean of {}.",
            cell(pub, "ons4", "weighted_mean", measure=measure),
            cell(pub, "ons4", "ci_low", measure=measure),
            cell(pub, "ons4", "ci_high", measure=measure),
            cell(pub, "ons4", "uk_mean", measure=measure),
            otherwise=label(measure) + ": the mean is not published (too few respondents)."))
    found.append(_say(
        "Families rated their relationship with the worker at a mean score of {}.",
        cell(pub, "scaling_questions", "mean", question="q8_worker_relationship")))
    return found


def rq_2c(pub: Publication) -> list[Finding | None]:
    """Unintended consequences: the survey's negative-effects question."""
    return [_say("{} respondents ({}%) said something about getting support made things "
                 "harder.", cell(pub, "negative_effects", "respondents", answer="yes"),
                 cell(pub, "negative_effects", "percent", answer="yes"),
                 otherwise="How many respondents said support made things harder is not "
                           "published (small numbers).")]


def summary(pub: Publication) -> list[Finding | None]:
    """The one-page summary's figures."""
    return [
        *_population(pub)[:1],
        _say("{} households were issued the survey in the first wave and {} responded (response rate "
             "{}).", cell(pub, "response_rates", "issued", wave="1", stratum="all"),
             cell(pub, "response_rates", "responded", wave="1", stratum="all"),
             cell(pub, "response_rates", "response_rate", wave="1", stratum="all"),
             otherwise="The survey response figures are not published in full (small "
                       "numbers)."),
    ]


#: Key findings per research question (the key is the report section's).
FINDERS: dict[str, Callable[[Publication], list[Finding | None]]] = {
    "1a": rq_1a, "1b": rq_1b, "1c": rq_1c, "2a": rq_2a, "2b": rq_2b, "2c": rq_2c,
    "summary": summary,
}


def key_findings(pub: Publication) -> dict[str, list[Finding]]:
    """The key-findings sentences of every research question and of the summary."""
    return {key: [f for f in finder(pub) if f is not None] for key, finder in FINDERS.items()}
