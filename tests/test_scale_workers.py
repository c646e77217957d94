"""Many clusters, several workers: the production path with six clusters, one worker then two.

A Prefect server of this test's own whose database is PostgreSQL, the process work pool and
deployments of ``deployments/prefect.yaml`` (``prefect deploy --all``), ``prefect worker start``
processes taking one run at a time each, and one analysis database on PostgreSQL shared by every
cluster. Each cluster has a home of its own (inbox, keys, raw files) and a config file naming its
home, cluster and the shared database; a pick-up run reaches its cluster through the job variable
``env: {CLUSTER_EVAL_CONFIG: <that file>}``, so one set of deployments serves every cluster.

Each phase drops six extracts (one per cluster) into the inboxes and starts two pick-up runs per
cluster, so two runs can race for one inbox: with one worker, then with two. Every extract must be
ingested exactly once, every cluster's rows must come from its own extract only, and each
cluster's analysis input must hold its own population, not the sum. The wall time of each phase
is printed and recorded (a figure, never asserted: speed is a benchmark).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from conftest import PrefectServer, _postgres_database, stop_process_group, wait_for
from sqlalchemy import create_engine, text

from schemas.codes import CHILDREN, EPISODES, FAMILIES
from tasks.analysis.study_data import load_study_data
from tasks.analysis.tables import build_analysis
from tasks.core.runtime import run_tags
from tasks.demo.render import write_extract
from tasks.demo.synthetic import generate_tables
from tasks.ingest.inbox import EMPTY_LINE

REPO = Path(__file__).parents[1]
POOL = "cluster-eval"  # the pool deployments/prefect.yaml names: this server is the test's own
PICK_UP = "ingest-inbox/inbox-pick-up"
FAMILIES_PER_CLUSTER = (30, 36, 42, 48, 54, 60)  # all different: a sum of clusters is never one cluster
RUNS_PER_CLUSTER = 2  # two pick-ups per inbox: with two workers they race for the same file
WINDOW = (date(2021, 1, 1), date(2021, 6, 30))  # the default study window
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LINE = re.compile(r"found (\d+): (\d+) ingested, (\d+) duplicate, (\d+) rejected, (\d+) waiting"
                  r"(?:; (\d+) held in claim folders of other runs \(running, or state unknown\))?")
AUDIT_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()  # every home sharing a database: one key


@dataclass(frozen=True)
class Cluster:
    """One cluster of the test: its name, home, config file, extract and what the extract holds."""

    name: str
    home: Path
    config: Path
    sha256: str
    rows: dict[str, int]  # families, children, episodes in the extract
    population: tuple[int, int, int]  # in-window families, their children, in-window episodes


def _private(path: Path, data: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(data, encoding="utf-8")
    path.chmod(0o600)


def _population(tables: dict[str, pl.DataFrame]) -> tuple[int, int, int]:
    """The study population (extract-v1.md section 2): episodes referred by the window's end and not
    closed before its start, their families and those families' children."""
    start, end = WINDOW
    episodes = tables[EPISODES].with_columns(pl.col("referral_date", "closure_date").str.to_date())
    in_window = episodes.filter((pl.col("referral_date") <= end)
                                & (pl.col("closure_date").is_null() | (pl.col("closure_date") >= start)))
    families = in_window.get_column("family_id").unique()
    children = tables[CHILDREN].filter(pl.col("family_id").is_in(families.implode())).height
    return families.len(), children, in_window.height


def _new_cluster(root: Path, name: str, families: int, seed: int, database_url: str) -> Cluster:
    """A home with its secrets as 0600 key files, a config file, and one extract settled in its inbox."""
    home = root / name
    passphrase = f"passphrase of {name}"
    _private(home / "keys" / "extract_passphrase", passphrase)
    _private(home / "keys" / "audit_key", AUDIT_KEY)
    config = root / f"{name}.toml"
    _private(config, f'home = "{home}"\ndatabase_url = "{database_url}"\n\n[study]\ncluster = "{name}"\n')
    extract = write_extract(home / "inbox" / f"extract-{name}.zip", families=families, seed=seed,
                            passphrase=passphrase)
    settled = time.time() - 120  # downloaded two minutes ago: past the default 60 s settle time
    os.utime(extract, (settled, settled))
    tables = generate_tables(families, seed)
    return Cluster(name, home, config, hashlib.sha256(extract.read_bytes()).hexdigest(),
                   {t: tables[t].height for t in (FAMILIES, CHILDREN, EPISODES)}, _population(tables))


