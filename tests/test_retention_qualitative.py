"""Retention of the qualitative strand (qualitative-v1.md §6): raw transcript deliveries and their
review lists after approval, the register's names after the last approval, and every qual_* row,
key and export at the final deadline; another cluster's rows are never touched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from sqlalchemy import text

from tasks.core.home import write_private
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.core.secrets import AUDIT_KEY, PARTICIPANT_KEY, TRANSCRIPT_KEY
from tasks.qualitative.model import Names, key_id, seal, turn_aad
from tasks.retention.inventory import take_inventory
from tasks.retention.plan import Schedule, plan_schedule
from tasks.retention.rules import load_rules
from tasks.retention.sweep import (
    DELETION_EVENT,
    Deleted,
    Sweep,
    check_sweep,
    delete_unit,
    finish_sweep,
    record_sweep,
    resume_units,
    unfinished_units,
)
from tasks.retention.verify import Verification, record_verification, verify_retention

CLUSTER, OTHER = "pilot", "north"
PUBLICATION, FINAL = date(2022, 12, 31), date(2024, 12, 31)
SETTINGS = {"retention": {"publication_date": PUBLICATION},
            "qualitative": {"raw_transcript_days": 30, "register_days_after_approval": 45}}
REGISTER, T1, T2 = "a" * 64, "b" * 64, "c" * 64
RAW = {sha: f"raw/qualitative/{sha}.zip" for sha in (REGISTER, T1, T2)}
# session -> (delivery, approved_at); FI-03 is not approved yet.
SESSIONS = {"FI-01": (T1, "2022-06-10T10:00:00+00:00"), "FI-02": (T1, "2022-06-20T23:30:00+00:00"),
            "FG-01": (T2, "2022-06-25T09:00:00+00:00"), "FI-03": (T2, None)}
# participant -> session; F05 withdrew (no names, no transcript: FI-04 blocks nothing).
PARTICIPANTS = {"F01": "FI-01", "F02": "FI-01", "F03": "FI-02", "P01": "FG-01", "P02": "FG-01",
                "F04": "FI-03", "F05": "FI-04"}
REVIEW = {s: f"restricted/review/{s}.csv" for s in (*SESSIONS, "XX-09")}  # XX-09: no stored session
NOTES = "restricted/notes.txt"
QUAL_TABLES = ("qual_segments", "qual_codings", "qual_codes", "qual_turns", "qual_sessions",
               "qual_withdrawals", "qual_participants", "qual_deliveries")
PILOT_ROWS = {"qual_segments": 1, "qual_codings": 1, "qual_codes": 1, "qual_turns": 4, "qual_sessions": 4,
              "qual_withdrawals": 1, "qual_participants": 7, "qual_deliveries": 3}
NORTH_ROWS = {"qual_segments": 0, "qual_codings": 0, "qual_codes": 0, "qual_turns": 1, "qual_sessions": 1,
              "qual_withdrawals": 0, "qual_participants": 1, "qual_deliveries": 1}


def _sql(conn: Any, statement: str, **params: Any) -> None:
    conn.execute(text(statement), params)


def _participant(conn: Any, cluster: str, pid: str, session: str, names_key: bytes | None) -> None:
    nonce, sealed = Names(f"Full Name {pid}", ("Nick",)).seal(names_key, cluster, pid) if names_key else (None, None)
    _sql(conn, "INSERT INTO qual_participants (cluster_id, participant_id, strand, session_id, session_date,"
               " role, display_name, consent_form_version, info_sheet_version, consent_date,"
               " consent_recording, consent_quotes, withdrawn_date, names_key_id, names_nonce,"
               " names_ciphertext, register_sha256) VALUES (:c, :p, 'family_interview', :s, '2022-05-20',"
               " 'parent', :p, 'v1', 'v1', '2022-05-01', TRUE, TRUE, :w, :k, :n, :x, :r)",
         c=cluster, p=pid, s=session, w=None if names_key else "2022-05-15",
         k=key_id(names_key) if names_key else None, n=nonce, x=sealed, r=REGISTER)


def _session(conn: Any, cluster: str, session: str, delivery: str, approved: str | None, turn_key: bytes) -> None:
    _sql(conn, "INSERT INTO qual_sessions (cluster_id, session_id, delivery_sha256, source_format, source_sha256,"
               " imported_at, redacted_at, turns, words, replacements, review_entries, approved_at,"
               " approved_review_entries) VALUES (:c, :s, :d, 'txt', :h, '2022-06-01T00:00:00+00:00',"
               " '2022-06-01T00:00:00+00:00', 1, 3, '{}', 1, :a, :e)",
         c=cluster, s=session, d=delivery, h="d" * 64, a=approved, e=0 if approved else None)
    nonce, sealed = seal(turn_key, turn_aad(cluster, session, 1), "some de-identified words")
    _sql(conn, "INSERT INTO qual_turns (cluster_id, session_id, turn_no, source_line, speaker, participant_id,"
               " key_id, nonce, ciphertext, withdrawn) VALUES (:c, :s, 1, 1, 'Interviewer', NULL, :k, :n, :x,"
               " FALSE)", c=cluster, s=session, k=key_id(turn_key), n=nonce, x=sealed)


def _delivery(conn: Any, cluster: str, sha: str, kind: str, path: Path) -> None:
    _sql(conn, "INSERT INTO qual_deliveries (cluster_id, sha256, kind, stored_path, received_at)"
               " VALUES (:c, :s, :k, :p, '2022-05-10T00:00:00+00:00')", c=cluster, s=sha, k=kind, p=str(path))


def populate(rt: Runtime, export: Path) -> None:
    """Register, two transcript deliveries (one not fully approved), review lists, coding, an export;
    and another cluster's rows, approved long ago."""
    home = rt.home
    names_key, _ = rt.secrets.key_or_create(PARTICIPANT_KEY)
    turn_key, _ = rt.secrets.key_or_create(TRANSCRIPT_KEY)
    for path in (*RAW.values(), *REVIEW.values(), NOTES):
        write_private(home.root / path, b"encrypted or restricted bytes")
    write_private(export, b"<Project/>")
    with rt.engine.begin() as c:
        for sha, kind, category in ((REGISTER, "register", "raw_register"), (T1, "transcripts", "raw_transcripts"),
                                    (T2, "transcripts", "raw_transcripts")):
            _delivery(c, CLUSTER, sha, kind, home.root / RAW[sha])
            _sql(c, "INSERT INTO stored_files (cluster_id, path, category, registered_at)"
                    " VALUES (:c, :p, :k, '2022-05-10T00:00:00+00:00')", c=CLUSTER, p=str(home.root / RAW[sha]),
                 k=category)
        _sql(c, "INSERT INTO stored_files (cluster_id, path, category, registered_at)"
                " VALUES (:c, :p, 'qdpx_export', '2022-07-01T00:00:00+00:00')", c=CLUSTER, p=str(export))
        for pid, session in PARTICIPANTS.items():
            _participant(c, CLUSTER, pid, session, None if pid == "F05" else names_key)
        _sql(c, "INSERT INTO qual_withdrawals (cluster_id, participant_id, withdrawn_at)"
                " VALUES (:c, 'F05', '2022-05-15T00:00:00+00:00')", c=CLUSTER)
        for session, (delivery, approved) in SESSIONS.items():
            _session(c, CLUSTER, session, delivery, approved, turn_key)
        _sql(c, "INSERT INTO qual_codes (cluster_id, theme, subtheme, origin, guid)"
                " VALUES (:c, 'Access', '', 'codebook', 'g1')", c=CLUSTER)
        _sql(c, "INSERT INTO qual_codings (cluster_id, sha256, kind, imported_at, selections, segments)"
                " VALUES (:c, :s, 'qdpx', '2022-07-02T00:00:00+00:00', 1, 1)", c=CLUSTER, s="e" * 64)
        _sql(c, "INSERT INTO qual_segments (cluster_id, coding_sha256, selection_id, session_id, turn_no,"
                " participant_id, theme, subtheme, start_cp, end_cp) VALUES (:c, :s, 'sel1', 'FI-01', 1, NULL,"
                " 'Access', '', 0, 4)", c=CLUSTER, s="e" * 64)
        # Another cluster in the same database: approved in January, never this sweep's business.
        _delivery(c, OTHER, T1, "transcripts", home.root / "raw/qualitative/north.zip")
        _participant(c, OTHER, "F01", "FI-01", names_key)
        _session(c, OTHER, "FI-01", T1, "2022-01-03T00:00:00+00:00", turn_key)


