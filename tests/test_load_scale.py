"""The set-wise load (tasks/ingest/load.py): replacement, foreign keys proved set-wise, pragmas.

Small hand-made analysis tables on both backends; figures, never timings (the speed is measured by
benchmarks/ingest.py).
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, text

from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS
from schemas.columns import ANALYSIS_COLUMNS, EPISODE_ISSUES, EPISODE_SERVICES
from tasks.core.contacts import ContactRecord, load_contacts
from tasks.core.errors import UserFacingError
from tasks.core.runtime import Runtime
from tasks.ingest.load import (
    CONTACTS,
    PRIMARY_KEYS,
    REPLACE_DELETES,
    REPLACE_EPISODES,
    ExtractFile,
    bulk_connection,
    load_extract,
    store_contacts,
)
from tasks.ingest.transform import AnalysisTables, Population

CONTACT_KEY = b"k" * 32
CONTACT = ContactRecord(lead_carer_name="A Carer", address_line_1="1 Road", address_line_2=None,
                        town="Town", postcode="LS1 1AA", email="a@example.org", phone=None,
                        preferred_contact="email", do_not_contact=False)
DATES = {"referral_date", "allocation_date", "closure_date", "latest_review_date", "start_date",
         "end_date"}
FLAGS = {"first_language_english", "free_school_meals", "in_population", "sen_support",
         "in_window", "stepped_up_res_team", "stepped_up_early_help_hub", "stepped_up_social_care"}
NUMBERS = {"household_size", "adults_in_employment", "imd_decile", "age_at_referral",
           "length_of_support_days", "days_to_allocation", "goal_count", "goal_number",
           "baseline_score", "latest_score", "score_change"}
ANALYSIS = (FAMILIES, CHILDREN, EPISODES, EPISODE_ISSUES, EPISODE_SERVICES, GOALS,
            SPECIALIST_REFERRALS)


def _value(column: str) -> Any:
    if column in DATES:
        return date(2021, 3, 1)
    if column in FLAGS:
        return False
    if column in NUMBERS:
        return 1
    return "x"


def _frame(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A table's analysis frame: the given key columns, every other column a plain value."""
    columns = ANALYSIS_COLUMNS[table]
    schema = {c: pl.Date if c in DATES else pl.Boolean if c in FLAGS
              else pl.Int64 if c in NUMBERS else pl.String for c in columns}
    return pl.DataFrame([{c: row.get(c, _value(c)) for c in columns} for row in rows], schema=schema)


