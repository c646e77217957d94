"""Ingest: pseudonyms, derived fields, the one-transaction load and the flow end to end.

Unit tests use tiny inline frames with hand-computed figures. The end-to-end tests build a
synthetic extract with a few planted faults, compute the expected counts independently from
the generated tables (spec rules, not the pipeline's code) and run ``cluster-eval ingest``
in-process on both database backends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, text

from cli.main import main
from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS, TABLES
from tasks.core.contacts import load_contacts
from tasks.core.runtime import Runtime
from tasks.core.secrets import Secrets
from tasks.demo.render import aes_zip, age_encrypt, new_age_identity, render_members, zip_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.pipeline import (
    CheckedFile,
    IngestOutcome,
    IngestSecrets,
    check_bad_rows,
    ingest_file,
    load_ingest_secrets,
    run_stage,
)
from tasks.ingest.pseudonymise import (
    CONTACT_FIELDS,
    pseudonym,
    pseudonymise_failures,
    split_contacts,
)
from tasks.ingest.transform import derive_tables, in_window
from tasks.ingest.validate import ValidatedTables

PASS = "ingest-test-passphrase-7"  # noqa: S105 - test passphrase
WINDOW = (date(2021, 1, 1), date(2021, 6, 30))
STORE_TABLES = ("extracts", "families", "children", "episodes", "episode_issues",
                "episode_services", "goals", "specialist_referrals", "quarantined_rows",
                "contacts", "stored_files", "audit_log")


# --------------------------------------------------------------------------- helpers


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()  # noqa: S608
                for t in STORE_TABLES}


def read_key(home: Path, name: str) -> bytes:
    return base64.urlsafe_b64decode((home / "keys" / name).read_bytes().strip())


def expected_pid(key: bytes, kind: str, source_id: str, cluster: str = "pilot") -> str:
    """The documented pseudonym formula, computed here independently of tasks.ingest.pseudonymise."""
    message = b"\x1f".join([b"cluster-eval/pid/v1", cluster.encode(), kind.encode(),
                            source_id.encode()])
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def set_cell(df: pl.DataFrame, key: str, key_value: str, column: str, value: str,
             nth: int = 0) -> pl.DataFrame:
    """Return df with ``column`` set to ``value`` in the nth row whose ``key`` is key_value."""
    index = df.with_row_index().filter(pl.col(key) == key_value).get_column("index")[nth]
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == index).then(pl.lit(value))
        .otherwise(pl.col(column)).alias(column))


def in_window_episodes(episodes: pl.DataFrame) -> pl.DataFrame:
    """Spec §2 window rule applied to canonical (ISO text) episodes."""
    ref = pl.col("referral_date").str.to_date()
    close = pl.col("closure_date").str.to_date()
    return episodes.filter((ref <= WINDOW[1]) & (close.is_null() | (close >= WINDOW[0])))


class Planted:
    """A generated extract with four planted faults and the independently expected outcome."""

    def __init__(self, families: int = 150, seed: int = 11) -> None:
        tables = generate_tables(families, seed)
        eps, goals, refs = tables[EPISODES], tables[GOALS], tables[SPECIALIST_REFERRALS]
        with_refs = set(refs.get_column("episode_id"))
        fam_eps = eps.group_by("family_id").agg(pl.col("episode_id"))
        clean = [r for r in fam_eps.sort("family_id").iter_rows()
                 if not set(r[1]) & with_refs]
        # 1. a family out of range: it and its children, episodes and their goals fail.
        self.bad_family, self.bad_family_episodes = clean[0][0], set(clean[0][1])
        # 2. an episode with an unknown referral route: it and its goals fail.
        self.bad_episode = clean[1][1][0]
        # 3. a child with an unknown gender; 4. a goal with a baseline score of 11.
        self.bad_child_family = clean[2][0]
        good_goal_episode = clean[3][1][0]
        tables[FAMILIES] = set_cell(tables[FAMILIES], "family_id", self.bad_family,
                                    "household_size", "25")
        tables[EPISODES] = set_cell(eps, "episode_id", self.bad_episode, "referral_route",
                                    "carrier pigeon")
        tables[CHILDREN] = set_cell(tables[CHILDREN], "family_id", self.bad_child_family,
                                    "gender", "robot")
        tables[GOALS] = set_cell(goals, "episode_id", good_goal_episode, "baseline_score", "11")
        self.tables = tables

        failed_episodes = self.bad_family_episodes | {self.bad_episode}
        children = tables[CHILDREN]
        self.quarantined = {
            FAMILIES: 1,
            CHILDREN: children.filter(pl.col("family_id") == self.bad_family).height + 1,
            EPISODES: len(failed_episodes),
            GOALS: goals.filter(pl.col("episode_id").is_in(failed_episodes)).height + 1,
            SPECIALIST_REFERRALS: 0,
        }
        self.rows = {t: tables[t].height for t in TABLES}
        self.loaded_episodes = eps.filter(~pl.col("episode_id").is_in(failed_episodes))
        inside = in_window_episodes(self.loaded_episodes)
        self.population = {"families": inside.get_column("family_id").n_unique(),
                           "episodes": inside.height}

    def members(self, *, messy: bool = True, fmt: str = "csv") -> dict[str, bytes]:
        return render_members(self.tables, fmt=fmt, messy=messy, seed=5)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture
def cli_home(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for ``cluster-eval`` in-process: a private home on the given backend."""
    home = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", database_url)
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    return home


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["ingest", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


# --------------------------------------------------------------------------- unit


def test_pseudonym_is_keyed_stable_and_separates_kinds_and_clusters() -> None:
    key = bytes(range(32))
    pid = pseudonym(key, "pilot", "family", "F000001")
    assert pid == expected_pid(key, "family", "F000001")
    assert len(pid) == 32 and int(pid, 16) >= 0
    assert pseudonym(key, "pilot", "family", "F000001") == pid
    assert pseudonym(key, "pilot", "child", "F000001") != pid
    assert pseudonym(key, "other", "family", "F000001") != pid
    assert pseudonym(bytes(32), "pilot", "family", "F000001") != pid


def test_failure_row_keys_are_pseudonymised_except_row_numbers() -> None:
    key = b"k" * 32
    failures = pl.DataFrame({
        "table": ["families", "goals", "children"],
        "row": [3, 7, 9],
        "row_key": ["F000003", "E000002", "row 9"],
        "column": ["household_size", "baseline_score", "child_id"],
        "rule": ["range", "range", "required"],
        "reason": ["outside the range 1-20", "outside the range 0-10", "required value missing"],
    })
    out = pseudonymise_failures(failures, key, "pilot")
    assert out.columns == ["table", "row_key", "column", "rule", "reason"]
    assert out.get_column("row_key").to_list() == [
        expected_pid(key, "family", "F000003"), expected_pid(key, "episode", "E000002"), "row 9"]


def test_contact_columns_leave_the_families_table() -> None:
    families = pl.DataFrame({
        "family_pid": ["a", "b"], "lead_carer_name": ["N One", None],
        "address_line_1": ["1 Road", None], "address_line_2": [None, None],
        "town": ["Town", None], "postcode": ["NM1 1AA", None], "email": [None, "x@example.org"],
        "phone": [None, None], "preferred_contact": ["post", "email"],
        "do_not_contact": [False, None], "household_size": [3, 2],
    })
    rest, contacts = split_contacts(families)
    assert rest.columns == ["family_pid", "household_size"]
    assert contacts.columns == ["family_pid", *CONTACT_FIELDS]
    records = {row["family_pid"]: row for row in contacts.iter_rows(named=True)}
    assert records["a"]["postcode"] == "NM1 1AA" and records["a"]["do_not_contact"] is False
    assert records["b"]["email"] == "x@example.org"
    assert records["b"]["do_not_contact"] is True  # missing answer: never contact
    assert contacts.schema["do_not_contact"] == pl.Boolean


def _tiny_tables() -> dict[str, pl.DataFrame]:
    d = date.fromisoformat
    families = pl.DataFrame({"family_pid": ["f1", "f2", "f3"], "household_size": [3, 4, 2],
                             "adults_in_employment": [1, 0, 2],
                             "lead_carer_employment": ["unknown"] * 3,
                             "lead_carer_ethnicity": ["WBRI"] * 3,
                             "first_language_english": [True, None, False],
                             "free_school_meals": [True, False, True], "imd_decile": [1, 2, None]})
    episodes = pl.DataFrame({
        "episode_pid": ["e1", "e2", "e3", "e4", "e5"],
        "family_pid": ["f1", "f1", "f2", "f3", "f3"],
        # e1 closes on window start (in), e2 refers on window end (in), e3 closed before
        # the window (out), e4 referred after it (out), e5 open since before it (in).
        "referral_date": [d("2020-10-01"), d("2021-06-30"), d("2020-01-01"), d("2021-07-01"),
                          d("2020-12-01")],
        "referral_route": ["school"] * 5,
        "allocation_date": [d("2020-10-08"), None, d("2020-01-01"), d("2021-07-11"), None],
        "presenting_issues": [["housing", "parenting"], ["housing"], ["other"], ["parenting"],
                              ["housing", "other"]],
        "primary_issue": ["housing", "housing", "other", "parenting", "other"],
        "services": [["family_support"], ["family_support", "child_therapy"],
                     ["family_support"], ["attendance_support"], ["family_support"]],
        "lead_worker_role": ["therapist"] * 5,
        "closure_date": [d("2021-01-01"), None, d("2020-12-31"), d("2021-08-01"), None],
        "closure_outcome": ["goals_achieved", None, "stepped_up_to_social_care", "other", None],
        "onward_referral": ["childrens_social_care", None, "none", "none", None],
    })
    children = pl.DataFrame({"child_pid": ["c1", "c2", "c3", "c4", "c5"],
                             "family_pid": ["f1", "f1", "f2", "f3", "f3"],
                             "gender": ["male"] * 5, "ethnicity": ["WBRI"] * 5,
                             "school_phase": ["primary"] * 5, "sen_support": [None] * 5,
                             "age_at_referral": [4, 5, 15, 16, None]})
    goals = pl.DataFrame({"episode_pid": ["e1", "e1", "e2"], "goal_number": [1, 2, 1],
                          "goal_area": ["housing"] * 3, "baseline_score": [2, 5, 3],
                          "latest_score": [7, None, 1], "latest_review_date": [None] * 3})
    referrals = pl.DataFrame({
        "referral_pid": ["r1", "r2", "r3"], "episode_pid": ["e2", "e2", "e5"],
        "service": ["res_team", "early_help_hub", "res_team"], "reason": ["housing"] * 3,
        "start_date": [d("2021-07-01")] * 3, "end_date": [None] * 3,
        "outcome": ["ongoing", "ongoing", "stepped_up_to_social_care"],
    })
    return {FAMILIES: families, CHILDREN: children, EPISODES: episodes, GOALS: goals,
            SPECIALIST_REFERRALS: referrals}


def test_derived_fields_follow_the_documented_rules() -> None:
    analysis = derive_tables(_tiny_tables(), *WINDOW)
    eps = analysis.tables[EPISODES].sort("episode_pid")
    assert eps.get_column("in_window").to_list() == [True, True, False, False, True]
    assert eps.get_column("length_of_support_days").to_list() == [92, None, 365, 31, None]
    assert eps.get_column("days_to_allocation").to_list() == [7, None, 0, 10, None]
    assert eps.get_column("goal_count").to_list() == [2, 1, 0, 0, 0]
    assert eps.get_column("stepped_up_res_team").to_list() == [False, True, False, False, True]
    assert eps.get_column("stepped_up_early_help_hub").to_list() == [False, True, False, False,
                                                                     False]
    # e1 onward referral to social care, e3 closure outcome, e5 a specialist referral outcome.
    assert eps.get_column("stepped_up_social_care").to_list() == [True, False, True, False, True]
    fams = analysis.tables[FAMILIES].sort("family_pid")
    assert fams.get_column("in_population").to_list() == [True, False, True]
    assert analysis.tables[CHILDREN].get_column("age_band").to_list() == [
        "0-4", "5-10", "11-15", "16-18", None]
    assert analysis.tables[GOALS].get_column("score_change").to_list() == [5, None, -2]
    assert analysis.tables["episode_issues"].height == 7
    assert analysis.tables["episode_services"].height == 6
    assert (analysis.population.families, analysis.population.episodes) == (2, 3)
    assert analysis.outside_window == {FAMILIES: 1, EPISODES: 2}


def test_in_window_is_inclusive_at_both_ends() -> None:
    d = date.fromisoformat
    frame = pl.DataFrame({
        "referral_date": [d("2021-06-30"), d("2021-07-01"), d("2020-01-01"), d("2020-01-01")],
        "closure_date": [None, None, d("2021-01-01"), d("2020-12-31")],
    })
    assert frame.select(in_window(*WINDOW)).to_series().to_list() == [True, False, True, False]


def _validated(rows: dict[str, int], bad: dict[str, int]) -> ValidatedTables:
    return ValidatedTables(tables={}, failures=pl.DataFrame(), rows_read=rows, quarantined=bad)


def test_bad_row_limit_names_the_table_and_the_share() -> None:
    rows = {FAMILIES: 100, CHILDREN: 200, EPISODES: 120, GOALS: 250, SPECIALIST_REFERRALS: 10}
    check_bad_rows(_validated(rows, {GOALS: 12}), 0.05, "x.zip")  # 4.8%: fine
    with pytest.raises(Exception) as caught:
        check_bad_rows(_validated(rows, {GOALS: 18}), 0.05, "x.zip")
    assert str(caught.value) == ("file x.zip, table goals: 7.2% of rows failed validation "
                                 "(limit 5%); see the data-quality report")
    check_bad_rows(_validated(rows, {GOALS: 18}), 0.08, "x.zip")  # configurable


# --------------------------------------------------------------------------- end to end


def _flow_run_id(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT flow_run_id FROM audit_log WHERE event = 'ingest' ORDER BY seq DESC")).scalar_one()


def _prefect_record(flow_run_id: str, last_task: str) -> tuple[set[str], dict[str, Any]]:
    """The run's task names and artifacts. Prefect records task runs from events, a moment after the flow
    returns: read until ``last_task`` is there (at most 30 s)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            names = {r.name.rsplit("-", 1)[0] for r in runs}
            if last_task in names or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return names, {a.key: a for a in artifacts}


@pytest.mark.e2e
def test_cli_ingests_planted_extract_with_exact_counts(
    prefect_harness: None, cli_home: Path, database_url: str, planted: Planted,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbox = cli_home.parent / "inbox"
    inbox.mkdir()
    data = aes_zip(planted.members(), PASS)
    source = inbox / "extract.zip"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (inbox / "extract.zip.sha256").write_text(f"{sha}  extract.zip\n")

    code, result, err = run_cli(capsys, str(source))

    assert code == 0, err
    assert list(result) == ["status", "sha256", "error", "tables", "population"]
    assert result["status"] == "ingested" and result["error"] is None and result["sha256"] == sha
    assert result["tables"] == {
        t: {"rows": planted.rows[t], "loaded": planted.rows[t] - planted.quarantined[t],
            "quarantined": planted.quarantined[t]} for t in TABLES}
    assert result["population"] == planted.population
    assert "created a new pseudonym key" in err and "created a new contact key" in err

    engine = create_engine(database_url)
    try:
        counts = table_counts(engine)
        loaded = {t: planted.rows[t] - planted.quarantined[t] for t in TABLES}
        assert {t: counts[t] for t in TABLES} == loaded
        issues = planted.loaded_episodes.select(
            pl.col("presenting_issues").str.split(";").list.len().sum()).item()
        assert counts["episode_issues"] == issues
        assert counts["quarantined_rows"] == sum(planted.quarantined.values())
        assert counts["contacts"] == loaded[FAMILIES]
        assert (counts["extracts"], counts["stored_files"], counts["audit_log"]) == (1, 2, 1)

        key = read_key(cli_home, "pseudonym_key")
        with engine.connect() as conn:
            keys = {r.row_key for r in conn.execute(text(
                "SELECT row_key FROM quarantined_rows WHERE table_name = 'families'"))}
            assert keys == {expected_pid(key, "family", planted.bad_family)}
            population = conn.execute(text(
                "SELECT COUNT(*) FROM families WHERE in_population")).scalar_one()
            assert population == planted.population["families"]
            extract = conn.execute(text("SELECT status, raw_path, encryption FROM extracts")).one()
            stored = set(conn.execute(text("SELECT path, category FROM stored_files")).all())
            audit = json.loads(conn.execute(text("SELECT details FROM audit_log")).scalar_one())
            first = planted.tables[FAMILIES].filter(
                pl.col("family_id") != planted.bad_family).row(0, named=True)
            records = load_contacts(conn, read_key(cli_home, "contact_key"), "pilot",
                                    [expected_pid(key, "family", first["family_id"])])
        assert extract.status == "ingested" and extract.encryption == "aes-zip"
        raw = Path(extract.raw_path)
        assert raw.parent == cli_home / "raw" and raw.read_bytes() == data
        assert stored == {(str(raw), "raw_extract"), (f"{raw}.sha256", "raw_extract")}
        assert Path(f"{raw}.sha256").read_text() == f"{sha}  extract.zip\n"
        assert not source.exists() and not (inbox / "extract.zip.sha256").exists()
        assert audit["families_loaded"] == loaded[FAMILIES]
        assert audit["goals_quarantined"] == planted.quarantined[GOALS]
        [record] = records.values()
        assert record.postcode == first["postcode"] and record.email == first["email"]

        report = pl.read_csv(cli_home / "outputs" / "data-quality" / f"{sha[:12]}.csv")
        read_rows = dict(report.filter(pl.col("section") == "rows_read")
                         .select("table", "count").iter_rows())
        assert read_rows == planted.rows
        failures = report.filter(pl.col("section") == "failures")
        assert failures.get_column("count").sum() == sum(planted.quarantined.values())
        assert set(failures.get_column("rule")) == {"range", "code_list", "foreign_key"}

        tasks, artifacts = _prefect_record(_flow_run_id(engine), last_task="publish report")
        assert {"check archive", "decrypt", "read", "validate", "pseudonymise", "transform",
                "load", "report", "publish report"} <= tasks
        assert artifacts["pilot-data-quality"].type == "table"
        assert artifacts["pilot-data-quality-summary"].type == "markdown"
        assert "| goals | " in artifacts["pilot-data-quality-summary"].data
        assert "data-quality" not in artifacts and "pilot-data-quality-rejected" not in artifacts
    finally:
        engine.dispose()

    # The same bytes again: a no-op, exit 0, the file left where it is.
    again = inbox / "extract-copy.zip"
    again.write_bytes(data)
    before = table_counts(create_engine(database_url))
    code, result, err = run_cli(capsys, str(again))
    assert code == 0 and result["status"] == "duplicate" and result["sha256"] == sha
    assert result["population"] == planted.population
    assert "created a new" not in err
    assert again.exists() and table_counts(create_engine(database_url)) == before


@pytest.mark.e2e
def test_cli_rejection_exit_code_stderr_and_quarantine(
    prefect_harness: None, cli_home: Path, database_url: str, planted: Planted,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = cli_home.parent / "extract.zip"
    source.write_bytes(aes_zip(planted.members(), PASS))
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", "not-the-passphrase")
    code, result, err = run_cli(capsys, str(source))
    assert code == 1
    assert result["status"] == "rejected"
    assert result["error"].startswith("file extract.zip: wrong passphrase")
    assert err.strip().splitlines()[-1] == f"cluster-eval: error: {result['error']}"
    assert "Traceback" not in err
    assert all(v == 0 for v in table_counts(create_engine(database_url)).values())
    [kept] = [p for p in (cli_home / "quarantine").iterdir() if p.name.endswith("-extract.zip")]
    assert (kept.parent / (kept.name + ".reason.txt")).read_text() == result["error"] + "\n"


# --------------------------------------------------------------------------- pipeline


def _secrets(runtime: Runtime) -> IngestSecrets:
    return load_ingest_secrets(Secrets(runtime.home, {"CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS}))


def _ingest(runtime: Runtime, path: Path, stage: Callable[..., Any] = run_stage,
            secrets: IngestSecrets | None = None) -> IngestOutcome:
    return ingest_file(path, runtime, secrets or _secrets(runtime), stage=stage)


def test_later_extract_links_and_replaces_rows(runtime: Runtime, tmp_path: Path) -> None:
    first = generate_tables(40, seed=21)
    path = tmp_path / "one.zip"
    path.write_bytes(aes_zip(render_members(first), PASS))
    assert _ingest(runtime, path).status == "ingested"

    # The second extract: the first 30 families again (one with a new household size) and
    # the rows of 10 new families, as a later export would hold.
    fams = first[FAMILIES]
    keep = set(fams.get_column("family_id")[:30])
    second = {t: df.filter(pl.col("family_id").is_in(keep)) if "family_id" in df.columns else df
              for t, df in first.items()}
    episodes = set(second[EPISODES].get_column("episode_id"))
    second[GOALS] = first[GOALS].filter(pl.col("episode_id").is_in(episodes))
    second[SPECIALIST_REFERRALS] = first[SPECIALIST_REFERRALS].filter(
        pl.col("episode_id").is_in(episodes))
    target = fams.get_column("family_id")[0]
    second[FAMILIES] = set_cell(second[FAMILIES], "family_id", target, "household_size", "9")
    path2 = tmp_path / "two.zip"
    path2.write_bytes(aes_zip(render_members(second), PASS))
    outcome = _ingest(runtime, path2)
    assert outcome.status == "ingested"

    key = read_key(runtime.home.root, "pseudonym_key")
    with runtime.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT family_pid, household_size, extract_sha256 FROM families")).all()
        episode_rows = conn.execute(text("SELECT COUNT(*) FROM episodes")).scalar_one()
        extracts = conn.execute(text("SELECT COUNT(*) FROM extracts")).scalar_one()
    by_pid = {r.family_pid: r for r in rows}
    assert len(rows) == 40  # 30 replaced + 10 only in the first extract
    assert extracts == 2
    assert by_pid[expected_pid(key, "family", target)].household_size == 9
    assert by_pid[expected_pid(key, "family", target)].extract_sha256 == outcome.sha256
    last = fams.get_column("family_id")[-1]
    assert by_pid[expected_pid(key, "family", last)].extract_sha256 != outcome.sha256
    assert episode_rows == first[EPISODES].height


def test_concurrent_ingests_of_one_file_load_once(runtime: Runtime, tmp_path: Path) -> None:
    """Both runs pass the 'already ingested?' check before either loads: the PK decides."""
    tables = generate_tables(30, seed=8)
    path = tmp_path / "same.zip"
    path.write_bytes(aes_zip(render_members(tables), PASS))
    at_load = threading.Barrier(2, timeout=60)

    def meet_before_load(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if name == "load":
            at_load.wait()
        return fn(*args, **kwargs)

    outcomes: list[IngestOutcome] = []
    errors: list[BaseException] = []
    secrets = _secrets(runtime)  # keys are created once, before the runs

    def worker() -> None:
        try:
            outcomes.append(_ingest(runtime, path, meet_before_load, secrets))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sorted(o.status for o in outcomes) == ["duplicate", "ingested"]
    counts = table_counts(runtime.engine)
    assert counts["extracts"] == 1 and counts["audit_log"] == 1
    assert counts[FAMILIES] == 30 and counts["contacts"] == 30
    assert len(list((runtime.home.raw).iterdir())) == 1


def test_failed_load_rolls_back_and_leaves_the_file(runtime: Runtime, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.ingest.load

    path = tmp_path / "x.zip"
    path.write_bytes(aes_zip(render_members(generate_tables(20, seed=4)), PASS))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit unavailable")

    monkeypatch.setattr(tasks.ingest.load, "append_audit", broken)
    with pytest.raises(Exception, match="load stage stopped on an unexpected RuntimeError"):
        _ingest(runtime, path)
    assert all(v == 0 for v in table_counts(runtime.engine).values())
    assert path.exists() and not list(runtime.home.raw.iterdir())


def test_checked_file_keeps_bytes_out_of_repr(tmp_path: Path) -> None:
    checked = CheckedFile(path=tmp_path / "x", sha256="0" * 64, data=b"secret")
    assert "secret" not in repr(checked)



@pytest.mark.parametrize(("fmt", "encoding", "encryption"), [
    ("csv", "utf-8-sig", "age-x25519"),
    ("csv", "cp1252", "aes-zip"),
    ("xlsx", "utf-8", "aes-zip"),
])
def test_every_delivery_form_ingests_every_row(sqlite_runtime: Runtime, tmp_path: Path,
                                               fmt: str, encoding: str, encryption: str) -> None:
    tables = generate_tables(30, seed=41)
    members = render_members(tables, fmt=fmt, messy=True, encoding=encoding,  # type: ignore[arg-type]
                             seed=2)
    identity, recipient = new_age_identity()
    path = tmp_path / f"extract.{'age' if encryption.startswith('age') else 'zip'}"
    path.write_bytes(age_encrypt(zip_members(members), recipient=recipient)
                     if encryption == "age-x25519" else aes_zip(members, PASS))
    secrets = replace(_secrets(sqlite_runtime), identity=f"# key\n{identity}\n")

    outcome = ingest_file(path, sqlite_runtime, secrets)

    assert outcome.status == "ingested", outcome.error
    assert {t: (c.rows, c.loaded, c.quarantined) for t, c in outcome.tables.items()} == {
        t: (tables[t].height, tables[t].height, 0) for t in TABLES}
    inside = in_window_episodes(tables[EPISODES])
    assert (outcome.population.families, outcome.population.episodes) == (
        inside.get_column("family_id").n_unique(), inside.height)
    with sqlite_runtime.engine.connect() as conn:
        encryption_stored = conn.execute(text("SELECT encryption FROM extracts")).scalar_one()
    assert encryption_stored == ("age" if encryption == "age-x25519" else "aes-zip")
    assert (sqlite_runtime.home.keys / "pseudonym_key").stat().st_mode & 0o777 == 0o600


def test_analysis_tables_hold_only_kept_and_derived_columns() -> None:
    """Read against schemas.columns: no PII, free text or id column reaches the store."""
    from schemas.columns import RULES
    from tasks.ingest.pseudonymise import CONTACT_FIELDS, ID_COLUMNS
    from tasks.ingest.transform import ANALYSIS_COLUMNS

    lists = {"presenting_issues": ("episode_issues", "issue"),
             "services": ("episode_services", "service")}
    for r in RULES:
        stored = ANALYSIS_COLUMNS[r.table]
        if r.action == "keep" and r.kind == "code_list":
            table, column = lists[r.column]
            assert column in ANALYSIS_COLUMNS[table]
        elif r.action == "keep":
            assert r.column in stored, r
        elif r.action == "pseudonymise":
            assert ID_COLUMNS[r.column][1] in stored
        assert r.action == "keep" or r.column not in stored, r
    assert set(CONTACT_FIELDS) == {r.column for r in RULES if r.action == "contact_store"}
    assert "age_at_referral" in ANALYSIS_COLUMNS[CHILDREN]


def test_copy_is_derived_only_from_plain_named_inserts() -> None:
    from tasks.ingest.load import INSERTS, copy_statement

    sql, columns = copy_statement(INSERTS[GOALS])
    assert sql == ("COPY goals (cluster_id, episode_pid, goal_number, goal_area, baseline_score, "
                   "latest_score, latest_review_date, score_change) FROM STDIN")
    assert columns[:3] == ["cluster_id", "episode_pid", "goal_number"]
    assert all(copy_statement(statement) for statement in INSERTS.values())
    assert copy_statement("contacts_insert") is not None
    assert copy_statement("ingest_delete_family") is None  # not an insert: executemany