@pytest.fixture
def study(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    rt = open_runtime(make_settings(tmp_path / "var", database_url, **SETTINGS))
    populate(rt, tmp_path / "exports" / "coding.qdpx")
    with use_runtime(rt):
        yield rt
    rt.engine.dispose()


def files_left(rt: Runtime) -> set[str]:
    root = rt.home.root
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
            and not p.is_relative_to(root / "keys") and not p.is_relative_to(root / "prefect")
            and not p.is_relative_to(root / "audit")}  # the audit head anchor outlives every rule


def keys_left(rt: Runtime) -> set[str]:
    return {p.name for p in rt.home.keys.iterdir()} - {AUDIT_KEY}  # kept: the audit log still verifies


def rows_of(rt: Runtime, cluster: str) -> dict[str, int]:
    with rt.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t} WHERE cluster_id = :c"),  # noqa: S608
                                {"c": cluster}).scalar_one() for t in QUAL_TABLES}


def names_left(rt: Runtime, cluster: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT COUNT(*) FROM qual_participants WHERE cluster_id = :c AND (names_ciphertext IS NOT NULL"
            " OR names_nonce IS NOT NULL OR names_key_id IS NOT NULL)"), {"c": cluster}).scalar_one())


def schedule_at(rt: Runtime, as_of: date) -> Schedule:
    rules = load_rules()
    with rt.engine.connect() as conn:
        inventory = take_inventory(conn, rt.home, CLUSTER, rules)
    return plan_schedule(rules, rt.settings, inventory, rt.home, [], as_of)


