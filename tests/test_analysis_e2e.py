"""``cluster-eval analyse`` end to end: the CLI and the Prefect flow on a seeded study.

``random_study`` builds a realistic study (150 families, two survey waves, ~55% response)
with the ``Study`` helper of test_analysis, so the outputs have every kind of figure.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from test_analysis import CLI_COLUMNS, Study, base_study

from cli.main import main
from schemas.codes import (
    CLOSURE_OUTCOME,
    ETHNICITY_CODES,
    GENDER,
    ONWARD_REFERRAL,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_SERVICE,
)
from tasks.analysis.registry import CLI_TABLES, TABLES, OneWay
from tasks.core.runtime import Runtime, use_runtime

pytestmark = pytest.mark.e2e


def random_study(seed: int = 7, families: int = 150) -> Study:
    """A seeded study: episodes in and out of window, goals, referrals, two survey waves."""
    rng = random.Random(seed)
    s = Study()
    first_issue: dict[str, str] = {}
    for f in range(1, families + 1):
        fam = f"F{f:04d}"
        s.family(fam, size=rng.randint(1, 9), adults=rng.choice([0, 1, 1, 2, 2, 3, None]),
                 employment=rng.choice(["unemployed", "employed_part_time", "unknown", None]),
                 ethnicity=rng.choice(["WBRI"] * 6 + list(ETHNICITY_CODES[:8]) + [None]),
                 english=rng.random() < 0.8, fsm=rng.random() < 0.6, imd=rng.randint(1, 4))
        for c in range(rng.randint(1, 3)):
            s.child(f"{fam}C{c}", fam, rng.choice(GENDER), rng.choice(["WBRI", "APKN", "BAFR"]),
                    rng.randint(4, 16))
        for e in range(rng.choice([1, 1, 1, 2])):
            issues = rng.sample(PRESENTING_ISSUES, rng.randint(1, 3))
            referral = f"2021-{rng.randint(1, 6):02d}-{rng.randint(1, 26):02d}"
            closed = rng.random() < 0.75
            in_window = not (e == 1 and rng.random() < 0.3)
            if not in_window:
                referral = "2020-03-02"
            ep = f"{fam}E{e}"
            s.episode(ep, fam, referral, rng.choice(REFERRAL_ROUTE), issues,
                      services=rng.sample(SERVICES, rng.randint(1, 2)),
                      allocation=referral[:8] + f"{int(referral[8:]) + rng.randint(0, 2):02d}",
                      closure=(f"{2021 + rng.randint(0, 1)}-{rng.randint(7, 12):02d}-15"
                               if in_window else "2020-06-15") if closed else None,
                      outcome=rng.choice(CLOSURE_OUTCOME) if closed else None,
                      onward=rng.choice(ONWARD_REFERRAL) if closed else None,
                      in_window=in_window if closed else True)
            first_issue.setdefault(fam, issues[0])
            for g in range(rng.randint(0, 3)):
                s.goal(ep, g + 1, rng.choice(issues), rng.randint(0, 6),
                       rng.choice([None, rng.randint(2, 10)]))
            if rng.random() < 0.15:
                s.referral(f"{ep}R", ep, rng.choice(SPECIALIST_SERVICE), issues[0],
                           rng.choice(SPECIALIST_OUTCOME))
    frame = Counter(first_issue.values())
    order = sorted(first_issue)
    rng.shuffle(order)
    wave1, wave2 = order[:50], order[50:62]
    s.wave(1, {k: (n, sum(1 for f in wave1 if first_issue[f] == k)) for k, n in frame.items()},
           seed=20220110)
    remaining = Counter(first_issue[f] for f in order[50:])
    s.wave(2, {k: (n, sum(1 for f in wave2 if first_issue[f] == k))
               for k, n in remaining.items()}, seed=20220301)
    for wave, members in ((1, wave1), (2, wave2)):
        for k, fam in enumerate(members):
            token = f"tok{wave}{k:03d}"
            s.household(token, fam, wave, first_issue[fam],
                        rng.choice(["email", "email", "post", "phone"]), withdrawn=k == 3)
            if rng.random() < 0.55 and k != 3:
                s.response(token, *[rng.choice([None] + list(range(3, 11)) * 4)
                                    for _ in range(8)], rng.choice([True, False, False, None]))
    return s


def _fill(runtime: Runtime, *studies: Study) -> None:
    with runtime.engine.begin() as conn:
        for study in studies:
            study.insert(conn)


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runtime: Runtime) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(runtime.settings.home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", runtime.settings.database)


def _csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _count_columns(name: str) -> set[str]:
    info = next(i for i in TABLES if i.name == name)
    out: set[str] = set()
    for rule in info.rules:
        if isinstance(rule, OneWay):
            out.add(rule.column)
        elif hasattr(rule, "values") and rule.values:
            out |= set(rule.values)
        elif hasattr(rule, "value") and rule.value:
            out.add(rule.value)
    return out


def test_cli_analyse_writes_everything_and_is_reproducible(
        runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(runtime, random_study())
    _env(monkeypatch, tmp_path, runtime)
    out = tmp_path / "analysis"
    assert main(["analyse", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out.resolve() / 'report.html'}" in printed

    assert {p.name for p in out.iterdir()} == {
        "restricted", "publication", "charts", "analysis.xlsx", "report.html", "report.docx",
        "manifest.json"}  # report.docx: issue 10
    for name in CLI_TABLES:
        assert tuple(_csv(out / "restricted" / f"{name}.csv")[0]) == CLI_COLUMNS[name]
    assert len(list((out / "restricted").glob("*.csv"))) == len(TABLES) == 42
    assert len(list((out / "charts").glob("*.png"))) == 8
    assert len(list((out / "charts").glob("*.svg"))) == 8

    # restricted figures follow from the data: 150 families; publication never shows 1..5
    population = _csv(out / "restricted" / "population.csv")
    assert population[1][0] == "150"
    for info in TABLES:
        rows = _csv(out / "publication" / f"{info.name}.csv")
        header = rows[0]
        for col in _count_columns(info.name):
            k = header.index(col)
            for row in rows[1:]:
                assert row[k] == "c" or not 1 <= int(row[k]) <= 5, (info.name, col, row)
    ons4 = _csv(out / "restricted" / "ons4.csv")
    assert [r[0] for r in ons4[1:]] == ["q1_life_satisfaction", "q2_worthwhile",
                                        "q3_happy_yesterday", "q4_anxious_yesterday"]
    assert all(int(r[1]) > 20 and r[3] and r[4] for r in ons4[1:])

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "cluster-eval analyse" and manifest["status"] == "complete"
    assert manifest["extracts"][0]["sha256"] == ("70696c6f74" + "0" * 54)
    assert [w["seed"] for w in manifest["sampling"]] == [20220110, 20220301]
    assert manifest["tables"]["population"]["rows"] == 1
    assert manifest["tables"]["presenting_issues"]["rows"] == 11
    assert len(manifest["settings_sha256"]) == 64
    assert manifest["code_version"]["package"]
    assert manifest["survey_status"] == "responses"
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.csv")}

    # a second run replaces the folder; every CSV is byte-identical
    assert main(["analyse", "--out", str(out)]) == 0
    second = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.csv")}
    assert second == first
    assert not list(tmp_path.glob(".analysis.*"))  # no staging folder left behind

    with runtime.engine.connect() as conn:
        stored = conn.execute(text("SELECT path, category FROM stored_files")).all()
        events = conn.execute(text(
            "SELECT details FROM audit_log WHERE event = 'analysis_written'")).all()
    assert [tuple(r) for r in stored] == [(str(out.resolve()), "analysis_output")]
    assert len(events) == 2 and json.loads(events[0][0])["tables"] == 42


def test_cli_refuses_a_folder_with_other_files(
        sqlite_runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(sqlite_runtime, base_study())
    _env(monkeypatch, tmp_path, sqlite_runtime)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"precious")
    assert main(["analyse", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cluster-eval: error: --out") and "did not write" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["thesis.docx"]
    assert (out / "thesis.docx").read_bytes() == b"precious"


def test_cli_refuses_an_empty_population(
        sqlite_runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    _env(monkeypatch, tmp_path, sqlite_runtime)
    out = tmp_path / "analysis"
    assert main(["analyse", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "study population is empty" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".analysis*"))


def test_flow_publishes_publication_tables_and_report_location(
        sqlite_runtime: Runtime, tmp_path: Path, prefect_harness: None) -> None:
    from prefect.artifacts import Artifact

    from flows.analysis import analyse_flow

    _fill(sqlite_runtime, base_study())  # tiny: most counts are suppressed
    out = tmp_path / "flow-out"
    with use_runtime(sqlite_runtime):
        result = analyse_flow(out=str(out))
    assert result["survey_status"] == "no_sample" and result["tables"] == 42
    routes = Artifact.get(f"{sqlite_runtime.cluster}-analysis-referral-routes")
    assert routes is not None and routes.type == "table"
    table = json.loads(routes.data) if isinstance(routes.data, str) else routes.data
    assert {"referral_route": "school", "episodes": "c", "percent": "c"} in table
    published = _csv(out / "publication" / "referral_routes.csv")
    assert [list(r.values()) for r in table] == published[1:]
    report = Artifact.get(f"{sqlite_runtime.cluster}-analysis-report")
    assert report is not None and str(out.resolve() / "report.html") in str(report.data)
