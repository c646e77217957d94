"""Disclosure control of the protocol's further measures across linked tables, own LP oracle.

Re-referrals (families not re-referred), referrals received (episodes carried over into the
window), Kaplan-Meier n / events / censored, lead worker role and SEN support against the
population totals: each rebuilt with its own numbers, the joint table written here, and no
suppressed count or joint cell of 1..threshold may be pinned to within the threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date

import polars as pl
from test_linked_disclosure import THRESHOLD, lp_interval, pinned

from tasks.analysis.case_tables import days_to_allocation_table
from tasks.analysis.disclosure import SUPPRESSED
from tasks.analysis.measures import (
    lead_worker_roles_table,
    length_of_support_km_table,
    referrals_received_table,
    sen_support_table,
)
from tasks.analysis.publication import disclosure_audit, publication_table, publication_tables
from tasks.analysis.registry import TABLES_BY_NAME

# --- the protocol's further measures: complements across their own counts and the population ----


def oracle_checks(pub: dict[str, pl.DataFrame], truth: Sequence[int],
                  defs: Sequence[tuple[str, str, int, Sequence[int]]]
                  ) -> list[tuple[str, int, tuple[float, float]]]:
    """(what, value, interval) of every hidden count and joint cell of 1..threshold.

    ``defs``: (table, column, row, joint cells it sums); a count is an equation unless "c".
    """
    equations, hidden = [], []
    for table, column, row, members in defs:
        shown = pub[table][column][row]
        if shown == SUPPRESSED:
            hidden.append((f"{table}.{column}[{row}]", list(members)))
        else:
            equations.append((list(members), int(shown)))
    out = []
    for what, members in hidden + [(f"joint{k}", [k]) for k in range(len(truth))]:
        value = sum(truth[k] for k in members)
        if 1 <= value <= THRESHOLD:
            out.append((what, value, lp_interval(len(truth), equations, members)))
    return out


def test_re_referrals_complement_is_protected() -> None:
    tables = {"re_referrals": pl.DataFrame(
        {"families_with_closed_episode": [20], "re_referred_within_12_months": [17],
         "percent": [85.0]})}
    truth = [17, 3]  # joint: re-referred, not re-referred
    defs = [("re_referrals", "families_with_closed_episode", 0, [0, 1]),
            ("re_referrals", "re_referred_within_12_months", 0, [0])]
    within = {n: publication_table(TABLES_BY_NAME[n], df, THRESHOLD) for n, df in tables.items()}
    assert [w for w, _, iv in oracle_checks(within, truth, defs) if pinned(iv)] == ["joint1"]
    assert not disclosure_audit(tables, within, THRESHOLD)["pass"]
    pub = publication_tables(tables, THRESHOLD)
    assert [(w, v, iv) for w, v, iv in oracle_checks(pub, truth, defs) if pinned(iv)] == []
    row = pub["re_referrals"].row(0, named=True)
    assert SUPPRESSED in (row["families_with_closed_episode"], row["re_referred_within_12_months"])
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


def test_referrals_carried_over_into_the_window_are_protected() -> None:
    months = ["2021-01-15", "2021-02-10", "2021-03-03", "2021-04-20", "2021-05-05", "2021-06-30"]
    dates = ["2020-11-30", "2020-12-31"] + [d for d in months for _ in range(9)] + months[:2]
    episodes = pl.DataFrame({"referral_date": dates})
    received = referrals_received_table(episodes, date(2021, 1, 1), date(2021, 6, 30))
    tables = {"population": pl.DataFrame({"families": [40], "children": [70],
                                          "episodes": [len(dates)], "closed_episodes": [30]}),
              "referrals_received": received}
    # joint: the six months, then carried over (referred before the window)
    per_month = Counter(d[:7] for d in dates)
    truth = [per_month[m[:7]] for m in months] + [2]
    assert len(dates) - sum(received["episodes"].to_list()) == 2
    defs = [("population", "episodes", 0, list(range(7)))]
    defs += [("referrals_received", "episodes", k, [k]) for k in range(6)]
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    assert "joint6" in [w for w, _, iv in oracle_checks(within, truth, defs) if pinned(iv)]
    pub = publication_tables(tables, THRESHOLD)
    assert [(w, v, iv) for w, v, iv in oracle_checks(pub, truth, defs) if pinned(iv)] == []
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


def test_km_censored_count_is_protected() -> None:
    referred = ["2021-01-04"] * 40
    closed: list[str | None] = ["2021-03-01"] * 38 + [None] * 2
    episodes = pl.DataFrame({"referral_date": referred, "closure_date": closed})
    km = length_of_support_km_table(episodes, date(2021, 9, 30))
    tables = {"population": pl.DataFrame({"families": [30], "children": [50],
                                          "episodes": [40], "closed_episodes": [38]}),
              "length_of_support_km": km}
    # joint: closed and an event, open and censored (closed but censored: none here, but free)
    truth = [38, 2, 0]
    defs = [("population", "episodes", 0, [0, 1, 2]), ("population", "closed_episodes", 0, [0, 2]),
            ("length_of_support_km", "n", 0, [0, 1, 2]),
            ("length_of_support_km", "events", 0, [0]),
            ("length_of_support_km", "censored", 0, [1, 2])]
    assert (km["n"][0], km["events"][0], km["censored"][0]) == (40, 38, 2)
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    assert [w for w, _, iv in oracle_checks(within, truth, defs) if pinned(iv)]
    pub = publication_tables(tables, THRESHOLD)
    assert [(w, v, iv) for w, v, iv in oracle_checks(pub, truth, defs) if pinned(iv)] == []
    assert pub["length_of_support_km"]["censored"][0] == SUPPRESSED
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


def test_lead_worker_and_sen_support_complements_against_the_population() -> None:
    roles = pl.DataFrame({"lead_worker_role": ["therapist"] * 3 + ["counsellor"] * 30
                          + ["attendance_officer"] * 20})
    children = pl.DataFrame({"sen_support": [1] * 12 + [0] * 40 + [None] * 4})
    tables = {"population": pl.DataFrame({"families": [30], "children": [56], "episodes": [53],
                                          "closed_episodes": [30]}),
              "lead_worker_roles": lead_worker_roles_table(roles),
              "demographics_child_sen_support": sen_support_table(children)}
    pub = publication_tables(tables, THRESHOLD)
    for table, column, total in (("lead_worker_roles", "episodes", "episodes"),
                                 ("demographics_child_sen_support", "children", "children")):
        values = tables[table][column].to_list()
        defs = [("population", total, 0, list(range(len(values))))]
        defs += [(table, column, k, [k]) for k in range(len(values))]
        checks = oracle_checks(pub, values, defs)
        assert checks and [(w, v, iv) for w, v, iv in checks if pinned(iv)] == []
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


def test_delivery_allocation_against_days_to_allocation_and_the_population() -> None:
    episodes = pl.DataFrame({"allocation_days": [None] * 3 + [4] * 30 + [25] * 20})
    results = [("allocation", "within_target", 30), ("allocation", "over_target", 20),
               ("allocation", "not_allocated", 3), ("goals_recorded", "yes", 45),
               ("goals_recorded", "no", 8), ("goals_reviewed", "yes", 40),
               ("goals_reviewed", "no", 5)]
    delivery = pl.DataFrame(
        [(i, r, n, 100.0 * n / (53 if i != "goals_reviewed" else 45)) for i, r, n in results],
        schema={"indicator": pl.String, "result": pl.String, "n": pl.Int64,
                "percent": pl.Float64}, orient="row")
    tables = {"population": pl.DataFrame({"families": [30], "children": [50], "episodes": [53],
                                          "closed_episodes": [40]}),
              "days_to_allocation": days_to_allocation_table(episodes),
              "delivery_indicators": delivery}
    # joint: allocation (within, over, none) x goals (none, not reviewed, reviewed)
    alloc, goals = ("within", "over", "none"), ("none", "not_reviewed", "reviewed")
    cells = [(a, g) for a in alloc for g in goals]
    truth_by = {("within", "reviewed"): 25, ("within", "not_reviewed"): 5, ("over", "reviewed"): 15,
                ("over", "none"): 5, ("none", "none"): 3}
    truth = [truth_by.get(c, 0) for c in cells]

    def where(test: Callable[[str, str], bool]) -> list[int]:
        return [k for k, (a, g) in enumerate(cells) if test(a, g)]

    defs = [("population", "episodes", 0, where(lambda a, g: True)),
            ("days_to_allocation", "n", 0, where(lambda a, g: a != "none")),
            ("days_to_allocation", "not_allocated", 0, where(lambda a, g: a == "none"))]
    defs += [("delivery_indicators", "n", k, where(lambda a, g, x=x: a == x))
             for k, x in enumerate(alloc)]
    defs += [("delivery_indicators", "n", 3, where(lambda a, g: g != "none")),
             ("delivery_indicators", "n", 4, where(lambda a, g: g == "none")),
             ("delivery_indicators", "n", 5, where(lambda a, g: g == "reviewed")),
             ("delivery_indicators", "n", 6, where(lambda a, g: g == "not_reviewed"))]
    within = {n: publication_table(TABLES_BY_NAME[n], df, THRESHOLD) for n, df in tables.items()}
    assert "delivery_indicators.n[2]" in [w for w, _, iv in oracle_checks(within, truth, defs)
                                          if pinned(iv)]
    pub = publication_tables(tables, THRESHOLD)
    assert [(w, v, iv) for w, v, iv in oracle_checks(pub, truth, defs) if pinned(iv)] == []
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]