def listing(entries: Any) -> list[tuple[str, str, list[tuple[str, str, int, int, int]]]]:
    """(rule, due date, [(kind, target, rows, files, keys)]) of the qualitative rules' entries."""
    qualitative = ("raw-transcripts", "register-personal-data", "qualitative-data")
    return [(e.rule, e.due_date.isoformat(), [(i["kind"], i["target"], i["rows"], i["files"], i["keys"])
                                              for i in (u.item() for u in e.units)])
            for e in entries if e.rule in qualitative]


def verify_now(rt: Runtime, schedule: Schedule) -> Verification:
    return verify_retention(rt.engine, rt.home, rt.settings, load_rules(), schedule, [], [], None)


def sweep(rt: Runtime, as_of: date, crash_at: str | None = None) -> tuple[list[Deleted], Verification]:
    """What the retention flow does, without Prefect: check, resume, plan, delete, verify, audit."""
    rules = load_rules()
    with rt.engine.connect() as conn:
        inventory = take_inventory(conn, rt.home, CLUSTER, rules)
        check_sweep(conn, rt.settings, rt.home, rules, inventory, as_of, rt.secrets.exists)
    run = Sweep(uuid.uuid4().hex, as_of, None)
    record_sweep(rt.engine, CLUSTER, run)
    done = resume_units(rt.engine, rt.home, CLUSTER, None, None)
    schedule = schedule_at(rt, as_of)

    def checkpoint(label: str) -> None:
        if label == crash_at:
            raise KeyboardInterrupt  # the process dies here

    done += [delete_unit(rt.engine, rt.home, CLUSTER, run, unit, None, checkpoint) for unit in schedule.units]
    result = verify_now(rt, schedule)
    record_verification(rt.engine, CLUSTER, run, result)
    finish_sweep(rt.engine, CLUSTER, run)
    return done, result


def deletions(done: list[Deleted]) -> list[tuple[str, str, str, int, int, int, bool]]:
    return [(d.unit.rule, d.unit.kind, d.unit.target, d.counts["rows"], d.counts["files"], d.counts["keys"],
             d.resumed) for d in done]


def audit_events(rt: Runtime, event: str) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [json.loads(r.details) for r in conn.execute(
            text("SELECT details FROM audit_log WHERE event = :e AND cluster_id = :c ORDER BY seq"),
            {"e": event, "c": CLUSTER})]


