"""The benchmark tools: the pandas + pandera peer gives the project's result, and the benchmark's JSON adds up.

The peer (benchmarks/peer_pandas.py) is only a fair yardstick if it does the same work: here a
300-family extract, rendered messy (header variants, UK dates, yes/no spellings, CRLF) with
faults planted in every table, goes through the project's pipeline and through the peer into
two SQLite files; every clean table read back must be equal row for row (pseudonyms and
derived values included), the quarantined row keys too, and each family's contact record
decrypts to the same values. The second test runs ``benchmarks/ingest.py`` at a tiny size
through the real command and checks that its JSON is complete and consistent (no timings
asserted: speed is a benchmark, never a test).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS, TABLES
from schemas.columns import ANALYSIS_COLUMNS
from tasks.core.contacts import load_contacts
from tasks.core.runtime import open_runtime
from tasks.core.settings import Settings
from tasks.demo.render import aes_zip, render_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.pipeline import IngestSecrets, ingest_file

ROOT = Path(__file__).resolve().parents[1]
PASS = "bench-test-passphrase-3"  # noqa: S105 - test passphrase
WINDOW = (date(2021, 1, 1), date(2021, 6, 30))
PSEUDONYM_KEY, CONTACT_KEY = b"p" * 32, b"c" * 32


def _module(file: str, name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{file}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


peer = _module("peer_pandas", "bench_peer_pandas")


def set_cell(df: pl.DataFrame, index: int, column: str, value: str | None) -> pl.DataFrame:
    """df with ``column`` of the row at position ``index`` set to ``value``."""
    return df.with_columns(pl.when(pl.int_range(pl.len()) == index).then(pl.lit(value, dtype=pl.String))
                           .otherwise(pl.col(column)).alias(column))


def planted_tables(families: int = 300, seed: int = 7) -> dict[str, pl.DataFrame]:
    """A synthetic extract with faults of every kind the rules catch, a few in each table."""
    t = generate_tables(families, seed)
    f, c, e, g, r = (t[name] for name in TABLES)
    f = set_cell(f, 3, "household_size", "25")                      # range
    f = set_cell(f, 5, "adults_in_employment", "9")                 # more adults than household (or range)
    f = set_cell(f, 7, "postcode", "NOT A CODE")                    # shape
    f = set_cell(f, 9, "email", "nobody-at-example")                # shape
    f = set_cell(f, 11, "lead_carer_ethnicity", "ZZZZ")             # code list
    f = set_cell(f, 13, "free_school_meals", "maybe")               # type
    f = set_cell(f, 15, "imd_decile", "4.0")                        # fine: a whole number
    f = set_cell(f, 17, "family_id", f.get_column("family_id")[18])  # duplicate key: both rows
    f = set_cell(f, 21, "family_id", None)                          # required
    f = set_cell(f, 23, "do_not_contact", None)                     # required
    c = set_cell(c, 2, "gender", "robot")
    c = set_cell(c, 4, "date_of_birth", "31/02/2015")               # no such date
    c = set_cell(c, 6, "date_of_birth", "12/31/2015")               # US date
    c = set_cell(c, 8, "date_of_birth", "1990-01-01")               # age over 18
    c = set_cell(c, 10, "child_id", c.get_column("child_id")[11])
    c = set_cell(c, 12, "family_id", "NO-SUCH-FAMILY")              # orphan
    c = set_cell(c, 14, "sen_support", "perhaps")
    e = set_cell(e, 3, "referral_route", "carrier pigeon")
    e = set_cell(e, 5, "referral_date", None)
    e = set_cell(e, 7, "primary_issue", "housing")                  # maybe not presenting
    e = set_cell(e, 7, "presenting_issues", "parenting; Child_Mental_Health")
    e = set_cell(e, 9, "presenting_issues", "parenting;dragons")
    e = set_cell(e, 11, "closure_date", "2001-01-01")               # before referral
    e = set_cell(e, 13, "closure_outcome", None)
    e = set_cell(e, 13, "closure_date", "2021-12-31")               # closed without outcome (if open before)
    e = set_cell(e, 15, "allocation_date", "1999-05-05")
    g = set_cell(g, 1, "baseline_score", "11")
    g = set_cell(g, 3, "goal_number", "7")
    g = set_cell(g, 5, "latest_review_date", "2000-01-01")          # before the episode's referral
    g = set_cell(g, 8, "goal_number", g.get_column("goal_number")[9])
    g = set_cell(g, 8, "episode_id", g.get_column("episode_id")[9])  # duplicate (episode, goal)
    g = set_cell(g, 12, "latest_score", "+3")
    extra = g.filter(pl.col("episode_id") == g.get_column("episode_id")[20]).head(1)
    g = pl.concat([g, extra.with_columns(pl.lit("2").alias("goal_number")),
                   extra.with_columns(pl.lit("3").alias("goal_number")),
                   extra.with_columns(pl.lit("1").alias("goal_number"))])  # a 4th+ goal
    r = set_cell(r, 1, "end_date", "2000-01-01")
    r = set_cell(r, 2, "start_date", "2000-01-01")
    r = set_cell(r, 3, "outcome", "vanished")
    return dict(zip(TABLES, (f, c, e, g, r), strict=True))


def write_planted(path: Path) -> Path:
    tables = planted_tables()
    valid_dates = {**tables, CHILDREN: tables[CHILDREN].with_columns(pl.lit("2015-01-01").alias("date_of_birth"))}
    members = render_members(valid_dates, fmt="csv", messy=True, seed=3)
    # Messy rendering re-writes valid dates only: children (with impossible dates) are rendered plain.
    members["children.csv"] = render_members(tables, fmt="csv")["children.csv"]
    path.write_bytes(aes_zip(members, PASS))
    return path


def read_back(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every analysis table (its analysis columns) and the quarantined row keys, sorted."""
    engine = create_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table, columns in ANALYSIS_COLUMNS.items():
            rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} "  # noqa: S608 - fixed names
                                     "WHERE cluster_id = 'pilot'"))
            out[table] = sorted(tuple(str(v)[:10] if isinstance(v, date) else v for v in row) for row in rows)
        keys = conn.execute(text("SELECT DISTINCT table_name, row_key, column_name, rule FROM quarantined_rows"))
        out["quarantined_rows"] = sorted(tuple(row) for row in keys)
        out["extract"] = [tuple(row) for row in conn.execute(text("SELECT DISTINCT extract_sha256 FROM families"))]
    engine.dispose()
    return out


