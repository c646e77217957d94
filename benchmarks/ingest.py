"""Benchmark ``cluster-eval ingest`` (the real command, Prefect included) against a bare read and a pandas peer.

For each size (default 10 000, 100 000 and 1 000 000 families) it takes a synthetic AES-256 ZIP
extract (generated once, then cached), runs ``cluster-eval ingest FILE --json`` as a process in a
fresh home (fresh PREFECT_HOME, ephemeral Prefect server, new pseudonym and contact keys, a new
SQLite file), warmed first by one untimed ``cluster-eval status`` as a user's home is (Prefect's
database created and migrated once), with CLUSTER_EVAL_STAGE_TIMES set, and reports side by
side, measured in the same run:

* the command's wall time, its peak RSS (``os.wait4``), the sum of its stage times and Prefect's
  share (wall minus stages), beside the bare start-up of ``cluster-eval status``;
* each stage's seconds and its ratio to a bare ``polars.read_csv`` of the same plaintext;
* the whole ingest (decrypt -> load), everything but the load, load rows/s;
* the pandas + pandera peer (benchmarks/peer_pandas.py) on the same extract, as a process too;
* growth between sizes stage by stage (largest / the size 10x smaller) and the targets of issue 14.

With a PostgreSQL URL (``--postgres-url`` or env CLUSTER_EVAL_BENCH_POSTGRES_URL, a server where
the user may CREATE DATABASE) the command also runs on a fresh database per size (``--postgres-sizes``).
The figures go to a JSON file (``--json``, default var/bench/ingest-<UTC time>.json) and a table on
stdout. ``--direct`` also times the stages called in-process (no Prefect), as the old benchmark did.

    python benchmarks/ingest.py --sizes 10000 100000
    make bench SIZES="10000 100000" BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyzipper
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.columns import ANALYSIS_COLUMNS  # noqa: E402
from tasks.ingest.steps import STAGE_TIMES_ENV  # noqa: E402

PASSPHRASE = "benchmark-passphrase"  # noqa: S105 - synthetic data only
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
POSTGRES_ENV = "CLUSTER_EVAL_BENCH_POSTGRES_URL"
CACHE_ENV = "CLUSTER_EVAL_BENCH_CACHE"
# Stages of the real command, in order; "whole ingest" is decrypt -> load (check archive included).
STAGES = ("check archive", "decrypt", "read", "validate", "pseudonymise", "transform", "load", "report")
WHOLE = STAGES[:-1]
LOADED_TABLES = (*ANALYSIS_COLUMNS, "contacts", "quarantined_rows")
MIB = 1024 * 1024
R = TypeVar("R")
# Targets of issue 14.
TARGET_WHOLE = {1_000_000: 60.0, 100_000: 12.0}
TARGET_PREFECT_S = 10.0
TARGET_NON_LOAD_X = 6.0
TARGET_RSS_MIB = 3 * 1024
TARGET_GROWTH_X = 11.0
TARGET_PG_ROWS_PER_S = 250_000
TARGET_PEER_X = 4.0


# --------------------------------------------------------------------------- the extract

def extract_for(families: int, seed: int, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The cached encrypted extract of a size (made once) and its facts (rows, sizes)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"extract-{families}-{seed}.zip"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        return path, json.loads(meta_path.read_text())
    from tasks.demo.render import aes_zip, render_members
    from tasks.demo.synthetic import generate_tables

    start = time.perf_counter()
    tables = generate_tables(families, seed)
    rows = {name: df.height for name, df in tables.items()}
    members = render_members(tables, fmt="csv")
    del tables
    encrypted = aes_zip(members, PASSPHRASE)
    meta = {"families": families, "seed": seed, "rows": rows,
            "plaintext_mb": sum(len(d) for d in members.values()) / 1e6,
            "encrypted_mb": len(encrypted) / 1e6, "generate_s": time.perf_counter() - start}
    partial = path.with_suffix(".part")
    partial.write_bytes(encrypted)
    partial.replace(path)
    meta_path.write_text(json.dumps(meta, indent=2))
    return path, meta


def plaintext_members(path: Path) -> dict[str, bytes]:
    """The extract's CSV members, decrypted in memory (for the bare read; not timed)."""
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(PASSPHRASE.encode())
        return {name: archive.read(name) for name in archive.namelist()}


