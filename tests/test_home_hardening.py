"""Files under the state folder: a race-free writability probe, no symlinks, 0600 moves, no temp files outside.

* ``prepare_home`` probes writability with a file of its own (concurrent first runs on a fresh home);
* ``ingest`` refuses a symbolic link with one line and moves nothing;
* the encrypted extract (and sidecar) moved into ``HOME/raw`` or ``HOME/quarantine`` is 0600;
* SQLite keeps its temporary files (VACUUM's copy among them) in memory, never in /tmp or /var/tmp.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from sqlalchemy import event, text

from cli.main import main
from tasks.core.db import compact_database, make_engine
from tasks.core.home import prepare_home
from tasks.core.runtime import Runtime, open_runtime
from tasks.core.secrets import Secrets
from tasks.demo.render import aes_zip, render_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.pipeline import ingest_file, load_ingest_secrets, quarantine

PASS = "home-hardening-passphrase"  # noqa: S105 - test passphrase
SMALL = render_members(generate_tables(12, seed=2))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- fresh home probe


def test_concurrent_prepare_home_on_a_fresh_home_never_fails(tmp_path: Path) -> None:
    root = tmp_path / "var"
    start = threading.Barrier(8)

    def prepare(_: int) -> int:
        start.wait()
        for _ in range(40):  # the old shared ".write-test" probe lost this race (unlink of a gone file)
            prepare_home(root)
        return 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(prepare, range(8))) == 8
    assert [p.name for p in root.iterdir() if p.name.startswith(".write-test")] == []
    assert _mode(root) == 0o700


def test_probe_does_not_use_a_fixed_name(tmp_path: Path) -> None:
    root = tmp_path / "var"
    root.mkdir()
    (root / ".write-test").mkdir()  # e.g. left by something else: a fixed-name probe would fail here
    home = prepare_home(root)
    assert home.root == root.resolve()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".write-test")) == [".write-test"]


@pytest.mark.e2e
def test_three_concurrent_status_on_a_fresh_home_all_exit_0(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("CLUSTER_EVAL_") and k != "PREFECT_API_URL"}
    env = {**clean, "CLUSTER_EVAL_HOME": str(tmp_path / "var"),
           "PREFECT_HOME": str(tmp_path / "var" / "prefect")}
    processes = [subprocess.Popen([sys.executable, "-m", "cli", "status"],  # noqa: S603
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
        assert "0 extract(s) ingested" in out
    assert [p.name for p in (tmp_path / "var").iterdir() if p.name.startswith(".write-test")] == []


@pytest.mark.e2e
def test_three_concurrent_ingests_of_one_extract_on_a_fresh_home(tmp_path: Path) -> None:
    """One ingests, the other two report the duplicate (exit 0); one extract in the database.

    Each command starts its own ephemeral Prefect server on the same fresh home, as three operators
    (or a scheduler) would; this costs about a minute on 2 cores.
    """
    data = aes_zip(SMALL, PASS)
    sha12 = hashlib.sha256(data).hexdigest()[:12]
    copies = [_delivered(tmp_path / f"egress{n}", "extract.zip", data) for n in range(3)]  # the same bytes
    home = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_EVAL_", "PREFECT_API"))}
    env.update({"CLUSTER_EVAL_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
                "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS})
    processes = [subprocess.Popen([sys.executable, "-m", "cli", "ingest", str(copy), "--json"],  # noqa: S603
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for copy in copies]
    outputs = [p.communicate(timeout=400) for p in processes]
    results = [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]

    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err and "not writable" not in err and "error" not in err
    statuses = sorted(json.loads(out)["status"] for _, out, _ in results)
    assert statuses == ["duplicate", "duplicate", "ingested"]
    assert [p.exists() for p in copies].count(False) == 1  # the ingested copy moved; the duplicates stay
    assert sorted(p.name for p in (home / "raw").iterdir()) == [f"{sha12}-extract.zip"]
    with sqlite3.connect(home / "cluster-eval.db") as conn:
        assert conn.execute("SELECT count(*) FROM extracts").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM stored_files").fetchone() == (1,)


# --------------------------------------------------------------------------- ingest: links and modes


@pytest.fixture
def rt(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(tmp_path / "var", sqlite_url))
    yield runtime
    runtime.engine.dispose()


def _secrets(rt: Runtime) -> Any:
    return load_ingest_secrets(Secrets(rt.home, {"CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS}))


def _delivered(folder: Path, name: str, data: bytes, *, sidecar: bool = False) -> Path:
    """A delivered file readable by group and others (0644), as a download might be."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    path.chmod(0o644)
    if sidecar:
        side = folder / f"{name}.sha256"
        side.write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
        side.chmod(0o644)
    return path


def test_accepted_extract_and_sidecar_are_0600_in_raw(rt: Runtime, tmp_path: Path) -> None:
    source = _delivered(tmp_path / "egress", "extract.zip", aes_zip(SMALL, PASS), sidecar=True)

    outcome = ingest_file(source, rt, _secrets(rt))

    assert outcome.status == "ingested", outcome.error
    assert not source.exists()
    kept = [p for p in rt.home.raw.rglob("*") if p.is_file()]
    assert len(kept) == 2
    assert {p.name.endswith(".sha256") for p in kept} == {True, False}
    assert [oct(_mode(p)) for p in kept] == ["0o600", "0o600"]


