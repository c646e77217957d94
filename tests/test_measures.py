"""The measures of issue 10 (referrals received, re-referrals, Kaplan-Meier length of support,
delivery indicators, SEN support, lead worker role, specialist referrals by closure outcome),
each checked against an oracle written here in plain Python over tiny inline data."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta
from statistics import NormalDist

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tasks.analysis.measures import (
    MeasureOptions,
    delivery_indicators_table,
    lead_worker_roles_table,
    length_of_support_km_table,
    re_referrals_table,
    referrals_received_table,
    sen_support_table,
    specialist_closure_outcomes_table,
)
from tasks.analysis.publication import publication_table
from tasks.analysis.registry import CLI_TABLES, TABLES_BY_NAME
from tasks.analysis.study_data import load_study_data
from tasks.analysis.tables import build_analysis
from tasks.core.errors import UserFacingError
from tasks.core.runtime import Runtime
from tasks.core.settings import load_settings

NEW_TABLES = ("referrals_received", "re_referrals", "length_of_support_km",
              "delivery_indicators", "lead_worker_roles", "specialist_closure_outcomes",
              "demographics_child_sen_support")


def _episodes(rows: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    """(episode_pid, referral_date, closure_date) rows as an episodes frame."""
    return pl.DataFrame(rows, schema={"episode_pid": pl.String, "referral_date": pl.String,
                                      "closure_date": pl.String}, orient="row")


# --- referrals received -----------------------------------------------------------------------


def _oracle_months(start: date, end: date, referrals: list[date]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    day = start
    while day <= end:
        key = day.strftime("%Y-%m")
        if not out or out[-1][0] != key:
            out.append((key, 0))
        day += timedelta(days=1)
    return [(m, sum(1 for r in referrals if start <= r <= end and r.strftime("%Y-%m") == m))
            for m, _ in out]


@pytest.mark.parametrize(("start", "end"), [(date(2021, 1, 1), date(2021, 6, 30)),
                                            (date(2020, 11, 15), date(2021, 2, 10))])
def test_referrals_received_every_month_a_row_with_zeros(start: date, end: date) -> None:
    referred = ["2020-10-31", "2020-11-14", "2020-11-15", "2020-11-30", "2021-01-01",
                "2021-01-31", "2021-03-05", "2021-06-30", "2021-02-10", "2021-02-11"]
    eps = _episodes([(f"E{i}", d, None) for i, d in enumerate(referred)])
    table = referrals_received_table(eps, start, end)
    expected = _oracle_months(start, end, [date.fromisoformat(d) for d in referred])
    assert [tuple(r) for r in table.iter_rows()] == expected
    assert any(n == 0 for _, n in expected)  # the months with none are rows too
    assert table.columns == list(TABLES_BY_NAME["referrals_received"].columns)


# --- re-referrals -----------------------------------------------------------------------------


def _family_episodes(rows: list[tuple[str, str, str, str | None, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"family_pid": pl.String, "episode_pid": pl.String,
                                      "referral_date": pl.String, "closure_date": pl.String,
                                      "in_window": pl.Int64}, orient="row")


def _oracle_re_referrals(rows: list[tuple[str, str, str, str | None, int]]) -> tuple[int, int]:
    families = set()
    re_referred = set()
    for fam, pid, _ref, closure, in_window in rows:
        if not in_window or closure is None:
            continue
        families.add(fam)
        closed = date.fromisoformat(closure)
        for fam2, pid2, ref2, _c, _w in rows:
            if fam2 == fam and pid2 != pid:
                gap = (date.fromisoformat(ref2) - closed).days
                if 1 <= gap <= 365:
                    re_referred.add(fam)
    return len(families), len(re_referred)


def test_re_referrals_365_days_count_366_do_not() -> None:
    closed = date(2021, 3, 1)
    day365 = (closed + timedelta(days=365)).isoformat()
    day366 = (closed + timedelta(days=366)).isoformat()
    rows = [
        ("A", "A1", "2021-01-05", "2021-03-01", 1), ("A", "A2", day365, None, 0),  # day 365: yes
        ("B", "B1", "2021-01-05", "2021-03-01", 1), ("B", "B2", day366, None, 0),  # day 366: no
        ("C", "C1", "2021-01-05", "2021-03-01", 1), ("C", "C2", "2021-03-01", None, 1),  # same day
        ("D", "D1", "2021-02-01", None, 1), ("D", "D2", "2021-04-01", None, 1),  # never closed
        ("E", "E1", "2019-01-01", "2019-03-01", 0), ("E", "E2", "2019-05-01", None, 1),  # closed
        # out of window only: E is not in the base
        ("F", "F1", "2021-01-10", "2021-02-01", 1), ("F", "F2", "2021-03-03", "2021-09-01", 1),
        ("G", "G1", "2021-01-10", "2021-05-01", 1),  # closed, nothing after
    ]
    table = re_referrals_table(_family_episodes(rows))
    families, re_referred = _oracle_re_referrals(rows)
    assert (families, re_referred) == (5, 2)  # A, B, C, F, G; A and F
    row = table.row(0, named=True)
    assert row["families_with_closed_episode"] == families
    assert row["re_referred_within_12_months"] == re_referred
    assert row["percent"] == round(100 * re_referred / families, 1)


# --- Kaplan-Meier -----------------------------------------------------------------------------

Z = NormalDist().inv_cdf(0.975)


def _oracle_km(events: list[int], censored: list[int]) -> list[tuple[int, float, float, float]]:
    """(time, S, log-log lower, log-log upper) at each event time: KM with Greenwood variance."""
    out = []
    surv, greenwood = 1.0, 0.0
    for t in sorted(set(events)):
        at_risk = sum(1 for x in events + censored if x >= t)
        d = events.count(t)
        surv *= 1 - d / at_risk
        greenwood = greenwood + d / (at_risk * (at_risk - d)) if at_risk > d else math.inf
        if 0 < surv < 1 and math.isfinite(greenwood):
            se = math.sqrt(greenwood) / abs(math.log(surv))
            centre = math.log(-math.log(surv))
            low, high = math.exp(-math.exp(centre + Z * se)), math.exp(-math.exp(centre - Z * se))
        else:
            low = high = math.nan
        out.append((t, surv, low, high))
    return out


def _first(points: list[tuple[int, float, float, float]], index: int) -> int | None:
    return next((p[0] for p in points if p[index] <= 0.5 + 1e-9), None)  # an exact 0.5 may be 0.5000000000000001


def _km_case(rows: list[tuple[str, str | None]], as_of: date) -> tuple[list[int], list[int]]:
    events, censored = [], []
    for referral, closure in rows:
        ref = date.fromisoformat(referral)
        if closure is not None and date.fromisoformat(closure) <= as_of:
            events.append((date.fromisoformat(closure) - ref).days)
        else:
            censored.append((as_of - ref).days)
    return events, censored


def test_length_of_support_km_censors_open_and_late_closures() -> None:
    as_of = date(2021, 12, 31)
    start = date(2021, 1, 4)
    lengths = [10, 30, 30, 45, 60, 60, 90, 120, 150, 200]
    rows: list[tuple[str, str | None]] = [
        (start.isoformat(), (start + timedelta(days=n)).isoformat()) for n in lengths]
    rows += [("2021-03-01", None), ("2021-06-15", None), ("2021-11-01", None),  # open
             ("2021-02-01", "2022-02-01"),  # closed after data_as_of: censored at it
             ("2021-12-01", "2021-12-31")]  # closed on data_as_of: an event
    eps = _episodes([(f"E{i}", r, c) for i, (r, c) in enumerate(rows)])
    table = length_of_support_km_table(eps, as_of).row(0, named=True)
    events, censored = _km_case(rows, as_of)
    points = _oracle_km(events, censored)
    assert (table["n"], table["events"], table["censored"]) == (len(rows), 11, 4)
    assert (len(events), len(censored)) == (11, 4)
    assert table["median_days"] == _first(points, 1)
    assert table["median_ci_low"] == _first(points, 2)
    assert table["median_ci_high"] == _first(points, 3)
    assert None not in (table["median_days"], table["median_ci_low"], table["median_ci_high"])
    # dropping open episodes (the old table) would give a shorter median
    closed_only = sorted(lengths + [30])
    assert table["median_days"] >= closed_only[len(closed_only) // 2 - 1]


def test_km_median_empty_when_survival_never_reaches_half() -> None:
    as_of = date(2021, 12, 31)
    rows: list[tuple[str, str | None]] = [("2021-01-01", "2021-02-01"), ("2021-01-01", None),
                                          ("2021-02-01", None), ("2021-03-01", None)]
    eps = _episodes([(f"E{i}", r, c) for i, (r, c) in enumerate(rows)])
    table = length_of_support_km_table(eps, as_of).row(0, named=True)
    events, censored = _km_case(rows, as_of)
    assert _first(_oracle_km(events, censored), 1) is None
    assert (table["events"], table["censored"]) == (1, 3)
    assert table["median_days"] is None and table["median_ci_high"] is None
    no_events = length_of_support_km_table(_episodes([("E0", "2021-01-01", None)]), as_of)
    assert no_events.row(0) == (1, 0, 1, None, None, None)


def test_km_refuses_data_as_of_before_a_referral() -> None:
    eps = _episodes([("E0", "2021-05-01", None)])
    with pytest.raises(UserFacingError, match="study.data_as_of"):
        length_of_support_km_table(eps, date(2021, 4, 30))


# --- delivery, SEN support, lead worker role, RQ 1b -------------------------------------------


def test_delivery_indicators_against_counting_by_hand() -> None:
    episodes = pl.DataFrame({
        "episode_pid": ["E1", "E2", "E3", "E4", "E5"],
        "allocation_days": [3, 10, 11, None, 0]}, schema={"episode_pid": pl.String,
                                                         "allocation_days": pl.Int64})
    goals = pl.DataFrame({
        "episode_pid": ["E1", "E1", "E2", "E3", "E9"],
        "latest_score": [None, 6, None, None, 4],
        "latest_review_date": [None, None, "2021-04-01", None, None]},
        schema={"episode_pid": pl.String, "latest_score": pl.Int64,
                "latest_review_date": pl.String})
    specialist = pl.DataFrame({"outcome": ["returned_to_cluster", "closed", "ongoing",
                                           "returned_to_cluster", "stepped_up_to_social_care"]})
    target = 10
    table = delivery_indicators_table(episodes.filter(pl.col("episode_pid") != "E9"),
                                      goals.filter(pl.col("episode_pid") != "E9"), specialist,
                                      target)
    got = {(r["indicator"], r["result"]): (r["n"], r["percent"])
           for r in table.iter_rows(named=True)}
    days = [3, 10, 11, None, 0]
    oracle = {("allocation", "within_target"): sum(1 for d in days if d is not None and d <= 10),
              ("allocation", "over_target"): sum(1 for d in days if d is not None and d > 10),
              ("allocation", "not_allocated"): days.count(None),
              ("goals_recorded", "yes"): 3, ("goals_recorded", "no"): 2,
              ("goals_reviewed", "yes"): 2, ("goals_reviewed", "no"): 1,  # E1, E2 / E3
              ("specialist_returned", "yes"): 2, ("specialist_returned", "no"): 2}
    bases = Counter[str]()
    for (indicator, _), n in oracle.items():
        bases[indicator] += n
    assert {k: v[0] for k, v in got.items()} == oracle
    for key, (_, pct) in got.items():
        assert pct == round(100 * oracle[key] / bases[key[0]], 1)
    assert (oracle[("allocation", "within_target")], bases["specialist_returned"]) == (3, 4)


def test_sen_support_lead_worker_and_specialist_outcome_tables() -> None:
    children = pl.DataFrame({"sen_support": [1, 0, None, 1, 1]}, schema={"sen_support": pl.Int64})
    sen = {r[0]: (r[1], r[2]) for r in sen_support_table(children).iter_rows()}
    assert sen == {"yes": (3, 60.0), "no": (1, 20.0), "not_recorded": (1, 20.0)}

    roles = ["therapist", "therapist", "counsellor", None]
    episodes = pl.DataFrame({
        "episode_pid": ["E1", "E2", "E3", "E4"], "lead_worker_role": roles,
        "closure_date": ["2021-03-01", "2021-04-01", None, "2021-05-01"],
        "closure_outcome": ["goals_achieved", "stepped_up_to_social_care", None,
                            "goals_achieved"]})
    lead = {r[0]: r[1] for r in lead_worker_roles_table(episodes).iter_rows()}
    assert lead["therapist"] == roles.count("therapist") and lead["counsellor"] == 1
    assert lead["not_recorded"] == 1 and lead["attendance_officer"] == 0

    specialist = pl.DataFrame({"episode_pid": ["E2", "E2", "E3"]})
    table = specialist_closure_outcomes_table(episodes, specialist)
    got = {r[0]: (r[1], r[2]) for r in table.iter_rows()}
    stepped = {"E2", "E3"}
    for outcome in got:
        with_ref = sum(1 for pid, c, o in zip(episodes["episode_pid"], episodes["closure_date"],
                                              episodes["closure_outcome"], strict=True)
                       if c is not None and o == outcome and pid in stepped)
        without = sum(1 for pid, c, o in zip(episodes["episode_pid"], episodes["closure_date"],
                                             episodes["closure_outcome"], strict=True)
                      if c is not None and o == outcome and pid not in stepped)
        assert got[outcome] == (with_ref, without)
    assert got["goals_achieved"] == (0, 2) and got["stepped_up_to_social_care"] == (1, 0)
    assert sum(a + b for a, b in got.values()) == 3  # the closed episodes, each once


# --- publication ------------------------------------------------------------------------------


def test_new_tables_are_registered_and_suppressed() -> None:
    assert {"referrals_received", "re_referrals", "length_of_support_km"} <= set(CLI_TABLES)
    km = pl.DataFrame({"n": [40], "events": [37], "censored": [3], "median_days": [90],
                       "median_ci_low": [60], "median_ci_high": [120]},
                      schema={c: pl.Int64 for c in TABLES_BY_NAME["length_of_support_km"].columns})
    published = publication_table(TABLES_BY_NAME["length_of_support_km"], km, 5).row(0)
    # 3 censored is small; 40 - 37 would give it away, so events goes too
    assert published == ("40", "c", "c", "90", "60", "120")
    months = pl.DataFrame({"month": ["2021-01", "2021-02", "2021-03"], "episodes": [20, 2, 0]})
    shown = publication_table(TABLES_BY_NAME["referrals_received"], months, 5)["episodes"]
    # 2 is small; the total of the window is known, so the smallest non-zero other goes too
    assert shown.to_list() == ["c", "c", "0"]


# --- from the database: data_as_of default and the whole pipeline ------------------------------


def _insert(runtime: Runtime) -> None:
    sha = "ab" * 32
    c = {"c": runtime.cluster}
    with runtime.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO extracts (cluster_id, sha256, file_name, encryption, status, received_at) "
            "VALUES (:c, :s, 'x.zip', 'aes-zip', 'ingested', '2022-01-05T09:00:00+00:00')"),
            {**c, "s": sha})
        for fam in ("F1", "F2", "F3"):
            conn.execute(text(
                "INSERT INTO families (cluster_id, family_pid, extract_sha256, household_size, "
                "in_population) VALUES (:c, :f, :s, 3, :p)"), {**c, "f": fam, "s": sha, "p": True})
        for child, fam, sen in (("C1", "F1", True), ("C2", "F2", None), ("C3", "F3", False)):
            conn.execute(text(
                "INSERT INTO children (cluster_id, child_pid, family_pid, sen_support) "
                "VALUES (:c, :k, :f, :sen)"), {**c, "k": child, "f": fam, "sen": sen})
        episodes = [
            ("E1", "F1", date(2021, 1, 10), date(2021, 1, 12), date(2021, 3, 11), True),
            ("E2", "F1", date(2021, 7, 20), None, None, False),  # re-referral, out of window
            ("E3", "F2", date(2021, 2, 1), date(2021, 2, 20), None, True),
            ("E4", "F3", date(2021, 6, 1), None, date(2021, 9, 1), True),
        ]
        for pid, fam, ref, alloc, closure, in_window in episodes:
            conn.execute(text(
                "INSERT INTO episodes (cluster_id, episode_pid, family_pid, referral_date, "
                "referral_route, allocation_date, primary_issue, lead_worker_role, closure_date, "
                "closure_outcome, onward_referral, in_window, goal_count, stepped_up_res_team, "
                "stepped_up_early_help_hub, stepped_up_social_care) VALUES (:c, :e, :f, :r, "
                "'school', :a, 'parenting', 'therapist', :cl, :o, :on, :w, 0, :x, :x, :x)"),
                {**c, "e": pid, "f": fam, "r": ref, "a": alloc, "cl": closure,
                 "o": "goals_achieved" if closure else None, "on": "none" if closure else None,
                 "w": in_window, "x": False})
            conn.execute(text("INSERT INTO episode_issues (cluster_id, episode_pid, issue) "
                              "VALUES (:c, :e, 'parenting')"), {**c, "e": pid})
        conn.execute(text(
            "INSERT INTO goals (cluster_id, episode_pid, goal_number, goal_area, baseline_score, "
            "latest_score, latest_review_date) VALUES (:c, 'E3', 1, 'parenting', 3, NULL, :d)"),
            {**c, "d": date(2021, 10, 15)})
        conn.execute(text(
            "INSERT INTO specialist_referrals (cluster_id, referral_pid, episode_pid, service, "
            "reason, start_date, end_date, outcome) VALUES (:c, 'S1', 'E3', 'res_team', "
            "'parenting', :s, :e, 'returned_to_cluster')"),
            {**c, "s": date(2021, 3, 1), "e": date(2021, 11, 30)})


def test_data_as_of_defaults_to_the_latest_date_of_the_extract(runtime: Runtime) -> None:
    _insert(runtime)
    with runtime.engine.connect() as conn:
        data = load_study_data(conn, runtime.cluster)
    analysis = build_analysis(data)
    latest = date(2021, 11, 30)  # the specialist referral's end date: later than any other
    assert analysis.measures.data_as_of == latest
    km = analysis.tables["length_of_support_km"].row(0, named=True)
    # in-window: E1 closed (event), E3 open (censored), E4 closed 2021-09-01 <= latest (event)
    assert (km["n"], km["events"], km["censored"]) == (3, 2, 1)
    events, censored = _km_case([("2021-01-10", "2021-03-11"), ("2021-02-01", None),
                                 ("2021-06-01", "2021-09-01")], latest)
    assert km["median_days"] == _first(_oracle_km(events, censored), 1)
    re_ref = analysis.tables["re_referrals"].row(0)
    assert re_ref == (2, 1, 50.0)  # F1 (E2 131 days after E1 closed) of F1, F3
    received = dict(analysis.tables["referrals_received"].iter_rows())
    assert received == {"2021-01": 1, "2021-02": 1, "2021-03": 0, "2021-04": 0, "2021-05": 0,
                        "2021-06": 1}
    sen = dict((r[0], r[1]) for r in analysis.tables["demographics_child_sen_support"].iter_rows())
    assert sen == {"yes": 1, "no": 1, "not_recorded": 1}
    delivery = {(r[0], r[1]): r[2] for r in analysis.tables["delivery_indicators"].iter_rows()}
    assert delivery[("allocation", "within_target")] == 1  # E1 2 days; E3 19 days; E4 none
    assert delivery[("allocation", "over_target")] == 1
    assert delivery[("goals_reviewed", "yes")] == 1 and delivery[("specialist_returned", "yes")] == 1
    for name in NEW_TABLES:
        assert tuple(analysis.tables[name].columns) == TABLES_BY_NAME[name].columns
        published = publication_table(TABLES_BY_NAME[name], analysis.tables[name], 5)
        assert published.columns == analysis.tables[name].columns
        assert published.height == analysis.tables[name].height
    # 3 episodes, 2 events: every count is small, and so is the base of the median
    km_published = publication_table(TABLES_BY_NAME["length_of_support_km"],
                                     analysis.tables["length_of_support_km"], 5).row(0)
    assert km_published == ("c",) * 6

    # a configured data_as_of wins: E4's closure (2021-09-01) is then after it, so censored
    settings = load_settings({"CLUSTER_EVAL_STUDY__DATA_AS_OF": "2021-08-31",
                              "CLUSTER_EVAL_DELIVERY__ALLOCATION_TARGET_DAYS": "20"})
    again = build_analysis(data, measures=MeasureOptions.from_settings(settings))
    assert again.measures.data_as_of == date(2021, 8, 31)
    km = again.tables["length_of_support_km"].row(0, named=True)
    assert (km["events"], km["censored"]) == (1, 2)
    delivery = {(r[0], r[1]): r[2] for r in again.tables["delivery_indicators"].iter_rows()}
    assert delivery[("allocation", "within_target")] == 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.one_of(st.none(), st.integers(0, 400))),
                min_size=1, max_size=40))
def test_km_matches_the_oracle_on_generated_episodes(spells: list[tuple[int, int | None]]) -> None:
    as_of = date(2022, 1, 31)
    start = date(2021, 1, 1)
    rows = [((start + timedelta(days=r)).isoformat(),
             None if length is None else (start + timedelta(days=r + length)).isoformat())
            for r, length in spells]
    eps = _episodes([(f"E{i}", r, c) for i, (r, c) in enumerate(rows)])
    table = length_of_support_km_table(eps, as_of).row(0, named=True)
    events, censored = _km_case(rows, as_of)
    points = _oracle_km(events, censored)
    assert (table["events"], table["censored"]) == (len(events), len(censored))
    assert table["median_days"] == _first(points, 1)
    assert table["median_ci_low"] == _first(points, 2)
    assert table["median_ci_high"] == _first(points, 3)