def bare_read_csv(members: dict[str, bytes], repeat: int) -> float:
    """Best of ``repeat`` timings of polars.read_csv of every member (all columns as text, in memory)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in members.values():
            pl.read_csv(io.BytesIO(data), infer_schema=False)
        best = min(best, time.perf_counter() - start)
    return best


def bare_read_of(extract: Path, repeat: int) -> float:
    """``bare_read_csv`` of an extract's plaintext (decrypted here, not timed)."""
    return bare_read_csv(plaintext_members(extract), repeat)


# --------------------------------------------------------------------------- processes

def in_child(fn: Callable[..., R], /, *args: Any) -> R:
    """Run ``fn`` in a fresh (spawned) Python process and return its result.

    The large work of the benchmark itself (generating an extract, the bare read) stays out of
    this process: a forked command starts with its parent's peak RSS as its own (Linux keeps
    ``ru_maxrss`` across fork and exec), so a big benchmark process would inflate the figure.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def command(name: str) -> str:
    """The console script installed beside this Python (the virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed; run make bench (it installs the project)")
    return found


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of one run: nothing of the caller's cluster-eval or Prefect setup leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_EVAL_", "PREFECT_"))}
    env.update({
        "CLUSTER_EVAL_HOME": str(home / "var"),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASSPHRASE,
        **extra,
    })
    return env


def run_process(args: list[str], env: dict[str, str], cwd: Path, out: Path) -> tuple[int, float, float]:
    """Run a process to its end: (exit code, wall seconds, its peak RSS in MiB from wait4)."""
    start = time.perf_counter()
    with out.open("wb") as stdout, (out.with_suffix(".err")).open("wb") as stderr:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=stdout, stderr=stderr)  # noqa: S603
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def stage_times(path: Path) -> tuple[dict[str, float], float, tuple[float, float] | None]:
    """Seconds per stage (summed over repeats), the largest peak RSS the stages saw, and the
    Unix times the first stage started and the last one ended (None without stages)."""
    seconds: dict[str, float] = {}
    peak = 0.0
    first, last = float("inf"), 0.0
    for line in path.read_text().splitlines() if path.is_file() else []:
        item = json.loads(line)
        seconds[item["stage"]] = seconds.get(item["stage"], 0.0) + item["seconds"]
        peak = max(peak, item["peak_rss_mib"])
        first = min(first, item["started_at"])
        last = max(last, item["started_at"] + item["seconds"])
    return seconds, peak, ((first, last) if seconds else None)


def count_rows(database_url: str) -> dict[str, int]:
    """Rows now in each loaded table."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())  # noqa: S608
                    for t in LOADED_TABLES}
    finally:
        engine.dispose()


class PostgresDatabases:
    """Fresh databases on one PostgreSQL server, dropped when done."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def create(self, label: str) -> str:
        name = f"ce_bench_{label}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def drop(self, url: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))


# --------------------------------------------------------------------------- one size

def archive_limit_mb(meta: dict[str, Any]) -> int:
    """max_total_mb for this extract: its plaintext with room to spare, never below the default 500."""
    return max(500, int(meta["plaintext_mb"] * 1.25) + 1)


