"""Disclosure control across linked tables (tasks.analysis.linked), against an independent LP.

The oracle here never uses the module's model: it writes the published tables' relations
itself (the joint table of the population as unknowns, each published count one equation, its
own definitions of the derived rows), reads what is published back from the "c" marks, and
asks scipy's HiGHS for the smallest and largest value of every suppressed small count and
every small cell of the joint table. Nothing of 1..threshold may be pinned to within the
threshold. The two leaks of issue 10 are rebuilt with their own numbers.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from test_analysis import base_study, survey_study

from schemas.codes import CLOSURE_OUTCOME, ONWARD_REFERRAL, REFERRAL_ROUTE
from tasks.analysis.case_tables import (
    closure_outcomes_table,
    closure_referrals_table,
    days_to_allocation_table,
    onward_referrals_table,
    referral_routes_table,
)
from tasks.analysis.disclosure import SUPPRESSED, suppress_one_way, suppress_two_way
from tasks.analysis.linked import audit_set, build_model, protect_set
from tasks.analysis.publication import disclosure_audit, publication_tables, suppression_mask
from tasks.analysis.registry import (
    ALL,
    LINKED_SETS,
    TABLES_BY_NAME,
    LinkedCounts,
    LinkedSet,
)
from tasks.analysis.steps import write_analysis
from tasks.analysis.study_data import load_study_data
from tasks.analysis.survey_tables import response_rates_by_route_table, response_rates_table
from tasks.analysis.tables import build_analysis
from tasks.core.runtime import Runtime

THRESHOLD = 5
SETS = {s.name: s for s in LINKED_SETS}


# --- the oracle ------------------------------------------------------------------------------


def lp_interval(n: int, equations: Sequence[tuple[Sequence[int], int]],
                target: Sequence[int]) -> tuple[float, float]:
    """[ceil(min), floor(max)] of sum(x[target]) over x >= 0 meeting every equation."""
    a = np.zeros((len(equations), n))
    for row, (cells, _) in enumerate(equations):
        a[row, list(cells)] = 1
    b = np.array([v for _, v in equations], dtype=float)
    c = np.zeros(n)
    c[list(target)] = 1
    out = []
    for sign in (1, -1):
        res = linprog(sign * c, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        out.append(math.inf if res.status == 3 else sign * res.fun)
    lo, hi = out
    return math.ceil(lo - 1e-6), hi if math.isinf(hi) else math.floor(hi + 1e-6)


def pinned(interval: tuple[float, float]) -> bool:
    return interval[1] - interval[0] <= THRESHOLD


# --- leak 1 and 2: closed episodes ------------------------------------------------------------

OTHER = ("camhs", "adult_mental_health", "housing_service", "domestic_abuse_service", "other")
STEP = "stepped_up_to_social_care"
CSC = "childrens_social_care"


def leak_episodes() -> dict[tuple[str, str], int]:
    """225 closed episodes: 21 stepped up, 16 onward to CSC, 2 both; 4 stepped up + other."""
    joint: Counter[tuple[str, str]] = Counter()
    joint[(STEP, CSC)] = 2
    joint[(STEP, "camhs")] = 3
    joint[(STEP, "housing_service")] = 1
    joint[(STEP, "none")] = 15
    joint[("goals_achieved", CSC)] = 8
    joint[("goals_not_achieved", CSC)] = 6
    joint[("goals_achieved", "camhs")] = 27
    joint[("goals_partially_achieved", "adult_mental_health")] = 10
    joint[("goals_partially_achieved", "housing_service")] = 11
    joint[("disengaged", "domestic_abuse_service")] = 8
    joint[("goals_not_achieved", "other")] = 6
    joint[("goals_achieved", "none")] = 58
    joint[("goals_partially_achieved", "none")] = 40
    joint[("goals_not_achieved", "none")] = 12
    joint[("disengaged", "none")] = 9
    joint[("moved_away", "none")] = 8
    joint[("other", "none")] = 1
    joint[("goals_partially_achieved", CSC)] = 0
    return dict(joint)


def closure_tables(joint: dict[tuple[str, str], int]) -> dict[str, pl.DataFrame]:
    rows = [(o, r) for (o, r), n in joint.items() for _ in range(n)]
    episodes = pl.DataFrame({"closed": [True] * len(rows),
                             "closure_outcome": [o for o, _ in rows],
                             "onward_referral": [r for _, r in rows]})
    return {"population": pl.DataFrame({"families": [150], "children": [260],
                                        "episodes": [len(rows) + 71],
                                        "closed_episodes": [len(rows)]}),
            "closure_outcomes": closure_outcomes_table(episodes),
            "onward_referrals": onward_referrals_table(episodes),
            "closure_referrals": closure_referrals_table(episodes)}


def closure_oracle(pub: dict[str, pl.DataFrame], joint: dict[tuple[str, str], int]
                   ) -> list[tuple[str, int, tuple[float, float]]]:
    """(what, true value, interval) of every hidden small count and every small joint cell."""
    cells = list(itertools.product(CLOSURE_OUTCOME, ONWARD_REFERRAL))
    index = {cell: k for k, cell in enumerate(cells)}

    def where(test: Callable[[str, str], bool]) -> list[int]:
        return [index[c] for c in cells if test(*c)]

    defs: list[tuple[str, str, list[int]]] = [("population", "", where(lambda o, r: True))]
    defs += [("closure_outcomes", o, where(lambda a, r, o=o: a == o)) for o in CLOSURE_OUTCOME]
    defs += [("onward_referrals", r, where(lambda o, a, r=r: a == r)) for r in ONWARD_REFERRAL]
    defs += [("closure_referrals", CSC, where(lambda o, r: r == CSC or o == STEP)),
             ("closure_referrals", "other_services", where(lambda o, r: r in OTHER)),
             ("closure_referrals", "no_onward_referral",
              where(lambda o, r: r == "none" and o != STEP))]
    truth = [joint.get(c, 0) for c in cells]
    equations, hidden = [], []
    for table, key, members in defs:
        df = pub[table]
        column = "closed_episodes" if table == "population" else "episodes"
        shown = df[column][0] if table == "population" else df.filter(
            pl.col(df.columns[0]) == key)[column][0]
        if shown == SUPPRESSED:
            hidden.append((f"{table}.{key}", members))
        else:
            equations.append((members, int(shown)))
    out = []
    for what, members in hidden + [(f"joint{c}", [index[c]]) for c in cells]:
        value = sum(truth[k] for k in members)
        if 1 <= value <= THRESHOLD:
            out.append((what, value, lp_interval(len(cells), equations, members)))
    overlap = [index[(STEP, r)] for r in OTHER]
    out.append(("stepped up and other services", 4, lp_interval(len(cells), equations, overlap)))
    return out


def test_closure_leaks_are_caught_by_the_audit() -> None:
    joint = leak_episodes()
    tables = closure_tables(joint)
    referrals = dict(tables["closure_referrals"].select("referral", "episodes").iter_rows())
    assert referrals[CSC] == 35 and sum(referrals.values()) == 229
    assert tables["population"]["closed_episodes"][0] == 225
    masks = {n: suppression_mask(TABLES_BY_NAME[n], df, THRESHOLD) for n, df in tables.items()}
    model = build_model(SETS["closed_episodes"], tables)
    audit = audit_set(model, masks, THRESHOLD)
    assert not audit.passed
    assert f"latent({STEP},{CSC})" in audit.disclosed  # the overlap of 2
    assert f"latent({STEP},housing_service)" in audit.disclosed  # part of the 4
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    leaks = [w for w, v, iv in closure_oracle(within, joint) if pinned(iv)]
    assert f"joint('{STEP}', '{CSC}')" in leaks and "stepped up and other services" in leaks


def test_closure_publication_hides_the_leaks() -> None:
    joint = leak_episodes()
    tables = closure_tables(joint)
    pub = publication_tables(tables, THRESHOLD)
    checks = closure_oracle(pub, joint)
    assert [(w, v, iv) for w, v, iv in checks if pinned(iv)] == []
    audit = disclosure_audit(tables, pub, THRESHOLD)
    assert audit["pass"] and audit["sets"][0]["set"] == "closed_episodes"


# --- leak 3: non-respondents by subtraction, and "0 of c" --------------------------------------


def leak_survey() -> pl.DataFrame:
    """Wave 1: e-mail 7 issued, 6 responded; stratum d: 3 issued, none responded."""
    rows = []
    plan = {"email": (7, 6), "post": (20, 10), "phone": (15, 9)}
    k = 0
    for route, (issued, responded) in plan.items():
        for i in range(issued):
            rows.append((1, "abc"[k % 3], route, int(i < responded), 0))
            k += 1
    rows += [(1, "d", "post", 0, 0)] * 3
    return pl.DataFrame(rows, schema=["wave", "stratum", "route", "responded", "withdrawn"],
                        orient="row")


def survey_tables(survey: pl.DataFrame) -> dict[str, pl.DataFrame]:
    strata = survey.select("wave", "stratum").unique()
    waves = pl.DataFrame({"wave": [1], "stratify_by": ["x"]})
    issued = Counter(survey["stratum"].to_list())
    resp = Counter(survey.filter(pl.col("responded") == 1)["stratum"].to_list())
    names = sorted(issued)
    nonresponse = pl.DataFrame(
        [("stratum", s, issued[s] * 3, 1.0, issued[s], 1.0, resp[s], 1.0) for s in names],
        schema={"characteristic": pl.String, "category": pl.String, "frame": pl.Int64,
                "frame_percent": pl.Float64, "issued": pl.Int64, "issued_percent": pl.Float64,
                "respondents": pl.Int64, "respondents_percent": pl.Float64}, orient="row")
    return {"response_rates": response_rates_table(survey, strata, waves),
            "response_rates_by_route": response_rates_by_route_table(survey, waves),
            "nonresponse_check": nonresponse}


def survey_oracle(pub: dict[str, pl.DataFrame], survey: pl.DataFrame
                  ) -> list[tuple[str, int, tuple[float, float]]]:
    strata = sorted(set(survey["stratum"]))
    routes = ("email", "post", "phone")
    cells = list(itertools.product(strata, routes, (0, 1)))  # status: responded or not
    index = {c: k for k, c in enumerate(cells)}
    truth = Counter((s, r, x) for s, r, x in survey.select("stratum", "route", "responded")
                    .iter_rows())
    equations, hidden = [], []

    def add(df: pl.DataFrame, key: str, col: str, members: list[int], label: str) -> None:
        shown = df.filter(pl.col(df.columns[1]) == key)[col][0]
        if shown == SUPPRESSED:
            hidden.append((label, members))
        else:
            equations.append((members, int(shown)))

    for s in [*strata, ALL]:
        for col, st_ in (("issued", (0, 1)), ("responded", (1,))):
            members = [index[c] for c in cells if (s == ALL or c[0] == s) and c[2] in st_]
            add(pub["response_rates"], s, col, members, f"rates.{s}.{col}")
    for r in routes:
        for col, st_ in (("issued", (0, 1)), ("responded", (1,))):
            add(pub["response_rates_by_route"], r, col,
                [index[c] for c in cells if c[1] == r and c[2] in st_], f"route.{r}.{col}")
    for s in strata:
        for col, st_ in (("issued", (0, 1)), ("respondents", (1,))):
            add(pub["nonresponse_check"], s, col,
                [index[c] for c in cells if c[0] == s and c[2] in st_], f"check.{s}.{col}")
    out = []
    for what, members in hidden + [(f"joint{c}", [index[c]]) for c in cells]:
        value = sum(truth[cells[k]] for k in members)
        if 1 <= value <= THRESHOLD:
            out.append((what, value, lp_interval(len(cells), equations, members)))
    email_nonresp = [index[(s, "email", 0)] for s in strata]
    out.append(("email non-respondents", 1, lp_interval(len(cells), equations, email_nonresp)))
    return out


def test_nonresponse_by_subtraction_and_zero_of_c() -> None:
    survey = leak_survey()
    tables = survey_tables(survey)
    route = dict(tables["response_rates_by_route"].select("route", "issued").iter_rows())
    assert route["email"] == 7
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    leaks = [w for w, _, iv in survey_oracle(within, survey) if pinned(iv)]
    assert "email non-respondents" in leaks
    masks = {n: suppression_mask(TABLES_BY_NAME[n], df, THRESHOLD) for n, df in tables.items()}
    assert not audit_set(build_model(SETS["survey_response"], tables), masks, THRESHOLD).passed

    pub = publication_tables(tables, THRESHOLD)
    assert [(w, v, iv) for w, v, iv in survey_oracle(pub, survey) if pinned(iv)] == []
    check = pub["nonresponse_check"].filter(pl.col("category") == "d")
    assert check["issued"][0] == SUPPRESSED and check["respondents"][0] == SUPPRESSED  # 0 of c
    rates = pub["response_rates"].filter(pl.col("stratum") == "d")
    assert rates["responded"][0] == SUPPRESSED and rates["response_rate"][0] == SUPPRESSED
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


# --- property: generated linked tables ---------------------------------------------------------

PROP_SET = LinkedSet("prop", {"a": (), "b": ()}, (
    LinkedCounts("cross", "n", {"a": "a", "b": "b"}),
    LinkedCounts("by_group", "n", by="group", derived={
        "low": ({"a": ("0", "1")},), "high": ({"a": ("2", "3")},)}),
    LinkedCounts("either", "n", by="row", derived={
        "a0_or_b0": ({"a": ("0",)}, {"b": ("0",)}), "neither": ({"a": ("1", "2", "3"),
                                                                  "b": ("1", "2", "3")},)}),
), restates=("either",))


def prop_tables(matrix: list[list[int]]) -> tuple[dict[str, pl.DataFrame], dict]:
    r, c = len(matrix), len(matrix[0])
    rows = [(str(i), str(j), matrix[i][j]) for i in range(r) for j in range(c)]
    rows += [(str(i), ALL, sum(matrix[i])) for i in range(r)]
    rows += [(ALL, str(j), sum(m[j] for m in matrix)) for j in range(c)]
    rows += [(ALL, ALL, sum(map(sum, matrix)))]
    cross = pl.DataFrame(rows, schema=["a", "b", "n"], orient="row")
    low = sum(sum(matrix[i]) for i in range(min(2, r)))
    groups = pl.DataFrame({"group": ["low", "high"], "n": [low, sum(map(sum, matrix)) - low]})
    a0b0 = sum(matrix[0]) + sum(matrix[i][0] for i in range(1, r))
    either = pl.DataFrame({"row": ["a0_or_b0", "neither"],
                           "n": [a0b0, sum(map(sum, matrix)) - a0b0]})
    tables = {"cross": cross, "by_group": groups, "either": either}
    two = suppress_two_way(matrix, threshold=THRESHOLD)
    cross_mask = [two.cells[i][j] for i in range(r) for j in range(c)] + two.row_totals + \
        two.col_totals + [two.grand_total]
    masks = {"cross": {"a": [False] * len(rows), "b": [False] * len(rows), "n": cross_mask},
             "by_group": {"group": [False, False],
                          "n": suppress_one_way(groups["n"].to_list(), threshold=THRESHOLD)},
             "either": {"row": [False, False],
                        "n": suppress_one_way(either["n"].to_list(), threshold=THRESHOLD)}}
    return tables, masks


def prop_oracle(tables: dict[str, pl.DataFrame], masks: dict, matrix: list[list[int]]
                ) -> list[tuple[str, int, tuple[float, float]]]:
    r, c = len(matrix), len(matrix[0])
    cells = [(i, j) for i in range(r) for j in range(c)]
    truth = [matrix[i][j] for i, j in cells]
    defs = [(f"cell{i}{j}", [cells.index((i, j))]) for i, j in cells]
    defs += [(f"row{i}", [k for k, (a, _) in enumerate(cells) if a == i]) for i in range(r)]
    defs += [(f"col{j}", [k for k, (_, b) in enumerate(cells) if b == j]) for j in range(c)]
    defs += [("total", list(range(len(cells))))]
    shown = list(zip(defs, masks["cross"]["n"], strict=True))
    shown += [(("low", [k for k, (a, _) in enumerate(cells) if a < 2]), masks["by_group"]["n"][0]),
              (("high", [k for k, (a, _) in enumerate(cells) if a >= 2]), masks["by_group"]["n"][1]),
              (("a0b0", [k for k, (a, b) in enumerate(cells) if a == 0 or b == 0]),
               masks["either"]["n"][0]),
              (("neither", [k for k, (a, b) in enumerate(cells) if a and b]),
               masks["either"]["n"][1])]
    equations = [(m, sum(truth[k] for k in m)) for (_, m), hid in shown if not hid]
    out = []
    for (what, members), hid in shown:
        value = sum(truth[k] for k in members)
        if (hid or what.startswith("cell")) and 1 <= value <= THRESHOLD:
            out.append((what, value, lp_interval(len(cells), equations, members)))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4).flatmap(lambda r: st.integers(2, 3).flatmap(
    lambda c: st.lists(st.lists(st.integers(0, 12), min_size=c, max_size=c),
                       min_size=r, max_size=r))))
def test_generated_linked_tables_never_pin_a_small_cell(matrix: list[list[int]]) -> None:
    tables, masks = prop_tables(matrix)
    model = build_model(PROP_SET, tables)
    protected, audit = protect_set(model, masks, THRESHOLD)
    assert audit.passed
    assert [(w, v, iv) for w, v, iv in prop_oracle(tables, protected, matrix) if pinned(iv)] == []
    for table, cols in masks.items():  # protection only ever adds suppression
        for col, hidden in cols.items():
            assert all(p or not h for h, p in zip(hidden, protected[table][col], strict=True))


# --- wiring: the audit runs when the analysis is written and lands in the manifest -------------


def test_write_step_puts_the_audit_in_the_manifest(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    with sqlite_runtime.engine.begin() as conn:
        base_study().insert(conn)
        survey_study().insert(conn)
    with sqlite_runtime.engine.connect() as conn:
        data = load_study_data(conn, "pilot")
    analysis = build_analysis(data)
    threshold = sqlite_runtime.settings.disclosure.threshold
    publication = publication_tables(analysis.tables, threshold)
    written = write_analysis.fn(tmp_path / "out", analysis, publication, data,
                                sqlite_runtime.settings)
    audit = json.loads((written.out / "manifest.json").read_text())["disclosure_audit"]
    assert audit["pass"] and audit["threshold"] == threshold
    assert {s["set"] for s in audit["sets"]} >= {"closed_episodes", "survey_response"}
    for entry in audit["sets"]:
        assert entry["pass"] and entry["disclosed"] == [] and entry["quantities_checked"] > 0


def test_within_table_publication_of_the_leaks_fails_the_audit() -> None:
    tables = closure_tables(leak_episodes())
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    audit = disclosure_audit(tables, within, THRESHOLD)
    assert not audit["pass"]
    assert any(f"latent({STEP},{CSC})" in s["disclosed"] for s in audit["sets"])


def test_not_allocated_by_subtraction_from_the_population() -> None:
    routes = [code for code in REFERRAL_ROUTE for _ in range(60)][:296]
    episodes = pl.DataFrame({"referral_route": routes,
                             "allocation_days": [None] * 3 + [10] * 293})
    tables = {"population": pl.DataFrame({"families": [200], "children": [350],
                                          "episodes": [296], "closed_episodes": [225]}),
              "referral_routes": referral_routes_table(episodes),
              "days_to_allocation": days_to_allocation_table(episodes)}
    within = {n: publication_tables({n: df}, THRESHOLD)[n] for n, df in tables.items()}
    assert within["days_to_allocation"]["not_allocated"][0] == SUPPRESSED
    assert int(within["population"]["episodes"][0]) - int(within["days_to_allocation"]["n"][0]) == 3
    assert not disclosure_audit(tables, within, THRESHOLD)["pass"]
    pub = publication_tables(tables, THRESHOLD)
    # oracle: unknowns (allocated, not allocated); published equations from the "c" marks
    equations = []
    if pub["population"]["episodes"][0] != SUPPRESSED:
        equations.append(([0, 1], 296))
    if pub["days_to_allocation"]["n"][0] != SUPPRESSED:
        equations.append(([0], 293))
    assert not pinned(lp_interval(2, equations, [1]))
    assert disclosure_audit(tables, pub, THRESHOLD)["pass"]


def test_audit_flags_a_published_zero_of_c() -> None:
    survey = leak_survey()
    tables = survey_tables(survey)
    pub = publication_tables(tables, THRESHOLD)
    leaky = pub["nonresponse_check"].with_columns(  # put the 0 of stratum d back on show
        pl.when(pl.col("category") == "d").then(pl.lit("0")).otherwise(pl.col("respondents"))
        .alias("respondents"))
    assert leaky.filter(pl.col("category") == "d")["issued"][0] == SUPPRESSED
    audit = disclosure_audit(tables, {**pub, "nonresponse_check": leaky}, THRESHOLD)
    assert not audit["pass"]
    assert "0 of c: nonresponse_check.respondents[3]" in audit["sets"][0]["disclosed"]