def ledger(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.engine.connect() as conn:
        return [(r.rule, r.target, r.state) for r in conn.execute(text(
            "SELECT rule, target, state FROM retention_deletions WHERE cluster_id = :c ORDER BY started_at, rule"),
            {"c": CLUSTER})]


ALL_FILES = {*RAW.values(), *REVIEW.values(), NOTES}
T1_ITEM = ("delivery", RAW[T1], 0, 3, 0)  # the delivery and the review lists of FI-01 and FI-02
T2_ITEM = ("delivery", RAW[T2], 0, 3, 0)  # the delivery and the review lists of FG-01 and FI-03
STRAY_ITEM = ("file", REVIEW["XX-09"], 0, 1, 0)
REGISTER_ITEM = ("store", "register_personal_data", 6, 1, 1)  # 6 participants' names, raw register, key
QUALITATIVE_ITEM = ("store", "qualitative_data", 22, 2, 1)  # every qual_* row, export + notes, transcript key


def test_the_strand_is_deleted_on_each_of_its_dates(study: Runtime, tmp_path: Path) -> None:
    rt = study
    export = tmp_path / "exports" / "coding.qdpx"
    # Nothing of the strand is due the day before the first delivery's date; FI-03 is not approved,
    # so its delivery (and the register) are kept until the final deadline.
    before = schedule_at(rt, date(2022, 7, 19))
    assert listing(before.due) == []
    assert listing(before.next) == [
        ("raw-transcripts", "2022-07-20", [T1_ITEM]),
        ("raw-transcripts", "2024-12-31", [T2_ITEM, STRAY_ITEM]),
        ("register-personal-data", "2024-12-31", [REGISTER_ITEM]),
        ("qualitative-data", "2024-12-31", [QUALITATIVE_ITEM]),
    ]
    assert sweep(rt, date(2022, 7, 19))[0] == []

    # FI-02 was approved at 23:30 UTC on 20 June: 30 days later, T1 and its sessions' review lists go.
    due = schedule_at(rt, date(2022, 7, 20))
    assert listing(due.due) == [("raw-transcripts", "2022-07-20", [T1_ITEM])]
    assert [u.files for u in due.units] == [(RAW[T1], REVIEW["FI-01"], REVIEW["FI-02"])]
    failed = verify_now(rt, due)
    assert (failed.ok, failed.remaining["files"], failed.remaining["rows"]) == (False, 3, 0)
    done, check = sweep(rt, date(2022, 7, 20))
    assert deletions(done) == [("raw-transcripts", *T1_ITEM, False)]
    assert check.ok, check.view()
    assert files_left(rt) == ALL_FILES - {RAW[T1], REVIEW["FI-01"], REVIEW["FI-02"]}
    assert keys_left(rt) == {PARTICIPANT_KEY, TRANSCRIPT_KEY}
    assert (rows_of(rt, CLUSTER), names_left(rt, CLUSTER)) == (PILOT_ROWS, 6)
    assert ledger(rt) == [("raw-transcripts", RAW[T1], "done")]
    [event] = audit_events(rt, DELETION_EVENT)
    assert {k: event[k] for k in ("rule", "kind", "item", "due_date", "rows", "files", "keys")} == {
        "rule": "raw-transcripts", "kind": "delivery", "item": RAW[T1], "due_date": "2022-07-20",
        "rows": 0, "files": 3, "keys": 0}
    assert sweep(rt, date(2022, 7, 20))[0] == []  # idempotent

    # FI-03 approved on 1 August: T2 goes 30 days later, the register's names 45 days later.
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE qual_sessions SET approved_at = '2022-08-01T12:00:00+00:00'"
                          " WHERE cluster_id = :c AND session_id = 'FI-03'"), {"c": CLUSTER})
    assert listing(schedule_at(rt, date(2022, 8, 30)).next)[:2] == [
        ("raw-transcripts", "2022-08-31", [T2_ITEM]), ("register-personal-data", "2022-09-15", [REGISTER_ITEM])]
    assert deletions(sweep(rt, date(2022, 8, 31))[0]) == [("raw-transcripts", *T2_ITEM, False)]
    assert files_left(rt) == {RAW[REGISTER], REVIEW["XX-09"], NOTES}
    assert sweep(rt, date(2022, 9, 14))[0] == []

    # The register: killed after the key and raw register were removed, before the names were cleared.
    due = schedule_at(rt, date(2022, 9, 15))
    failed = verify_now(rt, due)
    assert (failed.ok, failed.remaining["rows"], failed.remaining["files"], failed.remaining["keys"]) == (
        False, 6, 1, 1)
    with pytest.raises(KeyboardInterrupt):
        sweep(rt, date(2022, 9, 15), crash_at="register-personal-data:register_personal_data:removed")
    assert PARTICIPANT_KEY not in keys_left(rt) and RAW[REGISTER] not in files_left(rt)
    assert names_left(rt, CLUSTER) == 6  # half done, with its record
    with rt.engine.connect() as conn:
        assert [u.target for _, _, u in unfinished_units(conn, CLUSTER)] == ["register_personal_data"]
    done, check = sweep(rt, date(2022, 9, 15))
    assert deletions(done) == [("register-personal-data", *REGISTER_ITEM, True)]
    assert done[0].counts["nulled"] == {"qual_participants": 6}
    assert check.ok, check.view()
    assert (names_left(rt, CLUSTER), names_left(rt, OTHER)) == (0, 1)
    assert rows_of(rt, CLUSTER) == PILOT_ROWS  # the rows stay until the final deadline
    assert keys_left(rt) == {TRANSCRIPT_KEY}
    assert files_left(rt) == {REVIEW["XX-09"], NOTES}
    assert sweep(rt, date(2024, 12, 30))[0] == []

    # The final deadline: every qual_* row of this cluster, the transcript key, the export, HOME/restricted.
    due = schedule_at(rt, FINAL)
    assert listing(due.due) == [("raw-transcripts", "2024-12-31", [STRAY_ITEM]),
                                ("qualitative-data", "2024-12-31", [QUALITATIVE_ITEM])]
    assert not verify_now(rt, due).ok
    done, check = sweep(rt, FINAL)
    assert deletions(done) == [("raw-transcripts", *STRAY_ITEM, False), ("qualitative-data", *QUALITATIVE_ITEM, False)]
    assert done[1].counts["tables"] == PILOT_ROWS
    assert check.ok, check.view()
    assert (files_left(rt), keys_left(rt), export.exists()) == (set(), set(), False)
    assert rows_of(rt, CLUSTER) == dict.fromkeys(QUAL_TABLES, 0)
    assert rows_of(rt, OTHER) == NORTH_ROWS and names_left(rt, OTHER) == 1
    assert ledger(rt) == [("raw-transcripts", RAW[T1], "done"), ("raw-transcripts", RAW[T2], "done"),
                          ("register-personal-data", "register_personal_data", "done"),
                          ("raw-transcripts", REVIEW["XX-09"], "done"),
                          ("qualitative-data", "qualitative_data", "done")]
    assert [(e["rule"], e["rows"], e["nulled"]) for e in audit_events(rt, DELETION_EVENT)] == [
        ("raw-transcripts", 0, ""), ("raw-transcripts", 0, ""),
        ("register-personal-data", 6, "qual_participants=6"), ("raw-transcripts", 0, ""),
        ("qualitative-data", 22, "")]