def run_command(extract: Path, meta: dict[str, Any], workdir: Path, database_url: str | None) -> dict[str, Any]:
    """``cluster-eval ingest`` as a process in a fresh home; its figures."""
    workdir.mkdir(parents=True)
    inbox = workdir / "inbox"
    inbox.mkdir()
    target = inbox / extract.name
    shutil.copyfile(extract, target)
    times_file = workdir / "stages.jsonl"
    extra = {STAGE_TIMES_ENV: str(times_file), "CLUSTER_EVAL_INGEST__MAX_TOTAL_MB": str(archive_limit_mb(meta))}
    if database_url:
        extra["CLUSTER_EVAL_DATABASE_URL"] = database_url
    env = clean_env(workdir, **extra)
    # A user's home is set up once (Prefect's database created and migrated, the store migrated):
    # one untimed `cluster-eval status` does that first, so the ingest is timed on a warm home.
    warm_code, warm_up, _rss = run_process([command("cluster-eval"), "status"], env, workdir, workdir / "warm.out")
    if warm_code != 0:
        raise SystemExit(f"cluster-eval status exited {warm_code} while warming the home")
    began = time.time()
    code, wall, rss = run_process([command("cluster-eval"), "ingest", str(target), "--json"], env, workdir,
                                  workdir / "ingest.out")
    output = (workdir / "ingest.out").read_text()
    if code != 0:
        error = (workdir / "ingest.out.err").read_text()[-2000:]
        raise SystemExit(f"cluster-eval ingest exited {code} at {meta['families']} families:\n{output}\n{error}")
    result = json.loads(output)
    if result["status"] != "ingested":
        raise SystemExit(f"the benchmark extract was not ingested: {result['error']}")
    stages, stage_peak, span = stage_times(times_file)
    # Prefect's share split: from the process start to the first stage (imports, server start,
    # flow run set-up) and from the last stage to the exit (flow run end, server stop, frees).
    before, after = (span[0] - began, began + wall - span[1]) if span else (None, None)
    rows = count_rows(database_url or f"sqlite:///{workdir / 'var' / 'cluster-eval.db'}")
    return {"wall_s": wall, "warm_up_s": warm_up, "before_stages_s": before, "after_stages_s": after,
            "peak_rss_mib": rss, "stage_peak_rss_mib": stage_peak, "stages": stages,
            "tables": result["tables"], "loaded_rows": rows, "home": str(workdir / "var")}


def run_peer(extract: Path, home: Path, workdir: Path, database_url: str) -> dict[str, Any] | None:
    """benchmarks/peer_pandas.py as a process on the same extract with the command's keys (None: it failed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_env(workdir)
    args = [sys.executable, str(ROOT / "benchmarks" / "peer_pandas.py"), str(extract), "--home", str(home),
            "--database-url", database_url]
    code, wall, rss = run_process(args, env, workdir, workdir / "peer.out")
    if code != 0:
        error = (workdir / "peer.out.err").read_text()[-2000:]
        print(f"the pandas peer exited {code} (left out):\n{error}", file=sys.stderr)
        return None
    result = json.loads((workdir / "peer.out").read_text())
    return {"wall_s": wall, "peak_rss_mib": rss, "stages": result["stages"], "total_s": result["total_s"],
            "loaded": result["loaded"], "quarantined": result["quarantined"]}


def run_direct(extract: Path, workdir: Path) -> dict[str, float]:
    """The stages called in-process without Prefect (the old benchmark); seconds per stage."""
    from tasks.core.runtime import open_runtime
    from tasks.core.settings import Settings
    from tasks.ingest.pipeline import IngestSecrets, ingest_file

    inbox = workdir / "direct-inbox"
    inbox.mkdir(parents=True)
    target = inbox / extract.name
    shutil.copyfile(extract, target)
    runtime = open_runtime(Settings(home=workdir / "direct-var", ingest={"max_total_mb": 10_000}))
    secrets = IngestSecrets(passphrase=PASSPHRASE, identity=None, pseudonym_key=b"p" * 32, contact_key=b"c" * 32)
    times: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] = times.get(name, 0.0) + time.perf_counter() - t0

    outcome = ingest_file(target, runtime, secrets, stage=timed)
    runtime.engine.dispose()
    if outcome.status != "ingested":
        raise SystemExit(f"benchmark extract was not ingested: {outcome.error}")
    return times


def figures(families: int, backend: str, meta: dict[str, Any], cmd: dict[str, Any], bare: float,
            peer: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the table and the targets need for one size and backend."""
    stages = {name: cmd["stages"].get(name, 0.0) for name in STAGES}
    stage_sum = sum(cmd["stages"].values())
    whole = sum(stages[name] for name in WHOLE)
    loaded = sum(cmd["loaded_rows"].values())
    run: dict[str, Any] = {
        "families": families, "backend": backend, "rows": meta["rows"], "plaintext_mb": meta["plaintext_mb"],
        "encrypted_mb": meta["encrypted_mb"], "max_total_mb": archive_limit_mb(meta),
        "wall_s": cmd["wall_s"], "warm_up_s": cmd["warm_up_s"], "before_stages_s": cmd["before_stages_s"],
        "after_stages_s": cmd["after_stages_s"], "stages": stages, "stage_sum_s": stage_sum,
        "prefect_share_s": cmd["wall_s"] - stage_sum, "whole_ingest_s": whole,
        "non_load_s": whole - stages["load"], "bare_read_csv_s": bare,
        "ratios": {name: seconds / bare for name, seconds in stages.items()},
        "whole_x_bare": whole / bare, "non_load_x_bare": (whole - stages["load"]) / bare,
        "peak_rss_mib": cmd["peak_rss_mib"], "stage_peak_rss_mib": cmd["stage_peak_rss_mib"],
        "tables": cmd["tables"], "loaded_rows": cmd["loaded_rows"], "loaded_rows_total": loaded,
        "load_rows_per_s": loaded / stages["load"] if stages["load"] else None,
    }
    if peer is not None:
        run["peer"] = {**peer, "x_command_wall": peer["wall_s"] / cmd["wall_s"],
                       "x_whole_ingest": peer["total_s"] / whole if whole else None}
    return run


