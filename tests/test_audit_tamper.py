"""The keyed, anchored audit chain: truncation, rewrite and deletion are each found and named."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from sqlalchemy import Connection, text

from flows.audit import AuditChainBroken, audit_line, audit_verify_flow
from tasks.core.audit import (
    GENESIS,
    HEAD_FILE,
    AuditKeyMismatch,
    AuditKeyNotBound,
    _digest,
    anchor_head,
    append_audit,
    check_audit_log,
    key_id,
    read_head_file,
    read_variable,
    variable_name,
)
from tasks.core.db import make_engine, query
from tasks.core.flowrun import project_flow
from tasks.core.runtime import Runtime, open_runtime
from tasks.core.secrets import AUDIT_KEY
from tasks.retention.rules import load_rules

HEAD = HEAD_FILE.as_posix()
KEY_MISMATCH = ("the audit key differs from the one this database's audit chain uses; every home sharing the "
                "database needs the same audit_key (HOME/keys/audit_key, CLUSTER_EVAL_AUDIT_KEY or the "
                "Prefect Secret block cluster-eval-audit-key)")


def _append(rt: Runtime, count: int, start: int = 0) -> None:
    with rt.engine.begin() as conn:
        for n in range(start, start + count):
            append_audit(conn, "pilot", "ingest", {"rows": n})


def _key(rt: Runtime) -> bytes:
    return rt.secrets.key(AUDIT_KEY)


def _check(rt: Runtime, prefect: bool = False) -> dict[str, Any]:
    return check_audit_log(rt.engine, rt.home, prefect).as_json()


def _rows(conn: Connection) -> list[Any]:
    return list(conn.execute(query("audit_all")))


def _rehash_from(conn: Connection, seq: int, hasher: Any) -> None:
    """Recompute the hash and back-link of every entry from ``seq`` on, as an attacker would."""
    prev = GENESIS
    for row in _rows(conn):
        if row.seq >= seq:
            digest = hasher(row.seq, row.cluster_id, row.at, row.event, row.details, row.flow_run_id, prev)
            conn.execute(text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"p": prev, "h": digest, "s": row.seq})
            prev = digest
        else:
            prev = row.hash


def _hmac_under(key: bytes) -> Any:
    def digest(*fields: Any) -> str:
        payload = json.dumps(list(fields), separators=(",", ":"), ensure_ascii=True).encode("ascii")
        return hmac.new(key, payload, hashlib.sha256).hexdigest()

    return digest


# --- rewrite, deletion ----------------------------------------------------------------------


@pytest.mark.parametrize("hasher", ["sha256", "other-key"])
def test_a_rewrite_with_every_later_hash_recomputed_is_named(runtime: Runtime, hasher: str) -> None:
    _append(runtime, 5)
    anchor_head(runtime.engine, runtime.home)
    recompute = _digest if hasher == "sha256" else _hmac_under(os.urandom(32))
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = :d WHERE seq = 3"), {"d": '{"rows":99}'})
        _rehash_from(conn, 3, recompute)
    result = _check(runtime)
    assert (result["ok"], result["first_broken_seq"], result["reason"], result["entries"]) == (
        False, 3, "entry 3 was altered after it was written", 3)
    assert audit_line(result) == "audit log broken: entry 3 was altered after it was written"


def test_a_deleted_middle_entry_is_named(runtime: Runtime) -> None:
    _append(runtime, 5)
    anchor_head(runtime.engine, runtime.home)
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    result = _check(runtime)
    assert (result["ok"], result["first_broken_seq"], result["reason"]) == (False, 3, "entry 3 is missing")


@pytest.mark.parametrize("rehash", [False, True])
def test_a_deletion_hidden_by_renumbering_is_named(runtime: Runtime, rehash: bool) -> None:
    _append(runtime, 5)
    anchor_head(runtime.engine, runtime.home)
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
        for seq in (4, 5):
            conn.execute(text("UPDATE audit_log SET seq = :n WHERE seq = :s"), {"n": seq - 1, "s": seq})
        if rehash:
            _rehash_from(conn, 3, _digest)
    result = _check(runtime)
    assert (result["ok"], result["first_broken_seq"], result["reason"]) == (
        False, 3, "entry 3 was altered after it was written")


# --- truncation and the anchors -------------------------------------------------------------


def test_truncation_is_named_with_the_head_file_that_anchors_it(runtime: Runtime) -> None:
    _append(runtime, 5)
    assert anchor_head(runtime.engine, runtime.home) is None
    head = read_head_file(runtime.home)[1]
    assert head is not None and (head.seq, head.key_id) == (5, key_id(_key(runtime)))
    assert stat_mode(runtime.home.root / HEAD_FILE) == 0o600
    assert stat_mode(runtime.home.root / HEAD_FILE.parent) == 0o700
    assert _check(runtime) == {"ok": True, "entries": 5, "first_broken_seq": None, "reason": None,
                               "unkeyed_entries": 0, "anchors": {"file": 5, "prefect_variable": None}}
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    result = _check(runtime)
    assert (result["ok"], result["first_broken_seq"], result["entries"]) == (False, 4, 3)
    assert result["reason"] == f"entries 4–5 were cut from the end: the head file {HEAD} anchors entry 5"
    # Entries appended again with the key (an insider) end at the anchored seq with another hash.
    _append(runtime, 2, start=10)
    result = _check(runtime)
    assert (result["first_broken_seq"], result["reason"]) == (
        5, f"entry 5 is not the one the head file {HEAD} anchors: entries were cut from the end and replaced")


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_anchor_never_moves_backwards(runtime: Runtime) -> None:
    _append(runtime, 5)
    anchor_head(runtime.engine, runtime.home)
    first = read_head_file(runtime.home)[1]
    assert anchor_head(runtime.engine, runtime.home) is None
    assert read_head_file(runtime.home)[1] == first  # nothing new: not rewritten
    _append(runtime, 1, start=5)
    anchor_head(runtime.engine, runtime.home)
    moved = read_head_file(runtime.home)[1]
    assert moved is not None and moved.seq == 6
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 5"))
    assert anchor_head(runtime.engine, runtime.home) == "an anchor names an entry the audit log no longer holds"
    assert read_head_file(runtime.home)[1] == moved
    _append(runtime, 3, start=20)  # back past the anchored seq, but not the anchored entry
    assert anchor_head(runtime.engine, runtime.home) == "an anchor names an entry the audit log no longer holds"
    assert read_head_file(runtime.home)[1] == moved


def test_a_missing_head_file_is_named(runtime: Runtime) -> None:
    _append(runtime, 3)
    assert _check(runtime)["reason"] == f"the head anchor {HEAD} is missing"  # keyed, never anchored
    anchor_head(runtime.engine, runtime.home)
    assert _check(runtime)["ok"]
    (runtime.home.root / HEAD_FILE).unlink()
    result = _check(runtime)
    assert (result["ok"], result["first_broken_seq"], result["reason"], result["entries"]) == (
        False, None, f"the head anchor {HEAD} is missing", 3)
    assert audit_line(result) == f"audit log broken: the head anchor {HEAD} is missing"
    (runtime.home.root / HEAD_FILE).write_text("{not json")
    assert _check(runtime)["reason"] == f"the head anchor {HEAD} is not a valid anchor"


def test_a_deleted_chain_record_is_named(runtime: Runtime) -> None:
    _append(runtime, 3)
    anchor_head(runtime.engine, runtime.home)
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_chain"))
        _rehash_from(conn, 1, _digest)  # the whole chain made to look unkeyed
    assert _check(runtime)["reason"] == "the audit chain record is missing (deleted?)"


# --- the key --------------------------------------------------------------------------------


def test_a_different_audit_key_on_a_shared_database_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    _append(runtime, 2)
    url = runtime.engine.url.render_as_string(hide_password=False)
    other = open_runtime(make_settings(tmp_path / "other-home", url))
    try:
        with pytest.raises(AuditKeyMismatch) as caught, other.engine.begin() as conn:
            append_audit(conn, "second", "ingest", {"rows": 1})
        assert str(caught.value) == KEY_MISMATCH
        assert check_audit_log(other.engine).reason == KEY_MISMATCH
    finally:
        other.engine.dispose()
    shared = base64.urlsafe_b64encode(_key(runtime)).decode("ascii")
    same = open_runtime(make_settings(tmp_path / "third-home", url), environ={"CLUSTER_EVAL_AUDIT_KEY": shared})
    try:
        with same.engine.begin() as conn:
            append_audit(conn, "third", "ingest", {"rows": 1})
        assert check_audit_log(same.engine).as_json()["entries"] == 3
        assert not (same.home.keys / AUDIT_KEY).exists()  # from the environment, not a new file
    finally:
        same.engine.dispose()
    assert _check(runtime)["reason"] == f"the head anchor {HEAD} is missing"
    anchor_head(runtime.engine, runtime.home)
    assert _check(runtime)["ok"]


def test_an_engine_without_an_audit_key_cannot_append(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(AuditKeyNotBound, match="no audit key is bound"), engine.begin() as conn:
            append_audit(conn, "pilot", "ingest", {})
    finally:
        engine.dispose()


def test_legacy_unkeyed_entries_then_keyed_ones_verify_intact(runtime: Runtime) -> None:
    prev = GENESIS
    with runtime.engine.begin() as conn:  # three entries as an earlier version wrote them
        for seq in (1, 2, 3):
            at, details = f"2022-01-0{seq}T00:00:00+00:00", json.dumps({"n": seq})
            digest = _digest(seq, "pilot", at, "legacy", details, None, prev)
            conn.execute(query("audit_insert"), {"seq": seq, "cluster_id": "pilot", "at": at, "event": "legacy",
                                                 "details": details, "flow_run_id": None,
                                                 "prev_hash": prev, "hash": digest})
            prev = digest
    _append(runtime, 2)
    anchor_head(runtime.engine, runtime.home)
    result = _check(runtime)
    assert (result["ok"], result["entries"], result["unkeyed_entries"]) == (True, 5, 3)
    assert audit_line(result) == "audit log intact: 5 entries (3 unkeyed, from an earlier version)"
    with runtime.engine.begin() as conn:  # move the keyed boundary past the end, rehash plainly
        conn.execute(text("UPDATE audit_chain SET keyed_from = 6"))
        _rehash_from(conn, 4, _digest)
    assert _check(runtime)["reason"] == "the audit chain record was altered (where its keyed entries begin)"


# --- the command line, a flow run's end, the Prefect variable --------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("table", ["audit_log", "audit_chain"])
def test_a_dropped_table_is_one_line_and_exit_1(sqlite_runtime: Runtime, tmp_path: Path, table: str) -> None:
    _append(sqlite_runtime, 2)
    with sqlite_runtime.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_EVAL_")}
    env = {**clean, "CLUSTER_EVAL_HOME": str(sqlite_runtime.home.root),
           "CLUSTER_EVAL_DATABASE_URL": sqlite_runtime.engine.url.render_as_string(hide_password=False)}
    done = subprocess.run([sys.executable, "-m", "cli", "audit", "verify"], env=env,  # noqa: S603
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=300, check=False)
    name = "audit log" if table == "audit_log" else "audit chain"
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"cluster-eval: error: audit log broken: the {name} table is missing (dropped?)\n"


@project_flow("audit-anchor-test", summary=lambda result: f"{result['appended']} appended")
def _appending_flow() -> dict[str, int]:
    from tasks.core.runtime import current_runtime

    _append(current_runtime(), 1, start=100)
    return {"appended": 1}


def test_every_flow_run_ends_by_anchoring_and_never_fails_for_it(runtime: Runtime, prefect_harness: None) -> None:
    _append(runtime, 2)
    assert _appending_flow() == {"appended": 1}
    kid = key_id(_key(runtime))
    head, variable = read_head_file(runtime.home)[1], read_variable(kid)
    assert head is not None and variable is not None
    assert (head.seq, variable.seq, variable.hash) == (3, 3, head.hash)
    (runtime.home.root / HEAD_FILE).write_text("{not json")  # anchoring fails: the run still succeeds
    assert _appending_flow() == {"appended": 1}
    assert read_head_file(runtime.home) == (True, None)
    assert _check(runtime, prefect=True)["reason"] == f"the head anchor {HEAD} is not a valid anchor"


def test_the_prefect_variable_finds_truncation_the_head_file_was_rewritten_to_hide(
        runtime: Runtime, prefect_harness: None) -> None:
    _append(runtime, 5)
    assert anchor_head(runtime.engine, runtime.home, prefect=True) is None
    kid = key_id(_key(runtime))
    assert _check(runtime, prefect=True)["anchors"] == {"file": 5, "prefect_variable": 5}
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    (runtime.home.root / HEAD_FILE).unlink()  # the head file made to match the cut chain
    anchor_head(runtime.engine, runtime.home)  # (no Prefect: the file alone would follow the cut)
    assert read_head_file(runtime.home)[1] is not None
    result = _check(runtime, prefect=True)
    expected = f"entries 4–5 were cut from the end: the Prefect variable {variable_name(kid)} anchors entry 5"
    assert (result["ok"], result["first_broken_seq"], result["reason"], result["anchors"]) == (
        False, 4, expected, {"file": 3, "prefect_variable": 5})
    assert anchor_head(runtime.engine, runtime.home, prefect=True) is not None
    assert read_variable(kid) is not None and read_variable(kid).seq == 5  # type: ignore[union-attr]
    with pytest.raises(AuditChainBroken) as caught:
        audit_verify_flow()
    assert str(caught.value) == f"audit log broken: {expected}"


# --- retention keeps the key and the anchor -------------------------------------------------


def test_no_retention_rule_deletes_the_audit_folder_or_key() -> None:
    rules = load_rules()
    assert [r.name for r in rules if any(Path(f).parts[:1] == ("audit",) for f in r.folders)] == []
    assert [r.name for r in rules if AUDIT_KEY in r.keys or AUDIT_KEY in r.keys_when_empty] == []
    keys_rule = next(r for r in rules if r.name == "keys")
    assert "the audit key stays" in keys_rule.what
