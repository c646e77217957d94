"""Validation: typing, every rule with its exact failure, orphan cascade, synthetic extracts."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import polars as pl
import pytest

from schemas.codes import TABLES
from schemas.columns import READ_COLUMNS, RULES, TABLE_COLUMNS, columns_for, rules_for
from schemas.extract import CLEAN_MODELS, RAW_MODELS
from tasks.demo.render import render_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.reader import read_tables
from tasks.ingest.validate import (
    BAD_DATE_REASON,
    FAILURE_SCHEMA,
    US_DATE_REASON,
    ValidatedTables,
    output_columns,
    validate_tables,
)

WINDOW = {"window_start": date(2021, 1, 1), "window_end": date(2021, 6, 30)}
Rows = dict[str, list[dict[str, str]]]


def _family(fid: str, size: str, adults: str) -> dict[str, str]:
    return {
        "family_id": fid, "lead_carer_name": "Ann Smith", "address_line_1": "1 Mill Lane",
        "address_line_2": "", "town": "Northmoor", "postcode": "NM1 1AB",
        "email": "ann@example.org", "phone": "07700 900001", "preferred_contact": "email",
        "household_size": size, "adults_in_employment": adults,
        "lead_carer_employment": "unemployed", "lead_carer_ethnicity": "WBRI",
        "first_language_english": "Y", "free_school_meals": "N", "imd_decile": "2",
        "do_not_contact": "N",
    }


def _child(cid: str, fid: str, dob: str) -> dict[str, str]:
    return {"child_id": cid, "family_id": fid, "child_name": "ZQXCHILD", "date_of_birth": dob,
            "gender": "female", "ethnicity": "WBRI", "school_phase": "primary",
            "sen_support": "N"}


def _episode(eid: str, fid: str, ref: str, alloc: str, issues: str, primary: str, services: str,
             closure: str, outcome: str, onward: str) -> dict[str, str]:
    return {"episode_id": eid, "family_id": fid, "referral_date": ref, "referral_route": "school",
            "allocation_date": alloc, "presenting_issues": issues, "primary_issue": primary,
            "services": services, "lead_worker_role": "therapist", "closure_date": closure,
            "closure_outcome": outcome, "onward_referral": onward, "case_notes": "ZQXNOTE"}


def _goal(eid: str, number: str, area: str, base: str, latest: str, review: str) -> dict[str, str]:
    return {"episode_id": eid, "goal_number": number, "goal_area": area, "baseline_score": base,
            "latest_score": latest, "latest_review_date": review, "goal_text": "ZQXGOAL"}


def _referral(rid: str, eid: str, reason: str, start: str, end: str, outcome: str
              ) -> dict[str, str]:
    return {"referral_id": rid, "episode_id": eid, "service": "res_team", "reason": reason,
            "start_date": start, "end_date": end, "outcome": outcome}


def base_rows() -> Rows:
    """Two families, three children, two episodes (one closed, one open), goals, referrals."""
    return {
        "families": [_family("F1", "3", "1"), _family("F2", "2", "0")],
        "children": [_child("C1", "F1", "2010-05-01"), _child("C2", "F1", "2015-02-01"),
                     _child("C3", "F2", "2008-03-02")],
        "episodes": [
            _episode("E1", "F1", "2021-02-01", "2021-02-05", "housing;parenting", "housing",
                     "family_support", "2021-05-01", "goals_achieved", "none"),
            _episode("E2", "F2", "2021-03-01", "", "child_mental_health", "child_mental_health",
                     "child_therapy;family_support", "", "", ""),
        ],
        "goals": [_goal("E1", "1", "housing", "3", "7", "2021-04-01"),
                  _goal("E1", "2", "parenting", "2", "", ""),
                  _goal("E2", "1", "child_mental_health", "4", "5", "2021-04-15")],
        "specialist_referrals": [
            _referral("R1", "E1", "housing", "2021-02-10", "2021-03-10", "returned_to_cluster"),
            _referral("R2", "E2", "child_mental_health", "2021-03-20", "", "ongoing"),
        ],
    }


def members_of(rows: Rows) -> dict[str, bytes]:
    out = {}
    for table in TABLES:
        frame = pl.DataFrame(rows[table], schema=dict.fromkeys(TABLE_COLUMNS[table], pl.String))
        out[f"{table}.csv"] = frame.write_csv().encode()
    return out


def run(rows: Rows) -> ValidatedTables:
    return validate_tables(read_tables(members_of(rows), "x.zip"), **WINDOW)


def changed(table: str, index: int, column: str, value: str, rows: Rows | None = None) -> Rows:
    rows = copy.deepcopy(rows or base_rows())
    rows[table][index][column] = value
    return rows


def summarise_failures(failures: pl.DataFrame) -> pl.DataFrame:
    """Failure counts by table, column, rule and reason (rows = failing rows)."""
    return (
        failures.group_by("table", "column", "rule", "reason")
        .agg(pl.col("row").n_unique().alias("rows"))
        .sort(pl.col("table").cast(pl.Enum(list(TABLES))), "column", "rule", "reason")
    )


def failure_set(result: ValidatedTables) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in result.failures.select("table", "row_key", "column", "rule")
            .iter_rows()}


# --- the rules table --------------------------------------------------------------------------
def test_rules_table_matches_spec_columns() -> None:
    for table in TABLES:
        assert tuple(r.column for r in rules_for(table)) == TABLE_COLUMNS[table]
    assert len(RULES) == sum(len(c) for c in TABLE_COLUMNS.values())
    assert columns_for("episodes", "never_read") == ("case_notes",)
    assert columns_for("goals", "never_read") == ("goal_text",)
    assert columns_for("children", "drop") == ("child_name",)
    assert columns_for("children", "derive_then_drop") == ("date_of_birth",)
    assert columns_for("families", "contact_store") == (
        "lead_carer_name", "address_line_1", "address_line_2", "town", "postcode", "email",
        "phone", "preferred_contact", "do_not_contact")
    assert columns_for("specialist_referrals", kind="date") == ("start_date", "end_date")


def test_models_match_rules_table() -> None:
    for table in TABLES:
        raw = list(RAW_MODELS[table].to_schema().columns)
        assert raw == ["_row", *READ_COLUMNS[table]]
        clean = list(CLEAN_MODELS[table].to_schema().columns)
        extra = ["age_at_referral"] if table == "children" else []
        assert clean == raw + extra


# --- clean input ------------------------------------------------------------------------------
def test_base_rows_are_clean_and_typed() -> None:
    result = run(base_rows())
    assert result.failures.height == 0
    assert result.failures.schema == pl.Schema(FAILURE_SCHEMA)
    assert result.rows_read == {"families": 2, "children": 3, "episodes": 2, "goals": 3,
                                "specialist_referrals": 2}
    assert result.quarantined == dict.fromkeys(TABLES, 0)
    fam = result.tables["families"]
    assert fam.schema["household_size"] == pl.Int64
    assert fam.schema["do_not_contact"] == pl.Boolean
    assert fam["email"].to_list() == ["ann@example.org"] * 2
    ep = result.tables["episodes"]
    assert ep.schema["presenting_issues"] == pl.List(pl.String)
    assert ep["presenting_issues"].to_list() == [["housing", "parenting"], ["child_mental_health"]]
    assert ep["services"].to_list() == [["family_support"], ["child_therapy", "family_support"]]
    assert ep["referral_date"].to_list() == [date(2021, 2, 1), date(2021, 3, 1)]
    assert ep["closure_date"].to_list() == [date(2021, 5, 1), None]
    children = result.tables["children"]
    assert "date_of_birth" not in children.columns
    assert children.columns == output_columns("children")
    # 2010-05-01 -> 10 on 2021-02-01; 2015-02-01 -> 6 on its birthday; 2008-03-02 -> 12 the
    # day before the 13th birthday.
    assert children["age_at_referral"].to_list() == [10, 6, 12]


def test_codes_yes_no_integers_and_dates_are_canonicalised() -> None:
    rows = base_rows()
    rows["families"][0].update(preferred_contact=" EMAIL ", lead_carer_employment="Unemployed",
                               lead_carer_ethnicity="wbri", first_language_english="yes",
                               free_school_meals="TRUE", do_not_contact="0",
                               household_size="3.0", imd_decile="+2")
    rows["families"][1].update(first_language_english="No", free_school_meals="1",
                               do_not_contact="false")
    rows["episodes"][0].update(referral_date="01/02/2021", allocation_date="5/2/2021",
                               presenting_issues=" Housing ; PARENTING;housing;",
                               primary_issue="HOUSING", services="Family_Support")
    result = run(rows)
    assert result.failures.height == 0
    fam = result.tables["families"]
    assert fam["preferred_contact"].to_list() == ["email", "email"]
    assert fam["lead_carer_employment"][0] == "unemployed"
    assert fam["lead_carer_ethnicity"][0] == "WBRI"
    assert fam["first_language_english"].to_list() == [True, False]
    assert fam["free_school_meals"].to_list() == [True, True]
    assert fam["do_not_contact"].to_list() == [False, False]
    assert fam["household_size"][0] == 3 and fam["imd_decile"][0] == 2
    ep = result.tables["episodes"]
    assert ep["referral_date"][0] == date(2021, 2, 1)
    assert ep["allocation_date"][0] == date(2021, 2, 5)
    assert ep["presenting_issues"][0].to_list() == ["housing", "parenting"]
    assert ep["primary_issue"][0] == "housing"


# --- one test per rule ------------------------------------------------------------------------
CASES = [
    # (table, index, column, value, expected (table, row_key, column, rule))
    ("families", 0, "household_size", "three", ("families", "F1", "household_size", "type")),
    ("families", 0, "household_size", "3.5", ("families", "F1", "household_size", "type")),
    ("families", 0, "household_size", "21", ("families", "F1", "household_size", "range")),
    ("families", 1, "adults_in_employment", "-1",
     ("families", "F2", "adults_in_employment", "range")),
    ("families", 0, "adults_in_employment", "4",
     ("families", "F1", "adults_in_employment", "adults_within_household")),
    ("families", 0, "imd_decile", "11", ("families", "F1", "imd_decile", "range")),
    ("families", 0, "lead_carer_employment", "retired",
     ("families", "F1", "lead_carer_employment", "code_list")),
    ("families", 0, "lead_carer_ethnicity", "White", ("families", "F1", "lead_carer_ethnicity",
                                                      "code_list")),
    ("families", 0, "preferred_contact", "", ("families", "F1", "preferred_contact", "required")),
    ("families", 0, "free_school_meals", "maybe", ("families", "F1", "free_school_meals", "type")),
    ("families", 0, "do_not_contact", "", ("families", "F1", "do_not_contact", "required")),
    ("families", 0, "postcode", "NM1", ("families", "F1", "postcode", "shape")),
    ("families", 0, "email", "ann.example.org", ("families", "F1", "email", "shape")),
    ("children", 0, "gender", "", ("children", "C1", "gender", "required")),
    ("children", 0, "gender", "boy", ("children", "C1", "gender", "code_list")),
    ("children", 0, "school_phase", "nursery", ("children", "C1", "school_phase", "code_list")),
    ("children", 0, "sen_support", "2", ("children", "C1", "sen_support", "type")),
    ("children", 0, "date_of_birth", "", ("children", "C1", "date_of_birth", "required")),
    ("children", 0, "date_of_birth", "05/25/2010", ("children", "C1", "date_of_birth", "type")),
    ("children", 0, "date_of_birth", "2002-02-01",  # 19 at 2021-02-01
     ("children", "C1", "date_of_birth", "age_at_referral")),
    ("children", 0, "date_of_birth", "2021-03-01",  # born after the referral
     ("children", "C1", "date_of_birth", "age_at_referral")),
    ("children", 0, "family_id", "F9", ("children", "C1", "family_id", "foreign_key")),
    ("episodes", 0, "referral_date", "", ("episodes", "E1", "referral_date", "required")),
    ("episodes", 0, "referral_route", "gp", ("episodes", "E1", "referral_route", "code_list")),
    ("episodes", 0, "closure_date", "31/02/2021", ("episodes", "E1", "closure_date", "type")),
    ("episodes", 0, "allocation_date", "2021-01-31",
     ("episodes", "E1", "allocation_date", "allocation_after_referral")),
    ("episodes", 0, "closure_date", "2021-01-15",
     ("episodes", "E1", "closure_date", "closure_after_referral")),
    ("episodes", 0, "presenting_issues", "housing;flooding",
     ("episodes", "E1", "presenting_issues", "code_list")),
    ("episodes", 0, "services", " ; ", ("episodes", "E1", "services", "required")),
    ("episodes", 0, "services", "family_support;yoga", ("episodes", "E1", "services",
                                                        "code_list")),
    ("episodes", 0, "primary_issue", "domestic_abuse",
     ("episodes", "E1", "primary_issue", "primary_issue_presenting")),
    ("episodes", 0, "closure_outcome", "",
     ("episodes", "E1", "closure_outcome", "outcome_when_closed")),
    ("episodes", 1, "closure_outcome", "disengaged",
     ("episodes", "E2", "closure_outcome", "outcome_empty_when_open")),
    ("episodes", 1, "onward_referral", "camhs",
     ("episodes", "E2", "onward_referral", "onward_empty_when_open")),
    ("episodes", 0, "onward_referral", "police", ("episodes", "E1", "onward_referral",
                                                  "code_list")),
    ("goals", 0, "goal_number", "0", ("goals", "E1", "goal_number", "range")),
    ("goals", 0, "goal_area", "", ("goals", "E1", "goal_area", "required")),
    ("goals", 0, "baseline_score", "11", ("goals", "E1", "baseline_score", "range")),
    ("goals", 0, "latest_score", "-1", ("goals", "E1", "latest_score", "range")),
    ("goals", 0, "latest_review_date", "2021-01-20",
     ("goals", "E1", "latest_review_date", "review_after_referral")),
    ("specialist_referrals", 0, "start_date", "2021-01-20",
     ("specialist_referrals", "R1", "start_date", "start_after_referral")),
    ("specialist_referrals", 0, "end_date", "2021-02-01",
     ("specialist_referrals", "R1", "end_date", "end_after_start")),
    ("specialist_referrals", 0, "service", "camhs",
     ("specialist_referrals", "R1", "service", "code_list")),
    ("specialist_referrals", 1, "outcome", "", ("specialist_referrals", "R2", "outcome",
                                                "required")),
]


@pytest.mark.parametrize(("table", "index", "column", "value", "expected"), CASES,
                         ids=[f"{c[0]}.{c[2]}={c[3]!r}" for c in CASES])
def test_each_rule_fails_exactly_one_row(table: str, index: int, column: str, value: str,
                                         expected: tuple[str, str, str, str]) -> None:
    result = run(changed(table, index, column, value))
    own = result.failures.filter(pl.col("table") == table)
    assert {f for f in failure_set(result) if f[0] == table} == {expected}
    assert own["row"].to_list() == [index + 1]
    assert result.quarantined[table] == 1
    assert result.tables[table].height == len(base_rows()[table]) - 1
    # rows below a failing parent are orphans; nothing else fails
    assert set(result.failures.filter(pl.col("table") != table)["rule"]) <= {"foreign_key"}
    # the reason never quotes the value
    if value.strip():
        assert not result.failures["reason"].str.contains(value.strip(), literal=True).any()


def test_reasons_are_specific() -> None:
    def reason(table: str, index: int, column: str, value: str) -> str:
        failures = run(changed(table, index, column, value)).failures
        return failures.filter(pl.col("table") == table)["reason"].item()

    assert reason("episodes", 0, "closure_date", "12/25/2021") == US_DATE_REASON
    assert reason("episodes", 0, "closure_date", "31/02/2021") == BAD_DATE_REASON
    assert reason("episodes", 0, "closure_date", "2021-02-30") == BAD_DATE_REASON
    assert reason("episodes", 0, "closure_date", "0021-05-01") == BAD_DATE_REASON
    assert reason("episodes", 0, "closure_date", "1/5/21") == BAD_DATE_REASON
    assert reason("families", 0, "lead_carer_employment", "retired") == (
        "not in code list lead_carer_employment")
    assert reason("families", 0, "lead_carer_ethnicity", "xx") == "not in code list ethnicity"
    assert reason("goals", 0, "goal_area", "flooding") == "not in code list presenting_issues"
    assert reason("families", 0, "household_size", "25") == "outside the range 1 to 20"
    assert reason("families", 0, "adults_in_employment", "-2") == "less than 0"
    assert reason("families", 0, "household_size", "x") == "not a whole number"
    assert reason("families", 0, "postcode", "SW1A1A") == "not a UK postcode shape"
    assert reason("children", 0, "date_of_birth", "2002-02-01") == (
        "age at the reference referral date is outside 0 to 18")
    assert reason("children", 0, "family_id", "F9") == "family_id has no valid family row"
    assert reason("goals", 0, "episode_id", "E9") == "episode_id has no valid episode row"


def test_ambiguous_slash_date_is_read_the_uk_way() -> None:
    result = run(changed("episodes", 0, "closure_date", "04/03/2021"))
    assert result.failures.height == 0
    assert result.tables["episodes"]["closure_date"][0] == date(2021, 3, 4)


def test_us_date_fails_only_its_row() -> None:
    rows = changed("episodes", 0, "referral_date", "12/25/2020")
    result = run(rows)
    assert failure_set(result) == {
        ("episodes", "E1", "referral_date", "type"),
        # E1 failing makes its goals and referral orphans
        ("goals", "E1", "episode_id", "foreign_key"),
        ("specialist_referrals", "R1", "episode_id", "foreign_key"),
    }
    assert result.failures.filter(pl.col("table") == "goals")["row"].to_list() == [1, 2]
    assert result.tables["episodes"]["episode_id"].to_list() == ["E2"]


def test_age_boundaries() -> None:
    ok_18 = run(changed("children", 0, "date_of_birth", "2002-02-02"))  # 18 the day before 19
    assert ok_18.failures.height == 0
    assert ok_18.tables["children"]["age_at_referral"][0] == 18
    ok_0 = run(changed("children", 0, "date_of_birth", "2021-02-01"))  # born on referral day
    assert ok_0.tables["children"]["age_at_referral"][0] == 0
    leap = run(changed("children", 0, "date_of_birth", "2008-02-29"))
    # 2021-02-01 is before the (non-leap-year) birthday: 12, not 13
    assert leap.tables["children"]["age_at_referral"][0] == 12


def test_age_uses_latest_in_window_episode_else_latest_episode() -> None:
    rows = base_rows()
    # F1: a later, out-of-window episode in 2022 must not be used (E1 2021-02-01 is in window)
    rows["episodes"].append(_episode("E3", "F1", "2022-01-10", "", "parenting", "parenting",
                                     "family_support", "2022-03-01", "goals_achieved", "none"))
    # F2: only out-of-window episodes (2020): the latest referral, 2020-09-01, is used
    rows["episodes"][1].update(referral_date="2020-01-01", closure_date="2020-06-01",
                               closure_outcome="moved_away", onward_referral="none")
    rows["episodes"].append(_episode("E4", "F2", "2020-09-01", "", "housing", "housing",
                                     "family_support", "2020-10-01", "other", "none"))
    result = run(rows)
    assert result.failures.height == 0
    # C1 born 2010-05-01: 10 at 2021-02-01 (11 at 2022-01-10); C3 born 2008-03-02: 12 at
    # 2020-09-01 (11 at 2020-01-01)
    assert result.tables["children"]["age_at_referral"].to_list() == [10, 6, 12]


def test_child_of_family_without_valid_episode_gets_no_age() -> None:
    rows = changed("episodes", 1, "referral_route", "nonsense")
    result = run(rows)
    assert result.tables["children"]["age_at_referral"].to_list() == [10, 6, None]
    assert ("children", "C3", "date_of_birth", "age_at_referral") not in failure_set(result)


# --- keys, orphans, goals ---------------------------------------------------------------------
def test_orphan_cascade_from_a_failing_family() -> None:
    result = run(changed("families", 0, "household_size", "25"))
    assert result.failures.rows() == [
        ("families", 1, "F1", "household_size", "range", "outside the range 1 to 20"),
        ("children", 1, "C1", "family_id", "foreign_key", "family_id has no valid family row"),
        ("children", 2, "C2", "family_id", "foreign_key", "family_id has no valid family row"),
        ("episodes", 1, "E1", "family_id", "foreign_key", "family_id has no valid family row"),
        ("goals", 1, "E1", "episode_id", "foreign_key", "episode_id has no valid episode row"),
        ("goals", 2, "E1", "episode_id", "foreign_key", "episode_id has no valid episode row"),
        ("specialist_referrals", 1, "R1", "episode_id", "foreign_key",
         "episode_id has no valid episode row"),
    ]
    assert result.quarantined == {"families": 1, "children": 2, "episodes": 1, "goals": 2,
                                  "specialist_referrals": 1}
    assert {t: f.height for t, f in result.tables.items()} == {
        "families": 1, "children": 1, "episodes": 1, "goals": 1, "specialist_referrals": 1}


def test_duplicate_family_id_fails_both_rows_and_everything_below() -> None:
    result = run(changed("families", 1, "family_id", "F1"))
    fam = result.failures.filter(pl.col("table") == "families")
    assert fam.rows() == [
        ("families", 1, "row 1", "family_id", "unique", "duplicate family_id"),
        ("families", 2, "row 2", "family_id", "unique", "duplicate family_id"),
    ]
    assert result.quarantined == {"families": 2, "children": 3, "episodes": 2, "goals": 3,
                                  "specialist_referrals": 2}
    assert all(f.height == 0 for f in result.tables.values())


def test_missing_id_is_keyed_by_row_number() -> None:
    result = run(changed("children", 1, "child_id", ""))
    assert failure_set(result) == {("children", "row 2", "child_id", "required")}


def test_duplicate_child_and_referral_ids() -> None:
    rows = changed("children", 2, "child_id", "C1")
    rows = changed("specialist_referrals", 1, "referral_id", "R1", rows)
    assert failure_set(run(rows)) == {
        ("children", "row 1", "child_id", "unique"),
        ("children", "row 3", "child_id", "unique"),
        ("specialist_referrals", "row 1", "referral_id", "unique"),
        ("specialist_referrals", "row 2", "referral_id", "unique"),
    }


def test_duplicate_goal_number_within_episode() -> None:
    result = run(changed("goals", 1, "goal_number", "1"))
    assert result.failures.rows() == [
        ("goals", 1, "row 1", "goal_number", "unique", "duplicate goal_number within the episode"),
        ("goals", 2, "row 2", "goal_number", "unique", "duplicate goal_number within the episode"),
    ]


def test_a_fourth_goal_is_quarantined() -> None:
    rows = base_rows()
    rows["goals"].append(_goal("E1", "3", "housing", "5", "", ""))
    rows["goals"].append(_goal("E1", "4", "parenting", "5", "", ""))  # row 5: E1's 4th goal
    result = run(rows)
    assert result.failures.rows() == [
        ("goals", 5, "E1", "goal_number", "max_goals", "more than 3 goals for the episode"),
        ("goals", 5, "E1", "goal_number", "range", "outside the range 1 to 3"),
    ]
    assert result.quarantined["goals"] == 1
    assert result.tables["goals"].height == 4


def test_a_fourth_goal_with_a_valid_number_is_still_quarantined() -> None:
    rows = base_rows()
    rows["goals"].insert(0, _goal("E2", "2", "child_mental_health", "5", "", ""))
    rows["goals"].append(_goal("E2", "3", "child_mental_health", "5", "", ""))
    rows["goals"].append(_goal("E2", "3", "child_mental_health", "6", "", ""))
    result = run(rows)
    # E2 rows: 1 (goal 2), 4 (goal 1), 5 (goal 3), 6 (goal 3 again: duplicate and 4th)
    assert failure_set(result) == {
        ("goals", "row 5", "goal_number", "unique"),
        ("goals", "row 6", "goal_number", "unique"),
        ("goals", "row 6", "goal_number", "max_goals"),
    }


def test_orphan_episode_cascades_to_goals_and_referrals_only() -> None:
    result = run(changed("episodes", 1, "family_id", "F9"))
    assert failure_set(result) == {
        ("episodes", "E2", "family_id", "foreign_key"),
        ("goals", "E2", "episode_id", "foreign_key"),
        ("specialist_referrals", "R2", "episode_id", "foreign_key"),
    }


def test_a_row_with_several_problems_counts_once() -> None:
    rows = changed("families", 0, "household_size", "25")
    rows = changed("families", 0, "imd_decile", "x", rows)
    rows = changed("families", 0, "email", "nope", rows)
    result = run(rows)
    assert failure_set(result) >= {("families", "F1", "household_size", "range"),
                                   ("families", "F1", "imd_decile", "type"),
                                   ("families", "F1", "email", "shape")}
    assert result.quarantined["families"] == 1


def test_values_never_appear_in_failures() -> None:
    marker = "ZQXSECRET"
    rows = base_rows()
    for column in ("household_size", "preferred_contact", "postcode", "email", "imd_decile",
                   "free_school_meals"):
        rows["families"][0][column] = marker
    for column in ("date_of_birth", "gender", "sen_support"):
        rows["children"][0][column] = marker
    for column in ("referral_date", "presenting_issues", "closure_outcome"):
        rows["episodes"][1][column] = marker
    result = run(rows)
    assert result.quarantined["families"] == 1
    for column in ("reason", "rule", "column", "row_key"):
        assert not result.failures[column].str.contains(marker).any()


def test_summarise_failures_counts_rows() -> None:
    rows = changed("families", 0, "household_size", "25")
    rows = changed("goals", 2, "baseline_score", "12", rows)
    summary = summarise_failures(run(rows).failures)
    assert summary.rows() == [
        ("families", "household_size", "range", "outside the range 1 to 20", 1),
        ("children", "family_id", "foreign_key", "family_id has no valid family row", 2),
        ("episodes", "family_id", "foreign_key", "family_id has no valid family row", 1),
        ("goals", "baseline_score", "range", "outside the range 0 to 10", 1),
        ("goals", "episode_id", "foreign_key", "episode_id has no valid episode row", 2),
        ("specialist_referrals", "episode_id", "foreign_key",
         "episode_id has no valid episode row", 1),
    ]


# --- synthetic extracts -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic() -> dict[str, pl.DataFrame]:
    return generate_tables(300, seed=42)


@pytest.fixture(scope="module")
def clean_result(synthetic: dict[str, pl.DataFrame]) -> ValidatedTables:
    return validate_tables(read_tables(render_members(synthetic), "s.zip"), **WINDOW)


def test_clean_synthetic_extract_validates_with_no_failures(
        synthetic: dict[str, pl.DataFrame], clean_result: ValidatedTables) -> None:
    assert clean_result.failures.height == 0
    rows = {t: synthetic[t].height for t in TABLES}
    assert clean_result.rows_read == rows
    assert {t: f.height for t, f in clean_result.tables.items()} == rows
    assert clean_result.tables["families"]["family_id"].to_list() == (
        synthetic["families"]["family_id"].to_list())
    for table in TABLES:
        assert clean_result.tables[table].columns == output_columns(table)
    assert "date_of_birth" not in clean_result.tables["children"].columns
    for text in ("case_notes", "goal_text", "child_name"):
        assert all(text not in f.columns for f in clean_result.tables.values())


@pytest.mark.parametrize(("fmt", "encoding"), [("csv", "cp1252"), ("csv", "utf-8-sig"),
                                               ("xlsx", "utf-8")])
def test_messy_synthetic_extract_validates_to_the_same_tables(
        synthetic: dict[str, pl.DataFrame], clean_result: ValidatedTables, fmt: str,
        encoding: str) -> None:
    members = render_members(synthetic, fmt=fmt, messy=True, encoding=encoding, seed=8)
    result = validate_tables(read_tables(members, "s.zip"), **WINDOW)
    assert result.failures.height == 0
    # messy rendering swaps some names and address lines for accented ones; all else is equal
    changed_pii = ["lead_carer_name", "address_line_2"]
    for table in TABLES:
        frame, clean = result.tables[table], clean_result.tables[table]
        if table == "families":
            frame, clean = frame.drop(changed_pii), clean.drop(changed_pii)
        assert frame.equals(clean), table


def test_synthetic_ages_match_an_independent_computation(
        synthetic: dict[str, pl.DataFrame], clean_result: ValidatedTables) -> None:
    start, end = WINDOW["window_start"], WINDOW["window_end"]
    episodes: dict[str, list[tuple[bool, date]]] = {}
    for fid, ref, closed in synthetic["episodes"].select(
            "family_id", "referral_date", "closure_date").iter_rows():
        referral = date.fromisoformat(ref)
        in_window = referral <= end and (closed is None or date.fromisoformat(closed) >= start)
        episodes.setdefault(fid, []).append((in_window, referral))
    expected = []
    for fid, dob in synthetic["children"].select("family_id", "date_of_birth").iter_rows():
        in_window = [r for w, r in episodes[fid] if w]
        ref = max(in_window) if in_window else max(r for _, r in episodes[fid])
        born = date.fromisoformat(dob)
        expected.append(ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day)))
    assert clean_result.tables["children"]["age_at_referral"].to_list() == expected
    assert min(expected) >= 0 and max(expected) <= 18


def test_synthetic_with_injected_errors(synthetic: dict[str, pl.DataFrame]) -> None:
    tables = dict(synthetic)
    fam = tables["families"]
    tables["families"] = fam.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("0")).otherwise(pl.col("household_size"))
        .alias("household_size"))
    goals = tables["goals"]
    tables["goals"] = goals.with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(pl.lit("13/13/2021"))
        .otherwise(pl.col("latest_review_date")).alias("latest_review_date"))
    result = validate_tables(read_tables(render_members(tables), "s.zip"), **WINDOW)
    bad_families = set(fam["family_id"][:3])
    children = synthetic["children"].filter(pl.col("family_id").is_in(bad_families))
    episodes = synthetic["episodes"].filter(pl.col("family_id").is_in(bad_families))
    bad_episodes = set(episodes["episode_id"])
    goal_rows = goals.with_row_index("i").filter(
        pl.col("episode_id").is_in(bad_episodes) | (pl.col("i") == 10))
    referrals = synthetic["specialist_referrals"].filter(pl.col("episode_id").is_in(bad_episodes))
    assert result.quarantined == {
        "families": 3, "children": children.height, "episodes": episodes.height,
        "goals": goal_rows.height, "specialist_referrals": referrals.height,
    }
    for table in TABLES:
        assert result.tables[table].height == synthetic[table].height - result.quarantined[table]


def test_clean_models_accept_the_clean_typed_frames(clean_result: ValidatedTables) -> None:
    episodes = clean_result.tables["episodes"]
    assert episodes.schema["referral_date"] == pl.Date
    assert set(columns_for("episodes", kind="date")) <= set(episodes.columns)


def test_an_empty_table_validates() -> None:
    rows = base_rows()
    rows["specialist_referrals"] = []
    result = run(rows)
    assert result.failures.height == 0
    assert result.rows_read["specialist_referrals"] == 0
    assert result.tables["specialist_referrals"].columns == output_columns("specialist_referrals")
    assert result.tables["specialist_referrals"].schema["start_date"] == pl.Date