# --------------------------------------------------------------------------- growth and targets

def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage by stage, time at each size over time at the size ten times smaller (same backend)."""
    out: dict[str, Any] = {}
    for run in runs:
        smaller = next((r for r in runs if r["backend"] == run["backend"]
                        and r["families"] * 10 == run["families"]), None)
        if smaller is None:
            continue
        pairs = {name: (run["stages"][name], smaller["stages"][name]) for name in STAGES}
        pairs["whole ingest"] = (run["whole_ingest_s"], smaller["whole_ingest_s"])
        pairs["wall"] = (run["wall_s"], smaller["wall_s"])
        out[f"{run['backend']} {run['families']}/{smaller['families']}"] = {
            name: (big / small if small > 0 else None) for name, (big, small) in pairs.items()}
    return out


def _target(name: str, value: float | None, limit: float, at_most: bool = True) -> dict[str, Any]:
    met = None if value is None else (value <= limit if at_most else value >= limit)
    return {"target": name, "value": value, "limit": limit, "at_most": at_most, "met": met}


def targets(runs: list[dict[str, Any]], grown: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 14 that this run measured, each met or missed."""
    out = []
    for run in runs:
        at = f"{run['backend']} {run['families']:,}"
        if run["backend"] == "sqlite" and run["families"] in TARGET_WHOLE:
            out.append(_target(f"whole ingest s, {at}", run["whole_ingest_s"], TARGET_WHOLE[run["families"]]))
        out.append(_target(f"Prefect share s, {at}", run["prefect_share_s"], TARGET_PREFECT_S))
        out.append(_target(f"non-load x bare read_csv, {at}", run["non_load_x_bare"], TARGET_NON_LOAD_X))
        out.append(_target(f"peak RSS MiB, {at}", run["peak_rss_mib"], TARGET_RSS_MIB))
        if run["backend"] == "postgresql" and run["families"] == 100_000:
            out.append(_target(f"load rows/s, {at}", run["load_rows_per_s"], TARGET_PG_ROWS_PER_S, at_most=False))
        if "peer" in run:
            out.append(_target(f"peer / command wall, {at}", run["peer"]["x_command_wall"], TARGET_PEER_X,
                               at_most=False))
    for pair, ratios in grown.items():
        if pair.endswith("1000000/100000"):
            for stage in (*STAGES[:-1], "whole ingest"):
                out.append(_target(f"growth {stage}, {pair}", ratios[stage], TARGET_GROWTH_X))
    return out


# --------------------------------------------------------------------------- the table