def test_unapproved_deliveries_wait_for_the_final_deadline(tmp_path: Path, sqlite_url: str) -> None:
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **SETTINGS))
    populate(rt, tmp_path / "coding.qdpx")
    with use_runtime(rt):
        sweep(rt, date(2022, 7, 20))
        # Years later FI-03 is still not approved: T2 and the names stay until the final deadline.
        later = schedule_at(rt, date(2024, 12, 30))
        assert listing(later.due) == []
        assert listing(later.next) == [("raw-transcripts", "2024-12-31", [T2_ITEM, STRAY_ITEM]),
                                       ("register-personal-data", "2024-12-31", [REGISTER_ITEM]),
                                       ("qualitative-data", "2024-12-31", [QUALITATIVE_ITEM])]
        done, check = sweep(rt, FINAL)
        assert [(d.unit.rule, d.unit.target) for d in done] == [
            ("raw-transcripts", RAW[T2]), ("raw-transcripts", REVIEW["XX-09"]),
            ("register-personal-data", "register_personal_data"), ("qualitative-data", "qualitative_data")]
        assert check.ok, check.view()
        assert (files_left(rt), keys_left(rt), names_left(rt, CLUSTER)) == (set(), set(), 0)
        assert rows_of(rt, CLUSTER) == dict.fromkeys(QUAL_TABLES, 0)
    rt.engine.dispose()