def test_the_peer_loads_the_same_clean_rows_and_quarantines_the_same_rows(tmp_path: Path) -> None:
    extract = write_planted(tmp_path / "extract.zip")
    settings = Settings(home=tmp_path / "var", database_url=None, ingest={"max_bad_row_fraction": 0.5})
    runtime = open_runtime(settings)
    secrets = IngestSecrets(passphrase=PASS, identity=None, pseudonym_key=PSEUDONYM_KEY, contact_key=CONTACT_KEY)
    copy = tmp_path / "peer-extract.zip"
    copy.write_bytes(extract.read_bytes())  # the project moves its file into HOME/raw
    outcome = ingest_file(extract, runtime, secrets)
    assert outcome.status == "ingested", outcome.error
    project_url = str(runtime.engine.url)
    runtime.engine.dispose()

    peer_url = f"sqlite:///{tmp_path / 'peer.sqlite'}"
    result = peer.ingest(copy, peer_url, passphrase=PASS, pseudonym_key=PSEUDONYM_KEY,
                         contact_key=CONTACT_KEY, window=WINDOW, max_bad_row_fraction=0.5)

    ours, theirs = read_back(project_url), read_back(peer_url)
    for table in (*ANALYSIS_COLUMNS, "quarantined_rows", "extract"):
        assert ours[table] == theirs[table], table
    # Every kind of planted fault was caught, in every table, and the counts agree.
    counts = {t: c.quarantined for t, c in outcome.tables.items()}
    assert counts == result.quarantined
    assert all(counts[t] >= 3 for t in TABLES), counts
    assert {t: c.rows for t, c in outcome.tables.items()} == result.rows_read
    assert {t: c.loaded for t, c in outcome.tables.items()} == {t: result.loaded[t] for t in TABLES}
    assert len(ours[FAMILIES]) == outcome.tables[FAMILIES].loaded > 250
    assert ours["episode_issues"] and ours["episode_services"]
    # The same contact details are sealed for the same families, under the same key.
    engines = [create_engine(project_url), create_engine(peer_url)]
    sealed = []
    for engine in engines:
        with engine.connect() as conn:
            sealed.append(load_contacts(conn, CONTACT_KEY, "pilot"))
        engine.dispose()
    assert sealed[0] == sealed[1] and len(sealed[0]) == len(ours[FAMILIES])
    # Derived values are really there (not all missing).
    episodes = pl.DataFrame(ours[EPISODES], schema=list(ANALYSIS_COLUMNS[EPISODES]), orient="row")
    assert episodes.get_column("in_window").sum() > 0 and episodes.get_column("goal_count").sum() > 0
    children = pl.DataFrame(ours[CHILDREN], schema=list(ANALYSIS_COLUMNS[CHILDREN]), orient="row")
    assert children.get_column("age_band").null_count() < children.height
    assert ours[GOALS] and ours[SPECIALIST_REFERRALS]


