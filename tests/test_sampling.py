"""Sampling frame, strata, wave allocation and draws, tokens; the ``sample`` command."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from tasks.core.contacts import ContactRecord
from tasks.core.home import Home
from tasks.core.runtime import Runtime
from tasks.core.secrets import CONTACT_KEY, Secrets
from tasks.core.settings import Settings
from tasks.ingest.load import store_contacts
from tasks.survey.allocation import hamilton_allocation
from tasks.survey.sampling import (
    Candidate,
    SamplingError,
    SamplingFrame,
    build_frame,
    contact_route,
    draw_wave,
    household_size_band,
    plan_first_wave,
    plan_topup_wave,
    stratum_of,
    wave_seed,
)

EXTRACT_SHA = "e" * 64


# --- population helper (also used by the fieldwork and responses tests) ---------------------

def contact(i: int, preferred: str | None = "email", *, email: bool = True, post: bool = True,
            phone: bool = True, dnc: bool = False) -> ContactRecord:
    """A fake contact record with marker strings that privacy scans look for."""
    return ContactRecord(
        lead_carer_name=f"ZQXNAME{i:06d}",
        address_line_1=f"ZQXADDR{i:06d} Street" if post else None,
        address_line_2=None, town="Northmoor",
        postcode=f"QZ{i % 100:02d} {i % 10}AB" if post else None,
        email=f"zqxmail{i:06d}@example.invalid" if email else None,
        phone=f"07700 900{i % 1000:03d}" if phone else None,
        preferred_contact=preferred, do_not_contact=dnc)


@dataclass
class Fam:
    """One family of a test population."""

    pid: str
    issue: str = "parenting"
    referral_route: str = "school"
    record: ContactRecord | None = None
    in_population: bool = True
    household_size: int = 3
    ethnicity: str = "WBRI"
    episodes: list[tuple[str, date, str]] = field(default_factory=list)


def populate(engine: Engine, home: Home, families: Sequence[Fam], cluster: str = "pilot") -> bytes:
    """Insert families, episodes and contacts as an ingest would; return the contact key."""
    key, _ = Secrets(home).key_or_create(CONTACT_KEY)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO extracts (cluster_id, sha256, file_name, encryption, status, received_at)"
            " VALUES (:c, :s, 'x.zip', 'aes-zip', 'ingested', '2022-01-01')"),
            {"c": cluster, "s": EXTRACT_SHA})
        for f in families:
            conn.execute(text(
                "INSERT INTO families (cluster_id, family_pid, extract_sha256, household_size,"
                " lead_carer_ethnicity, in_population) VALUES (:c, :p, :s, :h, :e, :i)"),
                {"c": cluster, "p": f.pid, "s": EXTRACT_SHA, "h": f.household_size,
                 "e": f.ethnicity, "i": f.in_population})
            episodes = f.episodes or [(f"{f.pid}-ep", date(2021, 3, 1), f.issue)]
            for episode_pid, referred, issue in episodes:
                conn.execute(text(
                    "INSERT INTO episodes (cluster_id, episode_pid, family_pid, referral_date,"
                    " referral_route, primary_issue, in_window, goal_count, stepped_up_res_team,"
                    " stepped_up_early_help_hub, stepped_up_social_care)"
                    " VALUES (:c, :e, :p, :d, :r, :i, :w, 0, false, false, false)"),
                    {"c": cluster, "e": episode_pid, "p": f.pid, "d": referred,
                     "r": f.referral_route, "i": issue, "w": f.in_population})
        store_contacts(conn, key, cluster, EXTRACT_SHA,
                       {f.pid: f.record for f in families if f.record is not None})
    return key


def standard_population() -> list[Fam]:
    """80 in population + 5 out: parenting 40 (e-mail), housing 24 (post), domestic abuse 16 (phone).

    Excluded: 3 parenting do-not-contact, 1 parenting and 1 housing with no details.
    Frame: parenting 36, housing 23, domestic_abuse 16 (75).
    """
    fams: list[Fam] = []
    i = 0
    for issue, n, preferred in (("parenting", 40, "email"), ("housing", 24, "post"),
                                ("domestic_abuse", 16, "phone")):
        for k in range(n):
            i += 1
            record = contact(i, preferred)
            if issue == "parenting" and k < 3:
                record = contact(i, preferred, dnc=True)
            elif issue in ("parenting", "housing") and k == n - 1:
                record = contact(i, preferred, email=False, post=False, phone=False)
            fams.append(Fam(f"fam{i:04d}", issue, record=record))
    for _ in range(5):
        i += 1
        fams.append(Fam(f"fam{i:04d}", "housing", record=contact(i), in_population=False))
    return fams


def survey_settings(base: Settings, **survey: object) -> Settings:
    """A copy of settings with survey overrides."""
    return base.model_copy(update={"survey": base.survey.model_copy(update=survey)})


# --- pure rules -----------------------------------------------------------------------------

def test_contact_route_prefers_then_falls_back_post_email_phone() -> None:
    assert contact_route(contact(1, "email")) == "email"
    assert contact_route(contact(1, "phone")) == "phone"
    assert contact_route(contact(1, "email", email=False)) == "post"
    assert contact_route(contact(1, "post", post=False)) == "email"
    assert contact_route(contact(1, "post", post=False, email=False)) == "phone"
    assert contact_route(contact(1, None, post=False, email=False, phone=False)) is None
    assert contact_route(None) is None
    half_address = ContactRecord("n", "ZQXADDR Street", None, None, None, "   ", None, "post", False)
    assert contact_route(half_address) is None  # post needs line 1 AND postcode; blank = missing


def test_strata_fields_and_bands() -> None:
    c = Candidate("f", "housing", "self", None, 5)
    assert stratum_of(c, "primary_issue") == "housing"
    assert stratum_of(c, "referral_route") == "self"
    assert stratum_of(c, "lead_carer_ethnicity") == "unknown"
    assert stratum_of(c, "household_size_band") == "5+"
    assert [household_size_band(n) for n in (1, 2, 3, 4, 5, None)] == [
        "1-2", "1-2", "3-4", "3-4", "5+", "unknown"]


def test_build_frame_counts_each_exclusion_once() -> None:
    candidates = [Candidate("a", "x"), Candidate("b", "x", withdrawn=True),
                  Candidate("c", "y", sampled=True), Candidate("d", "y"), Candidate("e", "y"),
                  Candidate("f", "y")]
    contacts = {"a": contact(1), "b": contact(2), "c": contact(3), "d": contact(4, dnc=True),
                "e": contact(5, post=False, email=False, phone=False)}  # f: no record at all
    frame = build_frame(candidates, contacts, "primary_issue")
    assert [u.family_pid for u in frame.units] == ["a"]
    assert frame.excluded == {"withdrawn": 1, "already_sampled": 1, "do_not_contact": 1,
                              "no_contact_details": 2}


def _frame(sizes: dict[str, int]) -> SamplingFrame:
    from tasks.survey.sampling import FrameUnit

    units = [FrameUnit(f"{h}-{k:03d}", h, "email") for h, n in sizes.items() for k in range(n)]
    return SamplingFrame(tuple(units), {})


def test_first_wave_hamilton_figures() -> None:
    # q = 20*36/75 = 9.6, 20*23/75 = 6.13, 20*16/75 = 4.27 -> 9, 6, 4 + 1 to parenting (0.6).
    plan = plan_first_wave(_frame({"parenting": 36, "housing": 23, "domestic_abuse": 16}), 20,
                           seed=7, minimum=0, stratify_by="primary_issue")
    assert plan.allocation == {"domestic_abuse": 4, "housing": 6, "parenting": 10}
    assert {h: len(v) for h, v in plan.selected.items()} == plan.allocation
    with pytest.raises(SamplingError, match="size 76 is larger than the sampling frame of 75"):
        plan_first_wave(_frame({"parenting": 36, "housing": 23, "domestic_abuse": 16}), 76,
                        seed=7, minimum=0, stratify_by="primary_issue")
    with pytest.raises(SamplingError, match="minimum of 3 per stratum"):
        plan_first_wave(_frame({"a": 5, "b": 5, "c": 5}), 8, seed=7, minimum=3,
                        stratify_by="primary_issue")


def test_topup_shortfall_figures_and_default_size() -> None:
    # target 10, respondents 5, rate 0.5 -> size 10; T = 15; shares .5/.3/.2;
    # shortfall 7.5-3 = 4.5, 4.5-1 = 3.5, 3-1 = 2 -> 4, 3, 2 + 1 (tie .5/.5 -> larger remaining).
    frame = _frame({"parenting": 26, "housing": 17, "domestic_abuse": 12})
    plan = plan_topup_wave(frame, 2, None, 99, {"parenting": 10, "housing": 6, "domestic_abuse": 4},
                           {"parenting": 3, "housing": 1, "domestic_abuse": 1}, 10, 0.5,
                           "primary_issue")
    assert plan.size == 10
    assert plan.allocation == {"domestic_abuse": 2, "housing": 3, "parenting": 5}
    with pytest.raises(SamplingError, match="not needed: 10 respondents already reach the target of 10"):
        plan_topup_wave(frame, 2, None, 99, {"parenting": 1}, {"parenting": 10}, 10, 0.5,
                        "primary_issue")
    with pytest.raises(SamplingError, match="size 56 is larger than the 55 reachable households"):
        plan_topup_wave(frame, 2, 56, 99, {"parenting": 1}, {}, 10, 0.5, "primary_issue")


def test_wave_seeds_differ_and_fit_bigint() -> None:
    seeds = {wave_seed(20220110, k) for k in range(1, 20)}
    assert wave_seed(20220110, 1) == 20220110 and len(seeds) == 19
    assert all(0 <= s < 2**63 for s in seeds)


strata_sizes = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]),
                               st.integers(min_value=1, max_value=30), min_size=1)


@settings(max_examples=60, deadline=None)
@given(sizes=strata_sizes, first=st.integers(1, 40), topups=st.lists(st.integers(1, 15), max_size=3),
       seed=st.integers(0, 2**40), responded=st.floats(0, 1))
def test_waves_are_disjoint_reproducible_and_hamilton(
        sizes: dict[str, int], first: int, topups: list[int], seed: int, responded: float) -> None:
    def run() -> list[dict[str, list[str]]]:
        frame = _frame(sizes)
        n = min(first, len(frame.units))
        plan = plan_first_wave(frame, n, wave_seed(seed, 1), 0, "primary_issue")
        assert plan.allocation == hamilton_allocation(frame.sizes(), n)
        assert sum(plan.allocation.values()) == n
        waves = [plan.selected]
        drawn = {p for v in plan.selected.values() for p in v}
        for k, size in enumerate(topups, start=2):
            left = SamplingFrame(tuple(u for u in frame.units if u.family_pid not in drawn), {})
            if not left.units:
                break
            resp = {h: int(len(v) * responded) for h, v in plan.selected.items()}
            top = plan_topup_wave(left, k, min(size, len(left.units)), wave_seed(seed, k),
                                  plan.allocation, resp, 10, 0.5, "primary_issue")
            assert sum(top.allocation.values()) == min(size, len(left.units))
            assert all(top.allocation[h] <= left.sizes().get(h, 0) for h in top.allocation)
            new = {p for v in top.selected.values() for p in v}
            assert not new & drawn  # disjoint from every earlier wave
            drawn |= new
            waves.append(top.selected)
        return waves

    assert run() == run()  # same seed, same households


# --- the database ----------------------------------------------------------------------------

def test_wave_one_json_tokens_and_rerun_unchanged(runtime: Runtime) -> None:
    key = populate(runtime.engine, runtime.home, standard_population())
    s = survey_settings(runtime.settings, sample_size=20)
    result = draw_wave(runtime.engine, s, key, 1, None)
    out = result.as_json()
    assert list(out) == ["wave", "frame", "allocation", "households"]
    assert out["frame"] == {"domestic_abuse": 16, "housing": 23, "parenting": 36}
    assert out["allocation"] == {"domestic_abuse": 4, "housing": 6, "parenting": 10}
    assert len(out["households"]) == 20
    assert all(list(h) == ["token", "stratum"] for h in out["households"])
    tokens = [h["token"] for h in out["households"]]
    assert len(set(tokens)) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)  # 24 bytes = 192 bits
    assert result.excluded == {"withdrawn": 0, "already_sampled": 0, "do_not_contact": 3,
                               "no_contact_details": 2}
    again = draw_wave(runtime.engine, s, key, 1, 5)  # a different size changes nothing
    assert json.dumps(again.as_json()) == json.dumps(out) and again.created is False
    with runtime.engine.connect() as conn:
        wave = conn.execute(text("SELECT seed, size, stratify_by FROM waves")).one()
        routes = dict(conn.execute(text(
            "SELECT route, COUNT(*) FROM households GROUP BY route")).all())
    assert tuple(wave) == (20220110, 20, "primary_issue")
    assert routes == {"email": 10, "post": 6, "phone": 4}


def test_same_seed_draws_same_families(tmp_path: Path, sqlite_runtime: Runtime) -> None:
    key = populate(sqlite_runtime.engine, sqlite_runtime.home, standard_population())
    s = survey_settings(sqlite_runtime.settings, sample_size=20)
    first = draw_wave(sqlite_runtime.engine, s, key, 1, None)
    with sqlite_runtime.engine.begin() as conn:
        families = sorted(r[0] for r in conn.execute(text("SELECT family_pid FROM households")))
        for table in ("households", "wave_strata", "waves"):
            conn.execute(text(f"DELETE FROM {table}"))
    second = draw_wave(sqlite_runtime.engine, s, key, 1, None)
    with sqlite_runtime.engine.connect() as conn:
        again = sorted(r[0] for r in conn.execute(text("SELECT family_pid FROM households")))
    assert families == again and len(families) == 20
    assert {h["token"] for h in first.households}.isdisjoint(h["token"] for h in second.households)


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()  # type: ignore[return-value]
                     for t in ("waves", "wave_strata", "households"))


def test_bad_requests_write_nothing(runtime: Runtime) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    with pytest.raises(SamplingError, match="no study population to sample: ingest an extract first"):
        draw_wave(runtime.engine, s, None, 1, None)
    key = populate(runtime.engine, runtime.home, standard_population())
    with pytest.raises(SamplingError, match="wave 2 cannot be drawn before wave 1"):
        draw_wave(runtime.engine, s, key, 2, None)
    with pytest.raises(SamplingError, match="size 76 is larger than the sampling frame of 75"):
        draw_wave(runtime.engine, s, key, 1, 76)
    assert _counts(runtime.engine) == (0, 0, 0)
    draw_wave(runtime.engine, s, key, 1, None)
    with pytest.raises(SamplingError, match="wave 3 cannot be drawn before wave 2"):
        draw_wave(runtime.engine, s, key, 3, None)
    with pytest.raises(SamplingError, match="size 56 is larger than the 55 reachable households"):
        draw_wave(runtime.engine, s, key, 2, 56)
    assert _counts(runtime.engine) == (1, 3, 20)


def test_topup_wave_excludes_sampled_and_withdrawn(runtime: Runtime) -> None:
    key = populate(runtime.engine, runtime.home, standard_population())
    s = survey_settings(runtime.settings, sample_size=20)
    draw_wave(runtime.engine, s, key, 1, None)
    with runtime.engine.begin() as conn:  # one never-sampled housing family withdrew by letter
        first = {r[0] for r in conn.execute(text("SELECT family_pid FROM households"))}
        gone = next(f"fam{i:04d}" for i in range(41, 64) if f"fam{i:04d}" not in first)
        conn.execute(text("INSERT INTO do_not_contact VALUES ('pilot', :p, 'withdrawal', 'x')"),
                     {"p": gone})
    # no responses yet: size = ceil(10 / 0.5) = 20; remaining 26 / 23-6-1 = 16 / 12.
    top = draw_wave(runtime.engine, s, key, 2, None)
    assert top.frame == {"domestic_abuse": 12, "housing": 16, "parenting": 26}
    # shortfall with no respondents: T = 20, shares 10/6/4 of 20 -> exactly 10, 6, 4.
    assert top.allocation == {"domestic_abuse": 4, "housing": 6, "parenting": 10}
    assert top.excluded["already_sampled"] == 20 and top.excluded["withdrawn"] == 1
    with runtime.engine.connect() as conn:
        second = {r[0] for r in conn.execute(text("SELECT family_pid FROM households WHERE wave = 2"))}
        seed = conn.execute(text("SELECT seed FROM waves WHERE wave = 2")).scalar_one()
    assert len(second) == 20 and not second & first and gone not in second
    assert seed == wave_seed(20220110, 2)


def test_latest_in_window_episode_sets_the_stratum(sqlite_runtime: Runtime) -> None:
    fams = [
        Fam("famA", record=contact(1), episodes=[("ep1", date(2021, 1, 5), "housing"),
                                                 ("ep2", date(2021, 4, 1), "parenting")]),
        Fam("famB", record=contact(2), episodes=[("ep3", date(2021, 2, 1), "housing"),
                                                 ("ep9", date(2021, 2, 1), "domestic_abuse")]),
        Fam("famC", record=contact(3), referral_route="self"),
    ]
    key = populate(sqlite_runtime.engine, sqlite_runtime.home, fams)
    result = draw_wave(sqlite_runtime.engine, sqlite_runtime.settings, key, 1, 3)
    # famA: latest referral 2021-04-01 -> parenting; famB: same date, larger pid ep9 -> domestic_abuse.
    assert result.frame == {"domestic_abuse": 1, "parenting": 2}
    by_route = survey_settings(sqlite_runtime.settings, stratify_by="referral_route")
    with sqlite_runtime.engine.begin() as conn:
        for table in ("households", "wave_strata", "waves"):
            conn.execute(text(f"DELETE FROM {table}"))
    assert draw_wave(sqlite_runtime.engine, by_route, key, 1, 3).frame == {"school": 2, "self": 1}


@pytest.mark.e2e
def test_sample_command_json_and_one_line_errors(
        tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_settings

    from cli.main import main
    from tasks.core.runtime import open_runtime

    home = tmp_path / "var"
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    rt = open_runtime(make_settings(home, db))
    populate(rt.engine, rt.home, standard_population())
    rt.engine.dispose()
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", db)
    monkeypatch.setenv("CLUSTER_EVAL_SURVEY__SAMPLE_SIZE", "20")

    assert main(["sample", "--wave", "3", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "cluster-eval: error: wave 3 cannot be drawn before wave 1 (start with --wave 1)"]

    assert main(["sample", "--wave", "1", "--size", "500", "--json"]) == 1
    assert "larger than the sampling frame of 75" in capsys.readouterr().err

    assert main(["sample", "--wave", "1", "--json"]) == 0
    first = capsys.readouterr().out
    out = json.loads(first)
    assert out["allocation"] == {"domestic_abuse": 4, "housing": 6, "parenting": 10}
    assert main(["sample", "--wave", "1", "--json"]) == 0
    assert capsys.readouterr().out == first  # re-running returns the wave unchanged


def test_frame_from_a_real_ingest_matches_the_extract(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    """Ingest a synthetic extract with the real pipeline; recompute the frame from its raw tables."""
    import polars as pl

    from tasks.demo.render import aes_zip, render_members
    from tasks.demo.synthetic import generate_tables
    from tasks.ingest.pipeline import ingest_file, load_ingest_secrets

    rt = sqlite_runtime
    tables = generate_tables(150, seed=5)
    path = tmp_path / "extract.zip"
    path.write_bytes(aes_zip(render_members(tables), "pass-phrase-1"))
    secrets = load_ingest_secrets(Secrets(rt.home, {"CLUSTER_EVAL_EXTRACT_PASSPHRASE": "pass-phrase-1"}))
    assert ingest_file(path, rt, secrets).status == "ingested"

    start, end = rt.settings.study.window_start.isoformat(), rt.settings.study.window_end.isoformat()
    episodes = tables["episodes"].filter(
        (pl.col("referral_date") <= end)
        & (pl.col("closure_date").is_null() | (pl.col("closure_date") >= start)))
    latest = episodes.sort("referral_date").group_by("family_id").agg(pl.col("primary_issue").last())
    fams = tables["families"].join(latest, on="family_id")

    def has(*cols: str) -> pl.Expr:
        return pl.all_horizontal([pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != "")
                                  for c in cols])

    reachable = has("email") | has("address_line_1", "postcode") | has("phone")
    dnc = pl.col("do_not_contact") == "Y"
    expected_frame = dict(sorted(
        fams.filter(~dnc & reachable).group_by("primary_issue").len().iter_rows()))
    result = draw_wave(rt.engine, rt.settings, secrets.contact_key, 1, 10)
    assert result.frame == expected_frame
    assert result.excluded == {"withdrawn": 0, "already_sampled": 0,
                               "do_not_contact": fams.filter(dnc).height,
                               "no_contact_details": fams.filter(~dnc & ~reachable).height}
    assert sum(result.frame.values()) + sum(result.excluded.values()) == fams.height
    assert sum(result.allocation.values()) == 10