def test_a_superseded_delivery_goes_after_the_last_approval(tmp_path: Path, sqlite_url: str) -> None:
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **SETTINGS))
    populate(rt, tmp_path / "coding.qdpx")
    superseded = "raw/qualitative/" + "f" * 64 + ".zip"  # its sessions were re-imported from T1 and T2
    write_private(rt.home.root / superseded, b"encrypted bytes")
    with rt.engine.begin() as conn:
        _delivery(conn, CLUSTER, "f" * 64, "transcripts", rt.home.root / superseded)
        _sql(conn, "INSERT INTO stored_files (cluster_id, path, category, registered_at)"
                   " VALUES (:c, :p, 'raw_transcripts', '2022-05-09T00:00:00+00:00')",
             c=CLUSTER, p=str(rt.home.root / superseded))
    item = ("delivery", superseded, 0, 1, 0)
    assert listing(schedule_at(rt, date(2022, 7, 20)).next)[0] == (
        "raw-transcripts", "2024-12-31", [T2_ITEM, item, STRAY_ITEM])
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE qual_sessions SET approved_at = '2022-08-01T12:00:00+00:00'"
                          " WHERE cluster_id = :c AND session_id = 'FI-03'"), {"c": CLUSTER})
    assert listing(schedule_at(rt, date(2022, 8, 31)).due) == [
        ("raw-transcripts", "2022-07-20", [T1_ITEM]), ("raw-transcripts", "2022-08-31", [T2_ITEM, item])]
    rt.engine.dispose()


def test_without_a_publication_date_unapproved_items_are_unscheduled(tmp_path: Path, sqlite_url: str) -> None:
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, qualitative=SETTINGS["qualitative"]))
    populate(rt, tmp_path / "coding.qdpx")
    schedule = schedule_at(rt, date(2022, 7, 20))
    assert listing(schedule.due) == [("raw-transcripts", "2022-07-20", [T1_ITEM])]
    qualitative = ("raw-transcripts", "register-personal-data", "qualitative-data")
    assert [(u["rule"], u["reason"]) for u in schedule.unscheduled if u["rule"] in qualitative] == [
        ("raw-transcripts", "some transcripts are not approved and retention.publication_date is not set"),
        ("register-personal-data",
         "not every session's transcript is approved and retention.publication_date is not set"),
        ("qualitative-data", "retention.publication_date is not set")]
    rt.engine.dispose()


