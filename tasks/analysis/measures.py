"""The protocol's further measures: referrals received, re-referrals, Kaplan-Meier length of support,
delivery indicators, SEN support, lead worker role and specialist referrals by closure outcome.

Plain functions over the study frames (``tasks.analysis.study_data``), no Prefect, no files.
The first three are restricted tables of the command-line contract (shared/spec/cli.md):

* ``referrals_received``: in-window episodes whose ``referral_date`` falls in the study window,
  by calendar month ``YYYY-MM``; every month of the window is a row (0 when none);
* ``re_referrals``: study-population families with an in-window episode that closed, and those
  of them with another valid episode (in or out of the window) referred strictly after that
  closure date and at most 365 days after it (day 365 counts, day 366 does not);
* ``length_of_support_km``: Kaplan-Meier estimate of days from referral to closure over all
  in-window episodes; an episode still open, or closed after ``study.data_as_of``, is censored
  at ``data_as_of`` (default: the latest date found in the extract data).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import stats as scipy_stats

from schemas.codes import CLOSURE_OUTCOME, LEAD_WORKER_ROLE
from tasks.analysis.counts import YES_NO, code_counts, percent_table, yes_no
from tasks.analysis.stats import percent
from tasks.core.errors import UserFacingError

if TYPE_CHECKING:
    from tasks.analysis.study_data import StudyData
    from tasks.core.settings import Settings

#: Days after a closure within which a new referral counts as a re-referral (inclusive).
RE_REFERRAL_DAYS = 365
#: Confidence level of the Kaplan-Meier pointwise bands and so of the median's interval.
KM_CONFIDENCE = 0.95
#: scipy's name of the pointwise confidence-interval method of the survival function.
KM_CI_METHOD = "log-log"
#: Columns of the specialist-referrals-by-closure-outcome cross-tab.
SPECIALIST_GROUPS = ("with_specialist_referral", "without_specialist_referral")
#: Results of each delivery indicator, in row order.
DELIVERY_RESULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("allocation", ("within_target", "over_target", "not_allocated")),
    ("goals_recorded", YES_NO),
    ("goals_reviewed", YES_NO),
    ("specialist_returned", YES_NO),
)


def _day(value: str | None) -> date | None:
    """An ISO date or instant text as a date."""
    return None if value is None else date.fromisoformat(value[:10])


def resolve_data_as_of(configured: date | None, latest_date: str | None) -> date | None:
    """``study.data_as_of`` when set, else the latest date found in the extract data."""
    return configured if configured is not None else _day(latest_date)


# --- referrals received -----------------------------------------------------------------------


def window_months(start: date, end: date) -> list[str]:
    """Every calendar month ``YYYY-MM`` from ``start`` to ``end`` inclusive."""
    months: list[str] = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def referrals_received_table(episodes: pl.DataFrame, window_start: date,
                             window_end: date) -> pl.DataFrame:
    """In-window episodes referred within the window, by month (every month a row)."""
    referred = [_day(v) for v in episodes["referral_date"].to_list()]
    counts = Counter(f"{d.year:04d}-{d.month:02d}" for d in referred
                     if d is not None and window_start <= d <= window_end)
    months = window_months(window_start, window_end)
    return pl.DataFrame({"month": months, "episodes": [counts.get(m, 0) for m in months]},
                        schema={"month": pl.String, "episodes": pl.Int64})


# --- re-referrals -----------------------------------------------------------------------------


def _re_referred(rows: Sequence[dict[str, Any]]) -> bool | None:
    """None without a closed in-window episode; else whether another episode was referred
    1..RE_REFERRAL_DAYS days after the closure of one of them."""
    closed = [(r["episode_pid"], _day(r["closure_date"])) for r in rows
              if r["in_window"] and r["closure_date"] is not None]
    if not closed:
        return None
    referrals = [(r["episode_pid"], _day(r["referral_date"])) for r in rows]
    return any(pid != closed_pid and referred is not None and closure is not None
               and 0 < (referred - closure).days <= RE_REFERRAL_DAYS
               for closed_pid, closure in closed for pid, referred in referrals)


def re_referrals_table(family_episodes: pl.DataFrame) -> pl.DataFrame:
    """Families with a closed in-window episode and those re-referred within 12 months of it.

    ``family_episodes`` holds every valid episode of the study-population families with an
    ``in_window`` flag (``analysis_family_episodes``).
    """
    by_family: dict[str, list[dict[str, Any]]] = {}
    for row in family_episodes.iter_rows(named=True):
        by_family.setdefault(row["family_pid"], []).append(row)
    outcomes = [_re_referred(rows) for rows in by_family.values()]
    families = sum(o is not None for o in outcomes)
    re_referred = sum(o is True for o in outcomes)
    return pl.DataFrame({"families_with_closed_episode": [families],
                         "re_referred_within_12_months": [re_referred],
                         "percent": [percent(re_referred, families)]},
                        schema={"families_with_closed_episode": pl.Int64,
                                "re_referred_within_12_months": pl.Int64, "percent": pl.Float64})


# --- Kaplan-Meier length of support -----------------------------------------------------------


@dataclass(frozen=True)
class SupportTimes:
    """Days from referral to closure (events) or to ``data_as_of`` (censored)."""

    events: list[int]
    censored: list[int]


def support_times(episodes: pl.DataFrame, data_as_of: date | None) -> SupportTimes:
    """Event and censoring times of the in-window episodes.

    An episode closed on or before ``data_as_of`` is an event at closure - referral; one still
    open or closed after it is censored at data_as_of - referral. UserFacingError when an
    episode is referred after data_as_of.
    """
    events: list[int] = []
    censored: list[int] = []
    for referral, closure in episodes.select("referral_date", "closure_date").iter_rows():
        referred, closed = _day(referral), _day(closure)
        if referred is None or data_as_of is None:
            raise UserFacingError("no date found in the extract data: set study.data_as_of")
        if referred > data_as_of:
            raise UserFacingError(
                f"study.data_as_of {data_as_of.isoformat()} is before an in-window episode's "
                "referral date; set it to the date the extract describes (or leave it unset)")
        if closed is not None and closed <= data_as_of:
            events.append((closed - referred).days)
        else:
            censored.append((data_as_of - referred).days)
    return SupportTimes(events, censored)


HALF_TOLERANCE = 1e-9


def _first_at_most_half(times: np.ndarray, survival: np.ndarray) -> int | None:
    """The smallest time whose survival (or band) is at most 0.5; None when never reached."""
    # NaN (undefined band) never counts as reached. The tolerance absorbs floating-point error in
    # the product of (1 - d/n) factors (an exact 0.5 can come out as 0.5000000000000001); distinct
    # Kaplan-Meier values differ by far more than it for any realistic number of episodes.
    reached = np.flatnonzero(survival <= 0.5 + HALF_TOLERANCE)
    return None if reached.size == 0 else int(times[reached[0]])


def km_median(times: SupportTimes) -> tuple[int | None, int | None, int | None]:
    """Kaplan-Meier median and its 95% confidence interval (days), None where not reached.

    ``scipy.stats.ecdf`` over ``scipy.stats.CensoredData`` estimates the survival function;
    its pointwise 95% confidence bands use the log-log ("exponential Greenwood") method. The
    median is the smallest time with S(t) <= 0.5; the interval's low end is the smallest time
    at which the lower band is <= 0.5 and its high end the smallest time at which the upper
    band is <= 0.5 (Brookmeyer-Crowley style, read off the bands). A band undefined at a time
    (S(t) = 0 there) does not count as reaching 0.5.
    """
    if not times.events:
        return None, None, None
    data = scipy_stats.CensoredData(uncensored=np.asarray(times.events, dtype=float),
                                    right=np.asarray(times.censored, dtype=float))
    sf = scipy_stats.ecdf(data).sf
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        bands = sf.confidence_interval(confidence_level=KM_CONFIDENCE, method=KM_CI_METHOD)
    return (_first_at_most_half(sf.quantiles, sf.probabilities),
            _first_at_most_half(bands.low.quantiles, bands.low.probabilities),
            _first_at_most_half(bands.high.quantiles, bands.high.probabilities))


def length_of_support_km_table(episodes: pl.DataFrame, data_as_of: date | None) -> pl.DataFrame:
    """n, events, censored, Kaplan-Meier median days and its 95% CI (see ``km_median``)."""
    times = support_times(episodes, data_as_of)
    median, low, high = km_median(times)
    return pl.DataFrame(
        {"n": [episodes.height], "events": [len(times.events)],
         "censored": [len(times.censored)], "median_days": [median], "median_ci_low": [low],
         "median_ci_high": [high]},
        schema={"n": pl.Int64, "events": pl.Int64, "censored": pl.Int64,
                "median_days": pl.Int64, "median_ci_low": pl.Int64, "median_ci_high": pl.Int64},
    )


# --- delivery as intended, SEN support, lead worker, RQ 1b ------------------------------------


def _allocation_results(episodes: pl.DataFrame, target_days: int) -> list[int]:
    """Episodes allocated within the target, over it, and not allocated."""
    days = [d for d in episodes["allocation_days"].to_list() if d is not None]
    within = sum(d <= target_days for d in days)
    return [within, len(days) - within, episodes.height - len(days)]


def delivery_indicators_table(episodes: pl.DataFrame, goals: pl.DataFrame,
                              specialist: pl.DataFrame, target_days: int) -> pl.DataFrame:
    """Delivery indicators (definitions in ``tasks.core.settings.DeliverySettings``).

    Rows per indicator and result with ``n`` and ``percent`` of the indicator's base: in-window
    episodes (allocation, goals_recorded), episodes with goals (goals_reviewed), ended
    specialist referrals (specialist_returned).
    """
    with_goals = set(goals["episode_pid"].to_list())
    reviewed_goals = goals.filter(pl.col("latest_score").is_not_null()
                                  | pl.col("latest_review_date").is_not_null())
    reviewed = set(reviewed_goals["episode_pid"].to_list())
    recorded = sum(pid in with_goals for pid in episodes["episode_pid"].to_list())
    ended = specialist.filter(pl.col("outcome") != "ongoing")
    returned = int((ended["outcome"] == "returned_to_cluster").sum())
    counts = {
        "allocation": _allocation_results(episodes, target_days),
        "goals_recorded": [recorded, episodes.height - recorded],
        "goals_reviewed": [len(reviewed & with_goals), len(with_goals - reviewed)],
        "specialist_returned": [returned, ended.height - returned],
    }
    rows = [(indicator, result, n, percent(n, sum(counts[indicator])))
            for indicator, results in DELIVERY_RESULTS
            for result, n in zip(results, counts[indicator], strict=True)]
    return pl.DataFrame(rows, schema={"indicator": pl.String, "result": pl.String,
                                      "n": pl.Int64, "percent": pl.Float64}, orient="row")


def sen_support_table(children: pl.DataFrame) -> pl.DataFrame:
    """Children of study-population families by SEN support (yes, no, not_recorded)."""
    counts = code_counts((yes_no(v) for v in children["sen_support"]), YES_NO, not_recorded=True)
    return percent_table("sen_support", "children", counts, children.height)


def lead_worker_roles_table(episodes: pl.DataFrame) -> pl.DataFrame:
    """In-window episodes by lead worker role; not_recorded only when some are missing."""
    counts = code_counts(episodes["lead_worker_role"], LEAD_WORKER_ROLE, not_recorded=None)
    return percent_table("lead_worker_role", "episodes", counts, episodes.height)


def specialist_closure_outcomes_table(episodes: pl.DataFrame,
                                      specialist: pl.DataFrame) -> pl.DataFrame:
    """RQ 1b: closed in-window episodes by closure outcome, with and without a specialist referral."""
    stepped = set(specialist["episode_pid"].to_list())
    closed = episodes.filter(pl.col("closure_date").is_not_null())
    with_ref = Counter(o for pid, o in closed.select("episode_pid", "closure_outcome").iter_rows()
                       if pid in stepped)
    without = Counter(o for pid, o in closed.select("episode_pid", "closure_outcome").iter_rows()
                      if pid not in stepped)
    codes = [*CLOSURE_OUTCOME, *(["not_recorded"] if None in with_ref or None in without else [])]
    key = [None if c == "not_recorded" else c for c in codes]
    return pl.DataFrame(
        {"closure_outcome": codes, SPECIALIST_GROUPS[0]: [with_ref.get(k, 0) for k in key],
         SPECIALIST_GROUPS[1]: [without.get(k, 0) for k in key]},
        schema={"closure_outcome": pl.String, SPECIALIST_GROUPS[0]: pl.Int64,
                SPECIALIST_GROUPS[1]: pl.Int64},
    )


# --- options and the tables together ----------------------------------------------------------


@dataclass(frozen=True)
class MeasureOptions:
    """What the measures take from the settings: study window, data_as_of, delivery target.

    ``data_as_of`` is ``study.data_as_of`` as configured (None: the latest date found in the
    extract data, resolved by ``measure_tables``).
    """

    window_start: date = date(2021, 1, 1)
    window_end: date = date(2021, 6, 30)
    data_as_of: date | None = None
    allocation_target_days: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> MeasureOptions:
        """The options of one run's settings."""
        return cls(settings.study.window_start, settings.study.window_end,
                   settings.study.data_as_of, settings.delivery.allocation_target_days)


def measure_tables(data: StudyData, options: MeasureOptions) -> dict[str, pl.DataFrame]:
    """The restricted tables of this module, by table name."""
    ep = data.episodes
    as_of = resolve_data_as_of(options.data_as_of, data.latest_date)
    return {
        "referrals_received": referrals_received_table(ep, options.window_start,
                                                       options.window_end),
        "re_referrals": re_referrals_table(data.family_episodes),
        "length_of_support_km": length_of_support_km_table(ep, as_of),
        "delivery_indicators": delivery_indicators_table(ep, data.goals, data.specialist,
                                                         options.allocation_target_days),
        "lead_worker_roles": lead_worker_roles_table(ep),
        "specialist_closure_outcomes": specialist_closure_outcomes_table(ep, data.specialist),
        "demographics_child_sen_support": sen_support_table(data.children),
    }