def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(result: dict[str, Any]) -> str:
    """The figures as text tables: one column per size and backend."""
    runs = result["runs"]
    head = [f"{r['backend']} {r['families']:,}" for r in runs]
    width = max(16, *(len(h) + 2 for h in head))
    lines = [f"cluster-eval ingest benchmark, {result['started']} ({result['machine']['cpus']} CPUs); "
             f"bare start-up of `cluster-eval status`: {_f(result.get('status_startup_s'))} s", ""]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:<34}" + "".join(f"{v:>{width}}" for v in values))

    row("", head)
    row("plaintext MB / encrypted MB", [f"{r['plaintext_mb']:.0f} / {r['encrypted_mb']:.0f}" for r in runs])
    row("rows loaded (all tables)", [f"{r['loaded_rows_total']:,}" for r in runs])
    row("command wall s", [_f(r["wall_s"]) for r in runs])
    row("  sum of stages s", [_f(r["stage_sum_s"]) for r in runs])
    row("  Prefect share s (wall - stages)", [_f(r["prefect_share_s"]) for r in runs])
    row("    before the first stage s", [_f(r["before_stages_s"]) for r in runs])
    row("    after the last stage s", [_f(r["after_stages_s"]) for r in runs])
    row("  first start of a home s (untimed)", [_f(r["warm_up_s"]) for r in runs])
    for name in STAGES:
        row(f"  {name} s (x bare)", [f"{r['stages'][name]:.2f} ({r['ratios'][name]:.1f}x)" for r in runs])
    row("whole ingest s (x bare)", [f"{r['whole_ingest_s']:.2f} ({r['whole_x_bare']:.0f}x)" for r in runs])
    row("everything but load, x bare", [_f(r["non_load_x_bare"], 1) for r in runs])
    row("bare polars.read_csv s", [_f(r["bare_read_csv_s"]) for r in runs])
    row("load rows/s", [f"{r['load_rows_per_s']:,.0f}" if r["load_rows_per_s"] else "-" for r in runs])
    row("peak RSS MiB (command)", [f"{r['peak_rss_mib']:,.0f}" for r in runs])
    row("pandas peer wall s", [_f(r["peer"]["wall_s"]) if "peer" in r else "-" for r in runs])
    row("  peer / command wall", [_f(r["peer"]["x_command_wall"], 1) if "peer" in r else "-" for r in runs])
    row("  peer load s", [_f(r["peer"]["stages"].get("load")) if "peer" in r else "-" for r in runs])
    row("  peer peak RSS MiB", [f"{r['peer']['peak_rss_mib']:,.0f}" if "peer" in r else "-" for r in runs])
    if any("direct" in r for r in runs):
        row("stages called directly s", [_f(sum(r["direct"].values())) if "direct" in r else "-" for r in runs])
    for pair, ratios in result["growth"].items():
        lines += ["", f"growth {pair}: " + ", ".join(f"{k} {_f(v, 1)}x" for k, v in ratios.items())]
    lines += ["", "targets (issue 14):"]
    for t in result["targets"]:
        mark = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        sign = "<=" if t["at_most"] else ">="
        lines.append(f"  {mark:<7}{t['target']}: {_f(t['value'])} ({sign} {t['limit']:g})")
    return "\n".join(lines)


def markdown(results: list[dict[str, Any]]) -> str:
    """The README's table of figures: one column per size and backend of the given result files."""
    runs = [(r["started"][:10], run) for r in results for run in r["runs"]]
    head = [f"{run['families']:,} {run['backend']}" for _day, run in runs]
    lines = ["| | " + " | ".join(head) + " |", "|---|" + "---:|" * len(runs)]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("run (UTC day)", [day for day, _run in runs])
    row("rows loaded, all tables", [f"{run['loaded_rows_total']:,}" for _day, run in runs])
    row("**`cluster-eval ingest` wall s**", [f"**{run['wall_s']:.1f}**" for _day, run in runs])
    row("Prefect share s (wall - stages)", [f"{run['prefect_share_s']:.1f}" for _day, run in runs])
    row("of which before the first stage / after the last s",
        [f"{run['before_stages_s']:.1f} / {run['after_stages_s']:.1f}" if run.get("before_stages_s") is not None
         else "-" for _day, run in runs])
    for name in STAGES[1:-1]:
        row(f"{name} s (x bare read)", [f"{run['stages'][name]:.2f} ({run['ratios'][name]:.0f}x)"
                                        for _day, run in runs])
    row("**whole ingest s** (decrypt -> load)", [f"**{run['whole_ingest_s']:.1f}**" for _day, run in runs])
    row("everything but load, x bare read", [f"{run['non_load_x_bare']:.1f}x" for _day, run in runs])
    row("bare `polars.read_csv` s", [f"{run['bare_read_csv_s']:.2f}" for _day, run in runs])
    row("load rows/s", [f"{run['load_rows_per_s']:,.0f}" for _day, run in runs])
    row("peak RSS MiB (command)", [f"{run['peak_rss_mib']:,.0f}" for _day, run in runs])
    row("pandas peer wall s (its load s)", [f"{run['peer']['wall_s']:.1f} ({run['peer']['stages']['load']:.1f})"
                                            if "peer" in run else "-" for _day, run in runs])
    row("peer / command wall", [f"{run['peer']['x_command_wall']:.2f}x" if "peer" in run else "-"
                                for _day, run in runs])
    row("peer peak RSS MiB", [f"{run['peer']['peak_rss_mib']:,.0f}" if "peer" in run else "-"
                              for _day, run in runs])
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def status_startup(workdir: Path) -> float:
    """Wall seconds of ``cluster-eval status`` on an empty home: the fixed cost of any command."""
    workdir.mkdir(parents=True)
    env = clean_env(workdir)
    _code, wall, _rss = run_process([command("cluster-eval"), "status"], env, workdir, workdir / "status.out")
    return wall