def test_a_lost_transcript_key_stops_the_sweep_but_a_register_alone_needs_none(
        tmp_path: Path, sqlite_url: str) -> None:
    from tasks.core.errors import ConfigError

    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **SETTINGS))
    populate(rt, tmp_path / "coding.qdpx")
    rules = load_rules()
    (rt.home.keys / TRANSCRIPT_KEY).unlink()
    with rt.engine.connect() as conn:
        inventory = take_inventory(conn, rt.home, CLUSTER, rules)
        with pytest.raises(ConfigError, match=r"key transcript_key is missing .* while 4 row\(s\) and 0 file"):
            check_sweep(conn, rt.settings, rt.home, rules, inventory, date(2022, 7, 20), lambda _: False)
    with rt.engine.begin() as conn:  # a register imported, no transcript yet: no transcript key needed
        for table in ("qual_segments", "qual_turns", "qual_sessions"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
    with rt.engine.connect() as conn:
        inventory = take_inventory(conn, rt.home, CLUSTER, rules)
        check_sweep(conn, rt.settings, rt.home, rules, inventory, date(2022, 7, 20), lambda _: False)
    rt.engine.dispose()


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rt: Runtime,
         *argv: str) -> tuple[int, dict[str, Any]]:
    from cli.main import main

    env = {"HOME": str(rt.home.root), "DATABASE_URL": rt.settings.database,
           "RETENTION__PUBLICATION_DATE": str(PUBLICATION), "QUALITATIVE__RAW_TRANSCRIPT_DAYS": "30",
           "QUALITATIVE__REGISTER_DAYS_AFTER_APPROVAL": "45"}
    for name, value in env.items():
        monkeypatch.setenv(f"CLUSTER_EVAL_{name}", value)
    capsys.readouterr()
    code = main([*argv, "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


@pytest.mark.e2e
def test_dry_run_sweep_and_status_through_the_command_line(
        tmp_path: Path, sqlite_url: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from prefect import tags

    from tasks.core.runtime import run_tags

    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **SETTINGS))
    populate(rt, tmp_path / "coding.qdpx")
    qualitative = ("raw-transcripts", "register-personal-data", "qualitative-data")
    with tags(*run_tags(CLUSTER)):
        code, dry = _cli(monkeypatch, capsys, rt, "retention", "--dry-run", "--as-of", "2022-07-20")
        assert code == 0 and dry["deleted"] == []
        assert [(e["rule"], e["due_date"], [(i["kind"], i["target"], i["files"]) for i in e["items"]])
                for e in dry["due"]] == [("raw-transcripts", "2022-07-20", [("delivery", RAW[T1], 3)])]
        assert [(e["rule"], e["due_date"]) for e in dry["next"] if e["rule"] in qualitative] == [
            ("raw-transcripts", "2024-12-31"), ("register-personal-data", "2024-12-31"),
            ("qualitative-data", "2024-12-31")]
        assert files_left(rt) == ALL_FILES
        code, result = _cli(monkeypatch, capsys, rt, "retention", "--as-of", "2022-07-20")
        assert code == 0 and result["verification"]["ok"]
        assert [(d["rule"], d["target"], d["files"], d["nulled"]) for d in result["deleted"]
                if d["category"] != "prefect_history"] == [("raw-transcripts", RAW[T1], 3, {})]
        assert files_left(rt) == ALL_FILES - {RAW[T1], REVIEW["FI-01"], REVIEW["FI-02"]}
        # status (as of today, long after the final deadline): the strand's rules are due now.
        code, status = _cli(monkeypatch, capsys, rt, "status")
        assert code == 0
        assert [(e["rule"], e["due_date"]) for e in status["retention"]["due"] if e["rule"] in qualitative] == [
            ("raw-transcripts", "2024-12-31"), ("register-personal-data", "2024-12-31"),
            ("qualitative-data", "2024-12-31")]
    rt.engine.dispose()


RULE = """[[rule]]
name = "r"
category = "c"
what = "w"
basis = "{basis}"
offset = "{offset}"
unit = "{unit}"
how = "h"
{extra}
"""


@pytest.mark.parametrize(("change", "message"), [
    ({"offset": "qualitative.max_quote_words"}, None),
    ({"offset": "qualitative.codebook"}, "offset must name a whole-number setting"),
    ({"offset": "nosuch.raw_transcript_days"}, "offset must name a whole-number setting"),
    ({"unit": "months"}, "approval rules count days"),
    ({"extra": 'null_columns = {table = "qual_participants"}'}, "null_columns must be {table"),
    ({"extra": 'null_columns = {table = "qual_participants", columns = ["names; DROP"]}'},
     "table and column names must be lower-case identifiers"),
    ({"extra": 'folders = ["restricted/../keys"]'}, "folders must be plain folder names"),
])
def test_the_rules_format_for_approval_rules(change: dict[str, str], message: str | None) -> None:
    from tasks.core.errors import ConfigError

    values = {"basis": "approval", "offset": "qualitative.raw_transcript_days", "unit": "days", "extra": ""}
    source = RULE.format(**(values | change))
    if message is None:
        assert load_rules(source)[0].offset == change["offset"]
        return
    with pytest.raises(ConfigError) as caught:
        load_rules(source)
    assert message in str(caught.value)