def _family(f: str, episodes: tuple[str, ...], child: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """One family's rows: a child, its episodes, each with an issue, a service, a goal, a referral."""
    return {
        FAMILIES: [{"family_pid": f}],
        CHILDREN: [{"child_pid": child or f"{f}-c", "family_pid": f}],
        EPISODES: [{"episode_pid": e, "family_pid": f} for e in episodes],
        EPISODE_ISSUES: [{"episode_pid": e, "issue": "parenting"} for e in episodes],
        EPISODE_SERVICES: [{"episode_pid": e, "service": "family_support"} for e in episodes],
        GOALS: [{"episode_pid": e, "goal_number": 1} for e in episodes],
        SPECIALIST_REFERRALS: [{"referral_pid": f"{e}-r", "episode_pid": e} for e in episodes],
    }


def _only(table: str, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows of one table only (the other tables empty)."""
    return {t: rows if t == table else [] for t in ANALYSIS}


def _tables(*families: dict[str, list[dict[str, Any]]]) -> AnalysisTables:
    tables = {t: _frame(t, [row for fam in families for row in fam[t]]) for t in ANALYSIS}
    return AnalysisTables(tables=tables, population=Population(families=0, episodes=0),
                          outside_window={})


def _load(engine: Engine, home: Path, cluster: str, tag: str, analysis: AnalysisTables,
          contacts: Any = None) -> tuple[bool, ExtractFile]:
    source = home / f"{cluster}-{tag}.zip"
    source.write_bytes(tag.encode())
    extract = ExtractFile(source=source, raw_path=home / "raw" / f"{cluster}-{tag}.zip",
                          sha256=hashlib.sha256(f"{cluster}{tag}".encode()).hexdigest(),
                          encryption="aes-zip")
    if contacts is None:
        families = analysis.tables[FAMILIES].get_column("family_pid").to_list()
        contacts = dict.fromkeys(families, CONTACT)
    failures = pl.DataFrame(schema=dict.fromkeys(("table", "row_key", "column", "rule", "reason"),
                                                 pl.String))
    done = load_extract(engine, cluster, extract, analysis, contacts, CONTACT_KEY, failures,
                        {"test": 1})
    return done, extract


def _counts(engine: Engine, cluster: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t} WHERE cluster_id = :c"),
                                {"c": cluster}).scalar_one()
                for t in (*ANALYSIS, CONTACTS, "extracts")}


def _keys(engine: Engine, table: str, column: str, cluster: str = "pilot") -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(
            text(f"SELECT {column} FROM {table} WHERE cluster_id = :c"), {"c": cluster})}


def test_replacement_removes_exactly_the_resent_families_rows(runtime: Runtime, tmp_path: Path) -> None:
    engine = runtime.engine
    first = _tables(_family("f1", ("e1", "e2")), _family("f2", ("e3",)), _family("f3", ()))
    assert _load(engine, tmp_path, "pilot", "a", first)[0]
    assert _load(engine, tmp_path, "other", "a", first)[0]  # same pseudonyms, another cluster
    before_other = _counts(engine, "other")
    # The second extract re-sends f1 with a new child and one new episode (e1, e2 are gone), and
    # re-sends episode e3 of f2 on its own (f2 itself is not re-sent).
    resent = _family("f1", ("e9",), child="f1-new")
    lone: dict[str, list[dict[str, Any]]] = {t: [] for t in ANALYSIS} | {
        EPISODES: [{"episode_pid": "e3", "family_pid": "f2"}],
        GOALS: [{"episode_pid": "e3", "goal_number": 2}]}
    done, second = _load(engine, tmp_path, "pilot", "b", _tables(resent, lone),
                         contacts={"f1": CONTACT})
    assert done
    assert _counts(engine, "pilot") == {
        FAMILIES: 3, CHILDREN: 3, EPISODES: 2, EPISODE_ISSUES: 1, EPISODE_SERVICES: 1, GOALS: 2,
        SPECIALIST_REFERRALS: 1, CONTACTS: 3, "extracts": 2}
    assert _keys(engine, CHILDREN, "child_pid") == {"f1-new", "f2-c", "f3-c"}
    assert _keys(engine, EPISODES, "episode_pid") == {"e9", "e3"}
    assert _keys(engine, GOALS, "episode_pid || ':' || goal_number") == {"e9:1", "e3:2"}
    assert _keys(engine, SPECIALIST_REFERRALS, "referral_pid") == {"e9-r"}
    assert _keys(engine, EPISODE_ISSUES, "episode_pid") == {"e9"}
    with engine.connect() as conn:
        by_extract: dict[str, str] = dict(conn.execute(text(
            "SELECT family_pid, extract_sha256 FROM contacts WHERE cluster_id = 'pilot'")).all())
        assert load_contacts(conn, CONTACT_KEY, "pilot") == dict.fromkeys(("f1", "f2", "f3"), CONTACT)
    assert by_extract["f1"] == second.sha256 and by_extract["f2"] != second.sha256
    assert _counts(engine, "other") == before_other


def test_an_orphan_row_rolls_the_whole_load_back(runtime: Runtime, tmp_path: Path) -> None:
    engine = runtime.engine
    assert _load(engine, tmp_path, "pilot", "a", _tables(_family("f1", ("e1",))))[0]
    before = _counts(engine, "pilot")
    orphan = _only(GOALS, [{"episode_pid": "missing", "goal_number": 1}])
    with pytest.raises(UserFacingError, match="nothing was stored"):
        _load(engine, tmp_path, "pilot", "b", _tables(_family("f1", ("e2",)), orphan))
    assert _counts(engine, "pilot") == before
    assert _keys(engine, EPISODES, "episode_pid") == {"e1"}  # the replacement was rolled back too
    assert (tmp_path / "pilot-b.zip").is_file() and not (tmp_path / "raw" / "pilot-b.zip").exists()


def test_a_duplicate_extract_is_reported_and_changes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    engine = runtime.engine
    tables = _tables(_family("f1", ("e1",)))
    assert _load(engine, tmp_path, "pilot", "a", tables)[0]
    before = _counts(engine, "pilot")
    assert _load(engine, tmp_path, "pilot", "a", tables)[0] is False
    assert _counts(engine, "pilot") == before


def _pragmas(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one(),
                conn.exec_driver_sql("PRAGMA cache_size").scalar_one())


def test_load_connection_pragmas_are_restored(runtime: Runtime, tmp_path: Path) -> None:
    engine = runtime.engine
    if engine.dialect.name != "sqlite":  # PostgreSQL keeps its foreign-key triggers
        with bulk_connection(engine, 1_000_000) as (_conn, enforced):
            assert enforced
        return
    default = _pragmas(engine)
    assert default[0] == 1
    with bulk_connection(engine, 1_000_000) as (conn, enforced):
        assert not enforced
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -156_250
    assert _pragmas(engine) == default
    assert _load(engine, tmp_path, "pilot", "a", _tables(_family("f1", ("e1",))))[0]
    assert _pragmas(engine) == default
    orphan = _only(CHILDREN, [{"child_pid": "c", "family_pid": "nope"}])
    with pytest.raises(UserFacingError):
        _load(engine, tmp_path, "pilot", "b", _tables(orphan))
    assert _pragmas(engine) == default
    with pytest.raises(RuntimeError), bulk_connection(engine, 10) as (conn, _), conn.begin():
        raise RuntimeError("killed mid-load")
    assert _pragmas(engine) == default


def test_every_foreign_key_into_a_replaced_table_has_its_delete(sqlite_runtime: Runtime) -> None:
    from tasks.core.db import query

    with sqlite_runtime.engine.connect() as conn:
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        keys = {(table, fk[2], fk[3]) for table in tables
                for fk in conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})")}
        primary = {table: tuple(c[1] for c in sorted(
            (c for c in conn.exec_driver_sql(f"PRAGMA table_info({table})") if c[5]),
            key=lambda c: c[5])) for table in ANALYSIS}
    into_replaced = {(child, column) for child, parent, column in keys
                     if parent in (FAMILIES, EPISODES) and column != "cluster_id"}
    assert into_replaced == {(CHILDREN, "family_pid"), (EPISODES, "family_pid"),
                             (EPISODE_ISSUES, "episode_pid"), (EPISODE_SERVICES, "episode_pid"),
                             (GOALS, "episode_pid"), (SPECIALIST_REFERRALS, "episode_pid")}
    deletes = [query(name).text for name in (*REPLACE_EPISODES, *REPLACE_DELETES)]
    for child, column in into_replaced:
        assert any(f"FROM {child} " in sql and f"{column} IN" in sql for sql in deletes), child
    orphans = query("ingest_orphans").text
    for child, parent, _column in keys:
        if child in ANALYSIS:
            assert f"FROM {child} c " in orphans and f"FROM {parent} p " in orphans, child
    assert primary == {t: ("cluster_id", *PRIMARY_KEYS[t]) for t in ANALYSIS}


def test_contacts_may_come_as_a_frame(runtime: Runtime) -> None:
    fields = list(ContactRecord.__dataclass_fields__)
    frame = pl.DataFrame([{"family_pid": "f1", **{f: getattr(CONTACT, f) for f in fields}},
                          {"family_pid": "f2", **{f: getattr(CONTACT, f) for f in fields}}])
    with runtime.engine.begin() as conn:
        assert store_contacts(conn, CONTACT_KEY, "pilot", "a" * 64, {"f1": CONTACT}) == 1
        assert store_contacts(conn, CONTACT_KEY, "pilot", "b" * 64, frame) == 2
    with runtime.engine.connect() as conn:
        assert load_contacts(conn, CONTACT_KEY, "pilot") == {"f1": CONTACT, "f2": CONTACT}
        stored: dict[str, str] = dict(conn.execute(text("SELECT family_pid, extract_sha256 FROM contacts")).all())
    assert stored == {"f1": "b" * 64, "f2": "b" * 64}