@pytest.mark.e2e
def test_the_benchmark_runs_the_real_command_and_writes_consistent_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_EVAL_", "PREFECT_"))}
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "benchmarks" / "ingest.py"), "--sizes", "200", "--cache",
         str(tmp_path / "cache"), "--json", str(out), "--postgres-sizes"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    meta = json.loads((tmp_path / "cache" / "extract-200-1.json").read_text())
    [run] = result["runs"]
    assert (run["families"], run["backend"]) == (200, "sqlite")
    ingest = _module("ingest", "bench_ingest")
    assert set(run["stages"]) == set(ingest.STAGES) and all(run["stages"][s] > 0 for s in ingest.WHOLE)
    # The figures add up: stages within the wall, Prefect's share the rest, ratios to the same bare read.
    assert run["stage_sum_s"] <= run["wall_s"]
    assert run["prefect_share_s"] == pytest.approx(run["wall_s"] - run["stage_sum_s"])
    # ... split into before the first stage and after the last, the stages' gaps being the rest.
    assert run["before_stages_s"] > 0 and run["after_stages_s"] > 0 and run["warm_up_s"] > 0
    assert run["before_stages_s"] + run["after_stages_s"] <= run["prefect_share_s"] + 0.05
    assert run["whole_ingest_s"] == pytest.approx(sum(run["stages"][s] for s in ingest.WHOLE))
    assert run["whole_ingest_s"] <= run["stage_sum_s"]
    assert run["bare_read_csv_s"] > 0
    assert run["ratios"]["load"] == pytest.approx(run["stages"]["load"] / run["bare_read_csv_s"])
    assert 0 < run["stage_peak_rss_mib"] and 0 < run["peak_rss_mib"]
    assert result["status_startup_s"] > 0
    # Rows: every generated row read and loaded (a clean extract), the same counts in the database.
    assert {t: c["rows"] for t, c in run["tables"].items()} == meta["rows"] == run["rows"]
    assert {t: c["loaded"] for t, c in run["tables"].items()} == meta["rows"]
    assert all(c["quarantined"] == 0 for c in run["tables"].values())
    assert {t: run["loaded_rows"][t] for t in TABLES} == meta["rows"]
    assert run["loaded_rows"]["contacts"] == 200 and run["loaded_rows"]["quarantined_rows"] == 0
    assert run["loaded_rows_total"] == sum(run["loaded_rows"].values())
    assert run["load_rows_per_s"] == pytest.approx(run["loaded_rows_total"] / run["stages"]["load"])
    # The peer ran on the same extract and loaded the same rows.
    assert run["peer"]["loaded"] == {t: run["loaded_rows"][t] for t in ANALYSIS_COLUMNS}
    assert run["peer"]["x_command_wall"] == pytest.approx(run["peer"]["wall_s"] / run["wall_s"])
    assert set(run["peer"]["stages"]) == {"decrypt", "read", "validate", "pseudonymise", "transform", "load"}
    # The targets are listed with their figures; the table names every stage.
    names = [t["target"] for t in result["targets"]]
    assert "Prefect share s, sqlite 200" in names and "peer / command wall, sqlite 200" in names
    for stage in ingest.STAGES:
        assert f"  {stage} s (x bare)" in done.stdout