def benchmark(sizes: list[int], seed: int, cache: Path, workdir: Path, *, postgres_url: str | None,
              postgres_sizes: list[int], peer: bool, direct: bool, partial: Path | None = None) -> dict[str, Any]:
    """Run every size (and PostgreSQL size) and return the result object written as JSON."""
    import pandas

    result: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__,
                    "pandas": pandas.__version__, "platform": platform.platform()},
        "seed": seed, "runs": [],
    }
    result["status_startup_s"] = status_startup(workdir / "status")
    databases = PostgresDatabases(postgres_url) if postgres_url else None
    plan = [(n, "sqlite") for n in sizes] + [(n, "postgresql") for n in postgres_sizes if databases]
    for families, backend in plan:
        extract, meta = in_child(extract_for, families, seed, cache)
        print(f"... {backend} {families:,} families", file=sys.stderr, flush=True)
        here = workdir / f"{backend}-{families}"
        url = databases.create(f"{families}") if databases and backend == "postgresql" else None
        try:
            cmd = run_command(extract, meta, here / "command", url)
        finally:
            if databases and url:
                databases.drop(url)
        bare = in_child(bare_read_of, extract, 3)
        peer_run = None
        if peer and backend == "sqlite":
            peer_run = run_peer(extract, Path(cmd["home"]), here / "peer", f"sqlite:///{here / 'peer' / 'peer.sqlite'}")
        run = figures(families, backend, meta, cmd, bare, peer_run)
        if direct and backend == "sqlite":
            run["direct"] = run_direct(extract, here)
        result["runs"].append(run)
        shutil.rmtree(here, ignore_errors=True)  # free the disk before the next size
        if partial is not None:  # what is measured so far survives a later failure
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(result, indent=2) + "\n")
    if databases:
        databases.admin.dispose()
    result["growth"] = growth(result["runs"])
    result["targets"] = targets(result["runs"], result["growth"])
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="families per extract")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_ENV) or None,
                        help=f"admin URL of a PostgreSQL server for fresh databases (env {POSTGRES_ENV})")
    parser.add_argument("--postgres-sizes", type=int, nargs="*", default=None,
                        help="sizes to run on PostgreSQL too (default: the sizes up to 100 000)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures "
                        "(default var/bench/ingest-<UTC time>.json)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(CACHE_ENV) or
                                                           Path(tempfile.gettempdir()) / "cluster-eval-bench"),
                        help=f"folder of the generated extracts, reused between runs (env {CACHE_ENV})")
    parser.add_argument("--no-peer", action="store_true", help="leave out the pandas + pandera peer")
    parser.add_argument("--direct", action="store_true", help="also time the stages called in-process")
    parser.add_argument("--markdown", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the README table of earlier result files and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown([json.loads(path.read_text()) for path in args.markdown]))
        return 0
    pg_sizes = args.postgres_sizes if args.postgres_sizes is not None else [n for n in args.sizes if n <= 100_000]
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = args.json or ROOT / "var" / "bench" / f"ingest-{started}.json"
    with tempfile.TemporaryDirectory(prefix="cluster-eval-bench-") as folder:
        result = benchmark(sorted(args.sizes), args.seed, args.cache, Path(folder),
                           postgres_url=args.postgres_url, postgres_sizes=sorted(pg_sizes),
                           peer=not args.no_peer, direct=args.direct,
                           partial=target.with_name(target.name + ".partial"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(target.name + ".partial").unlink(missing_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nfigures written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