def _cli(env: dict[str, str], cwd: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _start_worker(env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    """A process worker that takes one flow run at a time (a worker slot is the unit that scales)."""
    log = (cwd / f"{name}.log").open("wb")
    with log:
        return subprocess.Popen(  # noqa: S603 - our interpreter and arguments
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", name, "--limit", "1"],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _online_workers(api: str) -> set[str]:
    found = httpx.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=10).json()
    return {w["name"] for w in found if w.get("status") == "ONLINE"}


def _run_pick_ups(api: str, deployment_id: str, clusters: list[Cluster]) -> tuple[float, list[dict[str, Any]]]:
    """Start every cluster's pick-ups (its config as the job variable), wait for all: wall seconds, runs."""
    started = time.monotonic()
    ids = []
    for cluster in clusters:
        for _ in range(RUNS_PER_CLUSTER):
            created = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", timeout=10, json={
                "job_variables": {"env": {"CLUSTER_EVAL_CONFIG": str(cluster.config)}}})
            created.raise_for_status()
            ids.append(created.json()["id"])

    def finished() -> list[dict[str, Any]] | None:
        runs: list[dict[str, Any]] = httpx.post(f"{api}/flow_runs/filter", timeout=10,
                                                json={"flow_runs": {"id": {"any_": ids}}}).json()
        return runs if all(r["state"]["type"] in TERMINAL for r in runs) else None

    runs = wait_for("every pick-up to end", finished, timeout=600, interval=0.5)
    return time.monotonic() - started, runs


def _assert_exactly_once(clusters: list[Cluster], runs: list[dict[str, Any]], logs: Path) -> int:
    """Each cluster's pick-ups ended Completed, carry its tag, and ingested its extract once; how many raced."""
    by_cluster = {c.name: [r for r in runs if r["job_variables"]["env"]["CLUSTER_EVAL_CONFIG"] == str(c.config)]
                  for c in clusters}
    raced = 0
    for cluster in clusters:
        mine = by_cluster[cluster.name]
        states = [(r["state"]["type"], r["state"]["message"]) for r in mine]
        assert all(s == "COMPLETED" for s, _ in states), (states, *(p.read_text()[-3000:] for p in logs.glob("*.log")))
        assert all(run_tags(cluster.name)[1] in r["tags"] for r in mine)
        counts = [[int(g or 0) for g in m.groups()] for _, message in states if (m := LINE.fullmatch(message))]
        assert len(counts) + sum(message == EMPTY_LINE for _, message in states) == RUNS_PER_CLUSTER, states
        assert (sum(c[1] for c in counts), sum(c[3] for c in counts)) == (1, 0), states  # ingested once, none rejected
        raced += sum(c[2] + c[5] for c in counts)  # the other run had it: lost the rename, or saw it claimed
        assert not [p for p in (cluster.home / "inbox").iterdir() if p.is_file()]
        kept = [p for p in (cluster.home / "raw").rglob("*") if p.is_file()]
        assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in kept] == [cluster.sha256]
    return raced


