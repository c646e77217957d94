"""Audit log: concurrent appends queue on both backends, and the chain stays unbroken."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tasks.core.audit import append_audit, verify_audit
from tasks.core.runtime import Runtime
from tasks.core.secrets import AUDIT_KEY

WRITERS = 6
APPENDS = 20

# One writer process: waits at the gate so all start together, then appends in its own transactions.
_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tasks.core.audit import append_audit, bind_audit_key
    from tasks.core.db import make_engine

    url, name, count, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    engine = make_engine(url)
    bind_audit_key(engine, bytes.fromhex(sys.argv[5]))
    (gate.parent / f"ready-{name}").touch()
    while not gate.exists():
        time.sleep(0.005)
    for n in range(count):
        with engine.begin() as conn:
            append_audit(conn, name, "concurrency-test", {"n": n})
    engine.dispose()
""")


def _entries_per_writer(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT cluster_id, COUNT(*) AS n FROM audit_log GROUP BY cluster_id"))
        return {row.cluster_id: int(row.n) for row in found}


def _assert_unbroken(engine: Engine, writers: int, appends: int) -> None:
    with engine.connect() as conn:
        check = verify_audit(conn)
        seqs = [row.seq for row in conn.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
    assert (check.ok, check.entries, check.reason) == (True, writers * appends, None)
    assert seqs == list(range(1, writers * appends + 1))
    assert _entries_per_writer(engine) == {f"w{i}": appends for i in range(writers)}


def test_concurrent_threads_append_one_unbroken_chain(runtime: Runtime) -> None:
    start = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def write(name: str) -> None:
        try:
            start.wait()
            for n in range(APPENDS):
                with runtime.engine.begin() as conn:
                    append_audit(conn, name, "concurrency-test", {"n": n})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    _assert_unbroken(runtime.engine, WRITERS, APPENDS)


def test_concurrent_processes_append_one_unbroken_chain(runtime: Runtime, tmp_path: Path) -> None:
    gate = tmp_path / "gate" / "go"
    gate.parent.mkdir()
    url = runtime.engine.url.render_as_string(hide_password=False)
    key, _ = runtime.secrets.key_or_create(AUDIT_KEY)  # every writer holds the same audit key
    writers = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", _WRITER, url, f"w{i}", str(APPENDS), str(gate), key.hex()],
            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for i in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(gate.parent.glob("ready-*"))) < WRITERS:
            assert all(w.poll() is None for w in writers), "a writer stopped before the start"
            assert time.monotonic() < deadline, "writers did not start"
            time.sleep(0.05)
        gate.touch()
        results = [(w.wait(timeout=120), w.stderr.read().decode() if w.stderr else "") for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert [(code, err) for code, err in results if code != 0] == []
    _assert_unbroken(runtime.engine, WRITERS, APPENDS)


def test_a_rolled_back_append_leaves_no_gap(runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        append_audit(conn, "w0", "kept", {})
    with pytest.raises(RuntimeError), runtime.engine.begin() as conn:
        append_audit(conn, "w0", "rolled-back", {})
        raise RuntimeError("the stage failed after its audit event")
    with runtime.engine.begin() as conn:
        append_audit(conn, "w0", "kept", {})
    with runtime.engine.connect() as conn:
        check = verify_audit(conn)
        events = [row.event for row in conn.execute(text("SELECT event FROM audit_log ORDER BY seq"))]
    assert (check.ok, check.entries) == (True, 2)
    assert events == ["kept", "kept"]
