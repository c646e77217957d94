"""Database layer on both backends: migrations, pragmas, named queries, audit chain."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tasks.core.audit import append_audit, verify_audit
from tasks.core.db import make_engine, migrate, rows
from tasks.core.errors import ConfigError
from tasks.core.runtime import Runtime

STUDY_TABLES = [
    "extracts", "families", "children", "episodes", "episode_issues", "episode_services", "goals",
    "specialist_referrals", "quarantined_rows", "contacts", "stored_files", "waves", "wave_strata",
    "households", "do_not_contact", "contact_attempts", "response_imports", "responses",
    "interview_draws", "topup_runs",
]


def test_migrations_apply_once_in_order(runtime: Runtime) -> None:
    assert migrate(runtime.engine) == []  # already applied by open_runtime
    with runtime.engine.connect() as conn:
        versions = [r.version for r in conn.execute(text("SELECT version FROM schema_version ORDER BY version"))]
    assert versions == sorted(versions) and versions[:2] == [1, 2]


@pytest.mark.parametrize("table", STUDY_TABLES)
def test_every_study_table_has_a_cluster_key(runtime: Runtime, table: str) -> None:
    with runtime.engine.connect() as conn:
        columns = conn.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys()
    assert "cluster_id" in columns


def test_sqlite_pragmas(sqlite_runtime: Runtime) -> None:
    with sqlite_runtime.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_state_folder_is_private(sqlite_runtime: Runtime) -> None:
    for folder in sqlite_runtime.home.folders():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    db_file = sqlite_runtime.home.root.parent / "analysis.db"
    assert stat.S_IMODE(db_file.stat().st_mode) & 0o077 == 0


def test_foreign_keys_are_enforced(runtime: Runtime) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"), runtime.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO children (cluster_id, child_pid, family_pid) VALUES ('pilot', 'c1', 'nope')"
        ))


def test_audit_chain_detects_tampering(runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        for n in range(5):
            append_audit(conn, "pilot", "ingest", {"rows": n})
    with runtime.engine.connect() as conn:
        check = verify_audit(conn)
        assert (check.ok, check.entries) == (True, 5)
        assert [r["seq"] for r in rows(conn, "audit_all")] == [1, 2, 3, 4, 5]
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = :d WHERE seq = 3"), {"d": '{"rows":99}'})
    with runtime.engine.connect() as conn:
        check = verify_audit(conn)
    assert (check.ok, check.first_broken_seq) == (False, 3)
    assert check.reason == "entry 3 was altered after it was written"


def test_unreachable_database_is_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        make_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "unreachable" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_unwritable_home(tmp_path: Path) -> None:
    from tasks.core.home import prepare_home

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        prepare_home(blocker / "var")


def test_processes_migrating_one_new_database_at_once_apply_each_migration_once(database_url: str) -> None:
    # Several workers starting on a new database at the same moment (the many-clusters setup):
    # every one must finish, and each migration is recorded once.
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    starters = 4
    barrier = Barrier(starters)
    engines = [make_engine(database_url) for _ in range(starters)]

    def start(engine: Any) -> list[str]:
        barrier.wait()
        return migrate(engine)

    try:
        with ThreadPoolExecutor(starters) as pool:
            applied = list(pool.map(start, engines))
        with engines[0].connect() as conn:
            versions = [r.version for r in conn.execute(text("SELECT version FROM schema_version"))]
    finally:
        for engine in engines:
            engine.dispose()
    names = [name for run in applied for name in run]
    assert len(names) == len(set(names)) == len(versions) == len(set(versions)) >= 8
    assert sorted(int(name[:4]) for name in names) == sorted(versions)