def _assert_own_rows(database_url: str, clusters: list[Cluster]) -> None:
    """Every cluster's rows, audit entry and analysis input are its own extract's, never another's."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            extracts = conn.execute(text("SELECT cluster_id, count(*) FROM extracts GROUP BY cluster_id")).all()
            assert sorted(extracts) == sorted((c.name, 1) for c in clusters)
            audited = conn.execute(text(
                "SELECT cluster_id, count(*) FROM audit_log WHERE event = 'ingest' GROUP BY cluster_id")).all()
            assert sorted(audited) == sorted((c.name, 1) for c in clusters)
            for table in (FAMILIES, CHILDREN, EPISODES):
                counted: dict[str, int] = dict(conn.execute(  # a fixed table name of the schema, not input
                    text(f"SELECT cluster_id, count(*) FROM {table} GROUP BY cluster_id")).all())  # noqa: S608
                assert counted == {c.name: c.rows[table] for c in clusters}, table
            for cluster in clusters:  # what `cluster-eval analyse` reads and counts for this cluster
                data = load_study_data(conn, cluster.name)
                assert data.extracts.select("sha256", "status").rows() == [(cluster.sha256, "ingested")]
                population = build_analysis(data).tables["population"]
                assert population.select("families", "children", "episodes").row(0) == cluster.population
    finally:
        engine.dispose()


@pytest.fixture
def prefect_on_postgres(tmp_path: Path) -> Iterator[PrefectServer]:
    """A Prefect server of this test's own, its database a fresh PostgreSQL database (no scheduler)."""
    with contextlib.contextmanager(_postgres_database)() as url:
        # No scheduler: the yaml's cron deployments must not start runs without a cluster's job variables.
        server = PrefectServer(tmp_path / "server", PREFECT_API_DATABASE_CONNECTION_URL=url.replace(
            "+psycopg", "+asyncpg"), PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false", PREFECT_UI_ENABLED="false")
        try:
            server.wait_until_healthy()
            yield server
        finally:
            server.stop()


@pytest.fixture
def analysis_database() -> Iterator[str]:
    """One fresh analysis database on PostgreSQL, shared by every cluster of the test."""
    yield from _postgres_database()


@pytest.mark.e2e
def test_six_clusters_on_two_workers_ingest_each_extract_once_into_their_own_rows(
        prefect_on_postgres: PrefectServer, analysis_database: str, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    api = f"{prefect_on_postgres.url}/api"
    env = {**prefect_on_postgres.env, "PREFECT_HOME": str(tmp_path / "client"), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    _cli(env, tmp_path, "work-pool", "create", POOL, "--type", "process")
    # The analysis deployment's default output folder needs a home at deploy time; pick-ups get theirs per run.
    _cli({**env, "CLUSTER_EVAL_HOME": str(tmp_path / "deployed")}, REPO,
         "deploy", "--all", "--prefect-file", str(REPO / "deployments" / "prefect.yaml"))
    deployment = httpx.get(f"{api}/deployments/name/{PICK_UP}", timeout=10).json()
    # The analysis database is new and unmigrated: the first pick-up run migrates it (migrate() takes
    # turns under an advisory lock, tests/test_database.py).

    workers: list[subprocess.Popen[bytes]] = []
    wall: dict[int, float] = {}
    raced_by: dict[int, int] = {}
    everyone: list[Cluster] = []
    try:
        for n, phase in ((1, "one"), (2, "two")):
            workers.append(_start_worker(env, tmp_path, f"worker-{n}"))
            wait_for(f"{n} worker(s) online", lambda n=n: len(_online_workers(api)) == n, timeout=180)
            clusters = [_new_cluster(tmp_path / "clusters", f"{phase}-{i}", families, seed=100 * n + i,
                                     database_url=analysis_database)
                        for i, families in enumerate(FAMILIES_PER_CLUSTER, start=1)]
            wall[n], runs = _run_pick_ups(api, deployment["id"], clusters)
            raced_by[n] = _assert_exactly_once(clusters, runs, tmp_path)
            everyone += clusters
            _assert_own_rows(analysis_database, everyone)
    finally:
        for worker in workers:
            stop_process_group(worker)
    assert sorted(wall) == [1, 2]  # both phases ran to the end: the times are figures, never asserted
    record_property("measured", (
        f"{len(FAMILIES_PER_CLUSTER)} clusters, {RUNS_PER_CLUSTER} inbox pick-ups each, one flow run at a "
        f"time per worker: one worker {wall[1]:.1f} s, two workers {wall[2]:.1f} s wall time "
        f"({raced_by[2]} pick-ups found their extract taken by the other run)"))
