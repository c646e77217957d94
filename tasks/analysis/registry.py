"""The table registry: every output table's file, sheet, section, title, meaning, columns and rules.

Tables are listed in report order. Which suppression rule a table follows is data here;
``tasks.analysis.publication`` applies the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.codes import (
    CLOSURE_OUTCOME,
    LEAD_WORKER_ROLE,
    ONWARD_REFERRAL,
    REFERRAL_ROUTE,
    SERVICES,
)

NOT_RECORDED = "not_recorded"
ALL = "all"
STATS_DAYS = ("mean_days", "median_days", "q1_days", "q3_days")


# --- suppression rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class OneWay:
    """Counts in ``column`` form one-way tables (per ``group_by`` group) with a published total.

    Primary and secondary suppression by ``tasks.analysis.disclosure.suppress_one_way``; ``linked``
    columns (percentages, statistics) are hidden with their count. ``total`` names the
    (column, value) of a group's own total row, which is checked on its own.
    """

    column: str
    linked: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    total: tuple[str, str | int] | None = None


@dataclass(frozen=True)
class CrossTab:
    """A cross-tab, long (``rows`` x ``cols`` with counts in ``value``) or wide (``values``)."""

    rows: str
    cols: str | None = None
    value: str | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class MinBase:
    """Hide ``hides`` where the base ``column`` is below the survey minimum (or threshold+1)."""

    column: str
    hides: tuple[str, ...]


Rule = OneWay | CrossTab | MinBase


@dataclass(frozen=True)
class TableInfo:
    """One output table: file stem, sheet name, section, title, meaning, columns, rules."""

    name: str
    sheet: str
    section: str
    title: str
    description: str
    columns: tuple[str, ...]
    decimals: Mapping[str, int] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()


_PCT = {"percent": 1}
_DAYS = {"mean_days": 1, "median_days": 1, "q1_days": 1, "q3_days": 1}
_ONS4_FIGURES = ("mean", "weighted_mean", "standard_error", "ci_low", "ci_high")
_SCALING_FIGURES = ("mean", "median", "q1", "q3")
_KM_MEDIANS = ("median_days", "median_ci_low", "median_ci_high")


def _count_table(name: str, sheet: str, section: str, title: str, description: str,
                 code: str, unit: str) -> TableInfo:
    return TableInfo(name, sheet, section, title, description, (code, unit, "percent"), _PCT,
                     (OneWay(unit, ("percent",)),))


def _demographic(name: str, sheet: str, title: str, code: str, unit: str) -> TableInfo:
    base = "study-population families" if unit == "families" else "children of those families"
    return _count_table(
        name, sheet, "demographics", title,
        f"{unit.capitalize()} by {code.replace('_', ' ')}; percent of all {base}; "
        "not_recorded counts missing values.", code, unit,
    )


TABLES: tuple[TableInfo, ...] = (
    TableInfo("population", "population", "administrative", "Study population",
              "In-window episodes, their families and children, and how many episodes are closed.",
              ("families", "children", "episodes", "closed_episodes"),
              rules=(OneWay("families"), OneWay("children"), OneWay("episodes"),
                     OneWay("closed_episodes"))),
    TableInfo("referrals_received", "referrals_received", "administrative",
              "Referrals received by month",
              "In-window episodes whose referral date falls in the study window, by month of "
              "referral (every month of the window a row), as opposed to the caseload open in it.",
              ("month", "episodes"), rules=(OneWay("episodes"),)),
    _count_table("referral_routes", "referral_routes", "administrative", "Referral routes",
                 "In-window episodes by referral route; percent of in-window episodes.",
                 "referral_route", "episodes"),
    _count_table("presenting_issues", "presenting_issues", "administrative", "Presenting issues",
                 "In-window episodes with each presenting issue (an episode counts under each of "
                 "its issues); percent of in-window episodes, so percentages can add to over 100.",
                 "issue", "episodes"),
    TableInfo("presenting_issues_by_service", "issues_by_service", "administrative",
              "Presenting issues by service offered",
              "In-window episodes with both the issue and the service (multiple counting).",
              ("issue", *SERVICES), rules=(CrossTab("issue", values=SERVICES),)),
    _count_table("closure_outcomes", "closure_outcomes", "closure", "Outcomes at closure",
                 "Closed in-window episodes by closure outcome; percent of closed episodes.",
                 "closure_outcome", "episodes"),
    _count_table("onward_referrals", "onward_referrals", "closure", "Onward referrals at closure",
                 "Closed in-window episodes by onward referral; percent of closed episodes.",
                 "onward_referral", "episodes"),
    _count_table("closure_referrals", "closure_referrals", "closure",
                 "Referred to children's social care or other services at closure",
                 "Closed in-window episodes: childrens_social_care = onward referral to "
                 "children's social care or closure outcome stepped_up_to_social_care; "
                 "other_services = onward referral to CAMHS, adult mental health, housing, "
                 "domestic abuse or other services; no_onward_referral = neither. Percent of "
                 "closed episodes (rows can overlap).",
                 "referral", "episodes"),
    TableInfo("re_referrals", "re_referrals", "closure", "Re-referrals within 12 months",
              "Study-population families with an in-window episode that closed, and those with "
              "another episode (in or out of the window) referred after that closure and at most "
              "365 days after it; percent of those families.",
              ("families_with_closed_episode", "re_referred_within_12_months", "percent"), _PCT,
              (OneWay("families_with_closed_episode"),
               OneWay("re_referred_within_12_months", ("percent",)))),
    TableInfo("length_of_support", "length_of_support", "support", "Length of support (days)",
              "closure_date - referral_date of closed in-window episodes; quartiles type 7.",
              ("n", *STATS_DAYS), _DAYS, (OneWay("n", STATS_DAYS),)),
    TableInfo("length_of_support_km", "length_km", "support",
              "Length of support with open episodes counted (Kaplan-Meier)",
              "Kaplan-Meier estimate of days from referral to closure over all in-window "
              "episodes: events = closed by study.data_as_of, censored = still open (or closed "
              "later), counted to data_as_of. Median = smallest time with survival at most 0.5 "
              "(empty when not reached); its 95% CI is read off the log-log pointwise bands "
              "(scipy.stats.ecdf).",
              ("n", "events", "censored", *_KM_MEDIANS),
              rules=(OneWay("n", _KM_MEDIANS), CrossTab("n", values=("events", "censored")),
                     MinBase("events", _KM_MEDIANS))),
    _count_table("length_of_support_bands", "length_bands", "support",
                 "Length of support, banded",
                 "Closed in-window episodes by days from referral to closure; percent of closed "
                 "episodes.", "band", "episodes"),
    TableInfo("length_of_support_by_issue", "length_by_issue", "support",
              "Length of support by primary issue",
              "Days from referral to closure of closed in-window episodes, by primary issue.",
              ("primary_issue", "n", *STATS_DAYS), _DAYS, (OneWay("n", STATS_DAYS),)),
    TableInfo("length_of_support_by_service", "length_by_service", "support",
              "Length of support by service",
              "Days from referral to closure of closed in-window episodes that were offered the "
              "service (an episode counts under each of its services).",
              ("service", "n", *STATS_DAYS), _DAYS, (OneWay("n", STATS_DAYS),)),
    TableInfo("days_to_allocation", "days_to_allocation", "support",
              "Days from referral to allocation",
              "allocation_date - referral_date of in-window episodes with an allocation date; "
              "not_allocated counts those without one.",
              ("n", "not_allocated", *STATS_DAYS), _DAYS,
              (OneWay("n", STATS_DAYS), OneWay("not_allocated"))),
    TableInfo("delivery_indicators", "delivery_indicators", "support",
              "Delivery as intended",
              "allocation: in-window episodes allocated within delivery.allocation_target_days "
              "of referral, later, or not allocated; goals_recorded: in-window episodes with at "
              "least one goal; goals_reviewed: episodes with goals having at least one reviewed "
              "goal; specialist_returned: ended RES Team / Early Help Hub referrals returned to "
              "the Cluster. Percent of each indicator's base.",
              ("indicator", "result", "n", "percent"), _PCT,
              (OneWay("n", ("percent",), ("indicator",)),)),
    _count_table("lead_worker_roles", "lead_worker_roles", "support", "Lead worker role",
                 "In-window episodes by the role of the lead worker; percent of in-window "
                 "episodes.", "lead_worker_role", "episodes"),
    TableInfo("goal_score_change", "goal_score_change", "support",
              "Goal scaling-score change by goal area",
              "Goals of in-window episodes; reviewed = goals with a latest score; means and "
              "median of latest - baseline over reviewed goals (0-10 scaling scores).",
              ("goal_area", "goals", "reviewed", "mean_baseline", "mean_latest", "mean_change",
               "median_change"),
              {"mean_baseline": 2, "mean_latest": 2, "mean_change": 2, "median_change": 2},
              (OneWay("goals"),
               OneWay("reviewed", ("mean_baseline", "mean_latest", "mean_change",
                                   "median_change")))),
    TableInfo("specialist_referrals", "specialist_referrals", "specialist",
              "Specialist referrals by service and outcome",
              "Referrals to the RES Team or Early Help Hub made for in-window episodes.",
              ("service", "outcome", "referrals"),
              rules=(CrossTab("service", "outcome", "referrals"),)),
    TableInfo("specialist_referral_reasons", "specialist_reasons", "specialist",
              "Specialist referrals by service and reason",
              "Referrals to the RES Team or Early Help Hub for in-window episodes, by reason.",
              ("service", "reason", "referrals"),
              rules=(CrossTab("service", "reason", "referrals"),)),
    TableInfo("specialist_closure_outcomes", "specialist_closure", "specialist",
              "Outcomes at closure with and without a specialist referral",
              "Closed in-window episodes by closure outcome: those with at least one RES Team or "
              "Early Help Hub referral and those without.",
              ("closure_outcome", "with_specialist_referral", "without_specialist_referral"),
              rules=(CrossTab("closure_outcome",
                              values=("with_specialist_referral",
                                      "without_specialist_referral")),)),
    _count_table("stepped_up_issues", "stepped_up_issues", "specialist",
                 "Presenting issues of episodes stepped up to a specialist service",
                 "In-window episodes with at least one RES Team or Early Help Hub referral, by "
                 "presenting issue (multiple counting); percent of those episodes.",
                 "issue", "episodes"),
    _demographic("demographics_lead_carer_ethnicity", "demo_carer_ethnicity",
                 "Lead carer ethnicity", "lead_carer_ethnicity", "families"),
    _demographic("demographics_child_ethnicity", "demo_child_ethnicity",
                 "Children's ethnicity", "ethnicity", "children"),
    _demographic("demographics_child_gender", "demo_child_gender", "Children's gender",
                 "gender", "children"),
    _demographic("demographics_child_age_band", "demo_child_age", "Children's age at referral",
                 "age_band", "children"),
    _demographic("demographics_child_sen_support", "demo_child_sen_support",
                 "Children receiving SEN support", "sen_support", "children"),
    _demographic("demographics_household_size", "demo_household_size", "Household size",
                 "household_size", "families"),
    _demographic("demographics_adults_in_employment", "demo_adults_employed",
                 "Adults in employment", "adults_in_employment", "families"),
    _demographic("demographics_lead_carer_employment", "demo_carer_employment",
                 "Lead carer employment", "lead_carer_employment", "families"),
    _demographic("demographics_free_school_meals", "demo_free_school_meals",
                 "Free school meals (any child eligible)", "free_school_meals", "families"),
    _demographic("demographics_imd_decile", "demo_imd_decile",
                 "IMD decile of the home area (1 = most deprived)", "imd_decile", "families"),
    _demographic("demographics_first_language", "demo_first_language",
                 "First language English", "first_language_english", "families"),
    TableInfo("response_rates", "response_rates", "survey", "Survey response rates",
              "Households issued (sampled, withdrawn included) and responded per wave and stratum; "
              "response_rate = responded / issued as a proportion (3 decimals); stratum 'all' is "
              "the wave's total.",
              ("wave", "stratum", "issued", "responded", "response_rate"), {"response_rate": 3},
              (OneWay("issued", ("response_rate",), ("wave",), ("stratum", ALL)),
               OneWay("responded", ("response_rate",), ("wave",), ("stratum", ALL)))),
    TableInfo("response_rates_by_route", "response_by_route", "survey",
              "Survey response rates by contact route",
              "Households issued and responded per wave and contact route; response_rate = "
              "responded / issued (proportion, 3 decimals).",
              ("wave", "route", "issued", "responded", "response_rate"), {"response_rate": 3},
              (OneWay("issued", ("response_rate",), ("wave",)),
               OneWay("responded", ("response_rate",), ("wave",)))),
    TableInfo("nonresponse_check", "nonresponse_check", "survey",
              "Non-response check: respondents against the frame",
              "Distribution of the frame, the households issued and the respondents. Frame: the "
              "wave-1 sampling frame sizes for stratum, the study-population families otherwise "
              "(referral route of the family's first in-window episode).",
              ("characteristic", "category", "frame", "frame_percent", "issued", "issued_percent",
               "respondents", "respondents_percent"),
              {"frame_percent": 1, "issued_percent": 1, "respondents_percent": 1},
              (OneWay("frame", ("frame_percent",), ("characteristic",)),
               OneWay("issued", ("issued_percent",), ("characteristic",)),
               OneWay("respondents", ("respondents_percent",), ("characteristic",)))),
    TableInfo("ons4", "ons4", "survey", "ONS4 personal well-being",
              "Respondents answering each measure, unweighted mean, design-weighted stratified "
              "mean with standard error and 95% CI (3 decimals), and the UK mean (APS, year "
              "ending March 2022).",
              ("measure", "respondents", *_ONS4_FIGURES, "uk_mean"),
              {"mean": 3, "weighted_mean": 3, "standard_error": 3, "ci_low": 3, "ci_high": 3,
               "uk_mean": 2},
              (OneWay("respondents", _ONS4_FIGURES, group_by=("measure",)),
               MinBase("respondents", _ONS4_FIGURES))),
    TableInfo("ons4_strata", "ons4_strata", "survey", "ONS4 by sampling stratum",
              "Frame size (wave 1) and respondents per stratum and measure, with the stratum "
              "mean used in the weighted estimate.",
              ("measure", "stratum", "frame_n", "respondents", "mean"), {"mean": 3},
              (OneWay("frame_n", group_by=("measure",)),
               OneWay("respondents", ("mean",), ("measure",)), MinBase("respondents", ("mean",)))),
    TableInfo("ons4_bands", "ons4_bands", "survey", "ONS4 thresholds",
              "Respondents in each ONS threshold band (life satisfaction, worthwhile, happiness: "
              "0-4 low, 5-6 medium, 7-8 high, 9-10 very high; anxiety: 0-1 very low, 2-3 low, "
              "4-5 medium, 6-10 high); percent of respondents answering the measure.",
              ("measure", "band", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",), ("measure",)),)),
    TableInfo("scaling_questions", "scaling_questions", "survey", "Scaling questions (q5-q8)",
              "Respondents, mean, median and quartiles (type 7) of each 0-10 scaling question.",
              ("question", "respondents", *_SCALING_FIGURES),
              {"mean": 2, "median": 2, "q1": 2, "q3": 2},
              (OneWay("respondents", _SCALING_FIGURES, group_by=("question",)),
               MinBase("respondents", _SCALING_FIGURES))),
    TableInfo("scaling_bands", "scaling_bands", "survey", "Scaling questions, banded",
              "Respondents per band (0-4 low, 5-6 medium, 7-8 high, 9-10 very high); percent of "
              "respondents answering the question.",
              ("question", "band", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",), ("question",)),)),
    TableInfo("negative_effects", "negative_effects", "survey",
              "Negative effects of support (q9)",
              "Did anything about getting support make things harder? Percent of respondents "
              "who answered q9 (the proportion answering yes).",
              ("answer", "respondents", "percent"), _PCT,
              (OneWay("respondents", ("percent",)),)),
)
TABLES_BY_NAME: dict[str, TableInfo] = {info.name: info for info in TABLES}
#: Restricted tables whose columns shared/spec/cli.md fixes.
CLI_TABLES = ("population", "referral_routes", "presenting_issues", "closure_outcomes",
              "onward_referrals", "length_of_support", "specialist_referrals", "ons4",
              "response_rates", "referrals_received", "re_referrals", "length_of_support_km")


# --- linked sets (disclosure control across tables) ------------------------------------------
#: A box of latent cells: latent dimension -> the categories it takes (a missing dimension: any).
Box = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class LinkedCounts:
    """A count column of a table in a linked set, as sums over the set's latent cross-tab.

    A row counts the latent cells matching its ``keys`` (table column -> latent dimension; the
    row's value fixes the dimension, ``ALL`` leaves it free) and ``fixed``; or, when its key
    value is in ``derived``, the union of those boxes. ``where`` keeps only rows whose column
    has that value; ``by`` is the column whose value picks a ``derived`` union. ``part_of``
    names the column this count is a subset of (for "0 of c").
    """

    table: str
    column: str
    keys: Mapping[str, str] = field(default_factory=dict)
    fixed: Box = field(default_factory=dict)
    derived: Mapping[str, tuple[Box, ...]] = field(default_factory=dict)
    where: tuple[str, str] | None = None
    part_of: str | None = None
    by: str | None = None


@dataclass(frozen=True)
class LinkedSet:
    """Tables on one population whose counts are sums over one latent cross-classification.

    ``dims`` are the latent dimensions with their declared categories (categories seen in key
    columns are added); ``restates`` are tables that only re-cut others and are withheld when
    they cannot be protected without suppressing cells of the other tables; latent cells in an
    ``impossible`` box cannot occur (a structural zero, left out of the model).
    """

    name: str
    dims: Mapping[str, tuple[str, ...]]
    counts: tuple[LinkedCounts, ...]
    restates: tuple[str, ...] = ()
    impossible: tuple[Box, ...] = ()


_STEPPED_UP = "stepped_up_to_social_care"
_OTHER_SERVICES = ("camhs", "adult_mental_health", "housing_service", "domestic_abuse_service",
                   "other")
_RESPONDED = ("responded", "responded_withdrawn")
_ALLOCATION = ("within_target", "over_target", "no")
#: The referrals_received category of in-window episodes referred before the window.
CARRIED_OVER = "carried_over"
LINKED_SETS: tuple[LinkedSet, ...] = (
    LinkedSet(
        "in_window_episodes",
        {"route": REFERRAL_ROUTE, "allocated": _ALLOCATION, "km": ("event", "censored"),
         "month": (CARRIED_OVER,), "closed": ("yes", "no")},
        (LinkedCounts("population", "episodes"),
         LinkedCounts("population", "closed_episodes", fixed={"closed": ("yes",)}),
         LinkedCounts("referral_routes", "episodes", {"referral_route": "route"}),
         LinkedCounts("days_to_allocation", "n", fixed={"allocated": _ALLOCATION[:2]}),
         LinkedCounts("days_to_allocation", "not_allocated", fixed={"allocated": ("no",)}),
         LinkedCounts("delivery_indicators", "n", where=("indicator", "allocation"), by="result",
                      derived={"within_target": ({"allocated": ("within_target",)},),
                               "over_target": ({"allocated": ("over_target",)},),
                               "not_allocated": ({"allocated": ("no",)},)}),
         LinkedCounts("referrals_received", "episodes", {"month": "month"}),
         LinkedCounts("length_of_support_km", "n"),
         LinkedCounts("length_of_support_km", "events", fixed={"km": ("event",)}, part_of="n"),
         LinkedCounts("length_of_support_km", "censored", fixed={"km": ("censored",)},
                      part_of="n")),
        impossible=({"closed": ("no",), "km": ("event",)},),  # an open episode is censored
    ),
    LinkedSet(
        "in_window_goals", {"goals": ("none", "not_reviewed", "reviewed")},
        (LinkedCounts("population", "episodes"),
         LinkedCounts("delivery_indicators", "n", where=("indicator", "goals_recorded"),
                      by="result", derived={"yes": ({"goals": ("not_reviewed", "reviewed")},),
                                            "no": ({"goals": ("none",)},)}),
         LinkedCounts("delivery_indicators", "n", where=("indicator", "goals_reviewed"),
                      by="result", derived={"yes": ({"goals": ("reviewed",)},),
                                            "no": ({"goals": ("not_reviewed",)},)})),
    ),
    LinkedSet(
        "in_window_lead_worker", {"role": (*LEAD_WORKER_ROLE, NOT_RECORDED)},
        (LinkedCounts("population", "episodes"),
         LinkedCounts("lead_worker_roles", "episodes", {"lead_worker_role": "role"})),
    ),
    LinkedSet(
        "children_sen_support", {"sen": ("yes", "no", NOT_RECORDED)},
        (LinkedCounts("population", "children"),
         LinkedCounts("demographics_child_sen_support", "children", {"sen_support": "sen"})),
    ),
    LinkedSet(
        "re_referrals", {"re_referred": ("yes", "no")},
        (LinkedCounts("re_referrals", "families_with_closed_episode"),
         LinkedCounts("re_referrals", "re_referred_within_12_months",
                      fixed={"re_referred": ("yes",)}, part_of="families_with_closed_episode")),
    ),
    LinkedSet(
        "closed_episodes",
        {"outcome": (*CLOSURE_OUTCOME, NOT_RECORDED), "onward": (*ONWARD_REFERRAL, NOT_RECORDED),
         "specialist": ("with", "without")},
        (LinkedCounts("population", "closed_episodes"),
         LinkedCounts("specialist_closure_outcomes", "with_specialist_referral",
                      {"closure_outcome": "outcome"}, {"specialist": ("with",)}),
         LinkedCounts("specialist_closure_outcomes", "without_specialist_referral",
                      {"closure_outcome": "outcome"}, {"specialist": ("without",)}),
         LinkedCounts("closure_outcomes", "episodes", {"closure_outcome": "outcome"}),
         LinkedCounts("onward_referrals", "episodes", {"onward_referral": "onward"}),
         LinkedCounts("closure_referrals", "episodes", by="referral", derived={
             "childrens_social_care": ({"onward": ("childrens_social_care",)},
                                       {"outcome": (_STEPPED_UP,)}),
             "other_services": ({"onward": _OTHER_SERVICES},),
             "no_onward_referral": ({"onward": ("none",), "outcome": tuple(
                 o for o in (*CLOSURE_OUTCOME, NOT_RECORDED) if o != _STEPPED_UP)},),
         })),
        restates=("closure_referrals",),
    ),
    LinkedSet(
        "survey_response",
        {"wave": (), "stratum": (), "route": (),
         "status": ("not_responded", *_RESPONDED)},
        (LinkedCounts("response_rates", "issued", {"wave": "wave", "stratum": "stratum"}),
         LinkedCounts("response_rates", "responded", {"wave": "wave", "stratum": "stratum"},
                      {"status": _RESPONDED}, part_of="issued"),
         LinkedCounts("response_rates_by_route", "issued", {"wave": "wave", "route": "route"}),
         LinkedCounts("response_rates_by_route", "responded", {"wave": "wave", "route": "route"},
                      {"status": _RESPONDED}, part_of="issued"),
         LinkedCounts("nonresponse_check", "issued", {"category": "stratum"},
                      where=("characteristic", "stratum")),
         LinkedCounts("nonresponse_check", "respondents", {"category": "stratum"},
                      {"status": ("responded",)}, where=("characteristic", "stratum"),
                      part_of="issued")),
    ),
    *(LinkedSet(f"nonresponse_{trait}", {"category": (), "status": ("not_responded", "responded")},
                (LinkedCounts("nonresponse_check", "issued", {"category": "category"},
                              where=("characteristic", trait)),
                 LinkedCounts("nonresponse_check", "respondents", {"category": "category"},
                              {"status": ("responded",)}, where=("characteristic", trait),
                              part_of="issued")))
      for trait in ("referral_route", "lead_carer_ethnicity", "household_size")),
)