def test_rejected_extract_and_sidecar_are_0600_in_quarantine(rt: Runtime, tmp_path: Path) -> None:
    source = _delivered(tmp_path / "egress", "broken.zip", b"%PDF-1.7\n" + b"x" * 500, sidecar=True)

    outcome = ingest_file(source, rt, _secrets(rt))

    assert outcome.status == "rejected"
    assert not source.exists()
    kept = _files(rt.home.quarantine)
    assert len(kept) == 3  # the file, its sidecar, the reason
    assert [oct(_mode(p)) for p in kept] == ["0o600"] * 3
    assert _files(rt.home.raw) == []


def test_symlink_is_refused_and_nothing_moves(rt: Runtime, tmp_path: Path) -> None:
    target = _delivered(tmp_path / "egress", "extract.zip", aes_zip(SMALL, PASS))
    link = tmp_path / "link.zip"
    link.symlink_to(target)

    outcome = ingest_file(link, rt, _secrets(rt))

    assert outcome.status == "rejected" and outcome.sha256 is None
    assert outcome.error == (f"file {link} is a symbolic link; ingest refuses links, "
                             "give the path of the extract itself")
    assert link.is_symlink() and target.is_file() and _mode(target) == 0o644
    assert _files(rt.home.quarantine) == [] and _files(rt.home.raw) == []
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM extracts")).scalar_one() == 0


def test_quarantine_never_moves_a_symlink(rt: Runtime, tmp_path: Path) -> None:
    target = _delivered(tmp_path / "egress", "extract.zip", b"data")
    link = tmp_path / "link.zip"
    link.symlink_to(target)
    assert quarantine(link, rt.home, "a reason", datetime.now(UTC)) is None
    assert link.is_symlink() and target.read_bytes() == b"data"
    assert _files(rt.home.quarantine) == []


@pytest.mark.e2e
def test_cli_refuses_a_symlink_with_one_line(prefect_harness: None, tmp_path: Path, sqlite_url: str,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    target = _delivered(tmp_path / "egress", "extract.zip", aes_zip(SMALL, PASS))
    link = tmp_path / "link.zip"
    link.symlink_to(target)

    assert main(["ingest", str(link), "--json"]) == 1
    out, err = capsys.readouterr()

    result = json.loads(out)
    assert result["status"] == "rejected" and result["sha256"] is None
    assert "is a symbolic link" in result["error"]
    assert err.rstrip("\n").splitlines()[-1] == f"cluster-eval: error: {result['error']}"
    assert "Traceback" not in err
    assert link.is_symlink() and target.is_file()
    assert _files(home / "quarantine") == [] and _files(home / "raw") == []


# --------------------------------------------------------------------------- SQLite temporary files


def _big_sqlite(path: Path) -> None:
    """About 6 MB with half the rows deleted: VACUUM's copy is larger than SQLite's page cache."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (a BLOB)")
        conn.execute("INSERT INTO t SELECT randomblob(1000) FROM (WITH RECURSIVE r(i) AS "
                     "(SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 6000) SELECT i FROM r)")
        conn.execute("DELETE FROM t WHERE rowid % 2 = 0")
    finally:
        conn.close()


def _temp_watch(seen: set[str]) -> Callable[[], int]:
    """A progress handler noting any open SQLite temp file (etilqs_*) of this process."""
    def handler() -> int:
        for fd in os.listdir("/proc/self/fd"):
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if "etilqs_" in name:
                seen.add(name)
        return 0
    return handler


def _etilqs() -> set[str]:
    return {f"{d}/{p.name}" for d in ("/tmp", "/var/tmp") if Path(d).is_dir()  # noqa: S108
            for p in Path(d).glob("etilqs_*")}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_vacuum_creates_no_temp_file_outside_the_home(tmp_path: Path) -> None:
    # Control: a plain connection's VACUUM of this database does open a temp file outside.
    control = tmp_path / "control.db"
    _big_sqlite(control)
    plain = sqlite3.connect(control, isolation_level=None)
    outside: set[str] = set()
    try:
        plain.set_progress_handler(_temp_watch(outside), 1000)
        plain.execute("VACUUM")
    finally:
        plain.close()
    if not outside:
        pytest.skip("this SQLite build keeps VACUUM's copy in memory anyway")

    db = tmp_path / "home.db"
    _big_sqlite(db)
    before = _etilqs()
    engine = make_engine(f"sqlite:///{db}")
    seen: set[str] = set()
    event.listen(engine, "checkout",
                 lambda dbapi, _rec, _proxy: dbapi.set_progress_handler(_temp_watch(seen), 1000))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA temp_store").scalar_one() == 2  # MEMORY
        result = compact_database(engine)
    finally:
        engine.dispose()

    assert result == {"backend": "sqlite", "vacuumed": True, "wal_truncated": True}
    assert seen == set()
    assert _etilqs() - before == set()
    assert db.stat().st_size < 4_500_000  # the deleted half is gone
