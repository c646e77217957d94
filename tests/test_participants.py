"""The qualitative participants register (import, rules, re-import), withdrawal and stale outputs.

Registers are built here as rows of the spec's columns, packed into AES-256 ZIPs with the
project's writer and imported by calling ``import_register`` directly; one end-to-end test runs
the commands through the CLI in-process. Figures are exact; every rejection is checked for one
line naming participant_id (or row), column and rule, and never the offending value.
"""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from sqlalchemy import Engine, create_engine, text

from cli.retention import _status_summary
from tasks.core.archive import aes_zip_bytes, sha256_bytes
from tasks.core.errors import InputRejected
from tasks.core.home import write_private
from tasks.core.runtime import Runtime
from tasks.core.secrets import PARTICIPANT_KEY, TRANSCRIPT_KEY
from tasks.qualitative.model import (
    WITHDRAWN_TEXT,
    Names,
    key_id,
    load_names,
    load_participants,
    load_turns,
    seal,
    turn_aad,
)
from tasks.qualitative.register import import_register, people_of_session
from tasks.qualitative.withdraw import withdraw_participant
from tasks.status.summary import stale_outputs

PASS = "register-test-passphrase-3"  # noqa: S105 - test passphrase
MARKER = "Zqxmarker"  # a surname that must never reach the database in clear
COLUMNS = ("participant_id", "strand", "session_id", "session_date", "role", "survey_token",
           "full_name", "other_names", "chosen_pseudonym", "consent_form_version",
           "info_sheet_version", "consent_date", "consent_recording", "consent_quotes",
           "withdrawn_date")
FAM, PRAC = "family_interview", "practitioner_focus_group"
QUAL_TABLES = ("qual_participants", "qual_withdrawals", "qual_deliveries", "stored_files")


def person(pid: str, strand: str, session: str, day: str, role: str, name: str, *,
           token: str = "", others: str = "", pseudonym: str = "", recording: str = "Y",
           quotes: str = "Y", consent: str = "2022-02-20", withdrawn: str = "") -> dict[str, str]:
    return {"participant_id": pid, "strand": strand, "session_id": session, "session_date": day,
            "role": role, "survey_token": token, "full_name": name, "other_names": others,
            "chosen_pseudonym": pseudonym, "consent_form_version": "CF-2", "info_sheet_version": "IS-3",
            "consent_date": consent, "consent_recording": recording, "consent_quotes": quotes,
            "withdrawn_date": withdrawn}


def base_rows() -> list[dict[str, str]]:
    """Rows 2-7 of the register: 3 families in 2 interviews (one withdrawn), 3 practitioners."""
    return [
        person("F01", FAM, "FI-01", "2022-03-01", "parent", f"Alma {MARKER}", token="TOK-A",  # noqa: S106 - a test survey token
               others="Bunny; Auntie Qerwin", pseudonym="Rose"),
        person("F02", FAM, "FI-01", "2022-03-01", "Carer", "Beth Carter", pseudonym="Ivy",
               recording="yes", quotes="No"),
        person("F03", FAM, "FI-02", "05/03/2022", "grandparent", "Dora Evans", pseudonym="Pearl",
               withdrawn="2022-03-10", **{"token": "TOK-B"}),  # withdrawn: token not checked, not kept
        person("P01", PRAC, "FG-1", "2022-04-01", "therapist", "Erin Fox"),
        person("P02", PRAC, "FG-1", "2022-04-01", "manager", "Gail Hart", pseudonym="Sky",
               quotes="n"),
        person("P03", PRAC, "FG-1", "2022-04-01", "other", "Ian Jones", recording="TRUE"),
    ]


def register_csv(rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> bytes:
    frame = pl.DataFrame([{c: r.get(c, "") for c in columns} for r in rows],
                         schema={c: pl.String for c in columns})
    return frame.write_csv().encode("utf-8")


def deliver(tmp_path: Path, rows: list[dict[str, str]], name: str = "register.zip", *,
            members: dict[str, bytes] | None = None) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(aes_zip_bytes(members or {"participants.csv": register_csv(rows)}, PASS))
    return path


def prepare(rt: Runtime) -> None:
    """The extract passphrase as a key file; three issued survey tokens, one opted in."""
    write_private(rt.home.keys / "extract_passphrase", PASS.encode())
    with rt.engine.begin() as conn:
        conn.execute(text("INSERT INTO waves VALUES ('pilot', 1, 7, 3, 'stratum', '2022-01-10')"))
        for token, family in (("TOK-A", "fa"), ("TOK-B", "fb"), ("TOK-C", "fc")):
            conn.execute(text("INSERT INTO households (cluster_id, token, family_pid, wave, stratum, route)"
                              " VALUES ('pilot', :t, :f, 1, 'parenting', 'email')"), {"t": token, "f": family})
        for token, opted in (("TOK-A", True), ("TOK-B", False)):
            conn.execute(text("INSERT INTO responses (cluster_id, token, submitted_at, mode,"
                              " q10_interview_opt_in, import_sha256) VALUES ('pilot', :t,"
                              " '2022-02-01T10:00:00+00:00', 'online', :o, 'x')"), {"t": token, "o": opted})


def counts(engine: Engine, tables: tuple[str, ...] = QUAL_TABLES + ("audit_log",)) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())  # noqa: S608
                for t in tables}


def audit_events(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        return [(r.event, json.loads(r.details)) for r in conn.execute(text(
            "SELECT event, details FROM audit_log ORDER BY seq"))]


@pytest.fixture
def rt(sqlite_runtime: Runtime) -> Runtime:
    prepare(sqlite_runtime)
    return sqlite_runtime


EXPECTED = {"participants": 6, "sessions": 3, "families": 3, "practitioners": 3, "withdrawn": 1}


# --------------------------------------------------------------------------- import


def test_valid_register_is_stored_with_names_sealed(runtime: Runtime, tmp_path: Path) -> None:
    prepare(runtime)
    path = deliver(tmp_path, base_rows())
    sha = sha256_bytes(path.read_bytes())
    result = import_register(runtime, path, "run-1").as_json()
    assert result == {"status": "imported", "sha256": sha, **EXPECTED}

    with runtime.engine.connect() as conn:
        people = {p.participant_id: p for p in load_participants(conn, "pilot")}
        names = load_names(conn, runtime.secrets.key(PARTICIPANT_KEY), "pilot")
        stored = conn.execute(text(
            "SELECT participant_id, session_date, role, survey_token, consent_date, withdrawn_date,"
            " names_key_id, register_sha256 FROM qual_participants ORDER BY participant_id")).all()
        delivery = conn.execute(text("SELECT kind, stored_path FROM qual_deliveries")).one()
        files = conn.execute(text("SELECT path, category FROM stored_files")).all()
        withdrawals = conn.execute(text("SELECT participant_id FROM qual_withdrawals")).scalars().all()
        session = people_of_session(conn, runtime.secrets.key(PARTICIPANT_KEY), "pilot", "FI-01")
        withdrawn_session = people_of_session(conn, runtime.secrets.key(PARTICIPANT_KEY), "pilot", "FI-02")
    assert {p: v.display_name for p, v in people.items()} == {
        "F01": "Rose", "F02": "Ivy", "F03": "Pearl", "P01": "Practitioner 1", "P02": "Sky",
        "P03": "Practitioner 2"}
    assert [(p, v.consent_recording, v.consent_quotes, v.withdrawn) for p, v in people.items()] == [
        ("F01", True, True, False), ("F02", True, False, False), ("F03", True, True, True),
        ("P01", True, True, False), ("P02", True, False, False), ("P03", True, True, False)]
    assert names["F01"] == Names(f"Alma {MARKER}", ("Bunny", "Auntie Qerwin"))
    assert sorted(names) == ["F01", "F02", "P01", "P02", "P03"]  # the withdrawn F03: no names
    assert [tuple(r)[1:6] for r in stored] == [
        ("2022-03-01", "parent", "TOK-A", "2022-02-20", None),
        ("2022-03-01", "carer", None, "2022-02-20", None),
        ("2022-03-05", "grandparent", None, "2022-02-20", "2022-03-10"),  # UK date read day-first
        ("2022-04-01", "therapist", None, "2022-02-20", None),
        ("2022-04-01", "manager", None, "2022-02-20", None),
        ("2022-04-01", "other", None, "2022-02-20", None)]
    key = key_id(runtime.secrets.key(PARTICIPANT_KEY))
    assert [r.names_key_id for r in stored] == [key, key, None, key, key, key]
    assert {r.register_sha256 for r in stored} == {sha}
    kept = runtime.home.qualitative_raw / f"{sha}.zip"
    assert delivery == ("register", str(kept)) and kept.read_bytes() == path.read_bytes()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and path.exists()  # copied, not moved
    assert [tuple(f) for f in files] == [(str(kept), "raw_register")]
    assert withdrawals == ["F03"]
    assert [(p.participant_id, n) for p, n in session] == [("F01", names["F01"]), ("F02", names["F02"])]
    assert [(p.participant_id, n) for p, n in withdrawn_session] == [("F03", None)]
    event, details = audit_events(runtime.engine)[-1]
    assert event == "participants_imported"
    assert details == {"sha256": sha, "encryption": "aes-zip", **EXPECTED, "newly_withdrawn": 1,
                       "turns_withdrawn": 0, "segments_deleted": 0}
    if runtime.engine.dialect.name == "sqlite":
        database = Path(runtime.engine.url.database or "")
        raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        for secret in (MARKER, "Bunny", "Qerwin", "Beth Carter", "Erin Fox"):
            assert secret.encode() not in raw and secret.lower().encode() not in raw


def test_reimport_replaces_and_same_bytes_are_a_duplicate(rt: Runtime, tmp_path: Path) -> None:
    first = deliver(tmp_path, base_rows(), "first.zip")
    import_register(rt, first, None)
    before = counts(rt.engine)
    again = import_register(rt, first, None).as_json()
    assert again == {"status": "duplicate", "sha256": sha256_bytes(first.read_bytes()), **EXPECTED}
    assert counts(rt.engine) == before  # nothing stored, nothing audited

    rows = base_rows()
    rows[0]["chosen_pseudonym"] = "Willow"
    rows[0]["other_names"] = ""
    rows[2]["withdrawn_date"] = ""  # F03 withdrew before: still never stored with names
    del rows[4]  # P02 left the register (no transcript yet)
    second = deliver(tmp_path, rows, "second.zip")
    result = import_register(rt, second, None).as_json()
    assert result == {"status": "imported", "sha256": sha256_bytes(second.read_bytes()),
                      "participants": 5, "sessions": 3, "families": 3, "practitioners": 2, "withdrawn": 1}
    with rt.engine.connect() as conn:
        people = {p.participant_id: p for p in load_participants(conn, "pilot")}
        names = load_names(conn, rt.secrets.key(PARTICIPANT_KEY), "pilot")
        f03 = conn.execute(text("SELECT withdrawn_date, names_ciphertext FROM qual_participants"
                                " WHERE participant_id = 'F03'")).one()
    assert {p: v.display_name for p, v in people.items()} == {
        "F01": "Willow", "F02": "Ivy", "F03": "Pearl", "P01": "Practitioner 1", "P03": "Practitioner 2"}
    assert names["F01"] == Names(f"Alma {MARKER}", ()) and "F03" not in names
    assert f03.names_ciphertext is None and f03.withdrawn_date == datetime.now(UTC).date().isoformat()
    assert counts(rt.engine, ("qual_deliveries", "qual_withdrawals", "stored_files")) == {
        "qual_deliveries": 2, "qual_withdrawals": 1, "stored_files": 2}


def test_workbook_register_with_native_dates(rt: Runtime, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("participants")
    dates = book.add_format({"num_format": "dd/mm/yyyy"})
    header = [c.replace("_", " ").title() for c in COLUMNS]  # "Participant Id", ... matched loosely
    sheet.write_row(0, 0, header)
    for i, row in enumerate(base_rows()[3:], start=1):
        for j, column in enumerate(COLUMNS):
            if column == "session_date":
                sheet.write_datetime(i, j, datetime(2022, 4, 1), dates)
            else:
                sheet.write_string(i, j, row[column]) if row[column] else None
    book.close()
    path = deliver(tmp_path, [], "book.zip", members={"register.xlsx": buffer.getvalue()})
    result = import_register(rt, path, None).as_json()
    assert (result["participants"], result["practitioners"], result["sessions"]) == (3, 3, 1)
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT session_date FROM qual_participants")).scalar_one() == "2022-04-01"


# --------------------------------------------------------------------------- rejections


def _set(pid: str, **changes: str) -> Callable[[list[dict[str, str]]], None]:
    def change(rows: list[dict[str, str]]) -> None:
        for row in rows:
            if row["participant_id"] == pid:
                row.update(changes)
    return change


# (change, who the message names, column, rule, a value that must not appear in it)
RULE_CASES: list[tuple[str, Callable[[list[dict[str, str]]], None], str, str, str, str | None]] = [
    ("id shape", _set("F02", participant_id="Beth C"), "row 3 (no valid participant_id)",
     "participant_id", "shape", "Beth C"),
    ("id unique", _set("P03", participant_id="P02"), "participant P02 (row 6)", "participant_id", "unique", None),
    ("id missing", _set("F02", participant_id=""), "row 3 (no valid participant_id)", "participant_id",
     "required", None),
    ("strand", _set("F02", strand="famly"), "participant F02 (row 3)", "strand", "code_list", "famly"),
    ("session shape", _set("P01", session_id="FG/1"), "participant P01 (row 5)", "session_id", "shape", "FG/1"),
    ("session date", _set("F01", session_date="2022-13-01"), "participant F01 (row 2)", "session_date",
     "date", "2022-13-01"),
    ("us date", _set("F01", session_date="03/31/2022"), "participant F01 (row 2)", "session_date", "date",
     "03/31/2022"),
    ("role", _set("F02", role="therapist"), "participant F02 (row 3)", "role", "code_list", None),
    ("token practitioner", _set("P01", **{"survey_token": "TOK-C"}), "participant P01 (row 5)", "survey_token",
     "family_only", "TOK-C"),
    ("full name", _set("P02", full_name=""), "participant P02 (row 6)", "full_name", "required", None),
    ("pseudonym family", _set("F02", chosen_pseudonym=""), "participant F02 (row 3)", "chosen_pseudonym",
     "required_for_family", None),
    ("pseudonym unique", _set("P02", chosen_pseudonym="rOSE"), "participant F01 (row 2)", "chosen_pseudonym",
     "unique", "rOSE"),
    ("pseudonym reserved", _set("P02", chosen_pseudonym="practitioner 9"), "participant P02 (row 6)",
     "chosen_pseudonym", "reserved", "practitioner 9"),
    ("consent after", _set("P03", consent_date="2022-04-02"), "participant P03 (row 7)", "consent_date",
     "consent_before_session", "2022-04-02"),
    ("consent version", _set("P03", consent_form_version=""), "participant P03 (row 7)",
     "consent_form_version", "required", None),
    ("yes/no", _set("F02", consent_recording="maybe"), "participant F02 (row 3)", "consent_recording",
     "yes_no", "maybe"),
    ("quotes missing", _set("F02", consent_quotes=""), "participant F02 (row 3)", "consent_quotes",
     "required", None),
    ("withdrawn date", _set("F03", withdrawn_date="soon"), "participant F03 (row 4)", "withdrawn_date",
     "date", "soon"),
    ("one date", _set("F02", session_date="2022-03-02"), "participant F01 (row 2)", "session_date",
     "session_one_date", "2022-03-02"),
    ("one strand", _set("P03", strand=FAM, role="parent", chosen_pseudonym="Oak"), "participant P01 (row 5)",
     "strand", "session_one_strand", None),
    ("token not issued", _set("F02", **{"survey_token": "TOK-ZZ"}), "participant F02 (row 3)", "survey_token",
     "issued_token", "TOK-ZZ"),
    ("token no opt-in", _set("F02", **{"survey_token": "TOK-B"}), "participant F02 (row 3)", "survey_token",
     "interview_opt_in", "TOK-B"),
    ("token no response", _set("F02", **{"survey_token": "TOK-C"}), "participant F02 (row 3)", "survey_token",
     "interview_opt_in", "TOK-C"),
    # a pseudonym equal to anyone's real name, any letter case
    ("full name", _set("P02", chosen_pseudonym="beth CARTER"), "participant P02 (row 6)",
     "chosen_pseudonym", "not_a_real_name", "CARTER"),
    ("first name", _set("F02", chosen_pseudonym="ERIN"), "participant F02 (row 3)", "chosen_pseudonym",
     "not_a_real_name", "ERIN"),
    ("own surname", _set("F01", chosen_pseudonym=MARKER.lower()), "participant F01 (row 2)",
     "chosen_pseudonym", "not_a_real_name", MARKER.lower()),
    ("other name", _set("P02", chosen_pseudonym="bunny"), "participant P02 (row 6)", "chosen_pseudonym",
     "not_a_real_name", "bunny"),
    ("other name word", _set("P02", chosen_pseudonym="Qerwin"), "participant P02 (row 6)",
     "chosen_pseudonym", "not_a_real_name", "Qerwin"),
]


@pytest.mark.parametrize(("label", "change", "who", "column", "rule", "value"), RULE_CASES,
                         ids=[c[0] for c in RULE_CASES])
def test_a_broken_rule_rejects_the_whole_register(
        rt: Runtime, tmp_path: Path, label: str, change: Callable[[list[dict[str, str]]], None],
        who: str, column: str, rule: str, value: str | None) -> None:
    rows = base_rows()
    change(rows)
    path = deliver(tmp_path, rows)
    before = counts(rt.engine)
    with pytest.raises(InputRejected) as caught:
        import_register(rt, path, None)
    message = str(caught.value)
    assert message.startswith(f"file register.zip, column {column}: {who} breaks the rule {rule}: ")
    assert message.endswith("the file was quarantined and nothing was stored") and "\n" not in message
    if value is not None:
        assert value not in message
    for name in (MARKER, "Alma", "Beth", "Carter", "Bunny"):
        assert name not in message
    assert counts(rt.engine) == before and not path.exists()
    [reason] = rt.home.quarantine.glob("*register.zip.reason.txt")
    assert reason.read_text() == message + "\n"


def test_several_problems_are_counted_and_the_first_by_row_named(rt: Runtime, tmp_path: Path) -> None:
    rows = base_rows()
    _set("P03", consent_quotes="perhaps", full_name="")(rows)
    _set("F02", role="boss")(rows)
    with pytest.raises(InputRejected, match=r"^file register\.zip, column role: participant F02 \(row 3\) "
                       r"breaks the rule code_list: .*; 2 more problem\(s\) in the register;"):
        import_register(rt, deliver(tmp_path, rows), None)


@pytest.mark.parametrize(("members", "message"), [
    ({"people.csv": b"x"}, "the archive must hold one file only: participants.csv, or a workbook"),
    ({"participants.csv": register_csv(base_rows(), COLUMNS[:-2])},
     "column consent_quotes: required column is missing"),
    ({"participants.csv": b"participant_id,participant id\n"}, "two columns are both named participant_id"),
    ({"participants.csv": register_csv([])}, "the register has no participant rows"),
    ({"participants.csv": b"\xff\xfep\x00"}, "the CSV is UTF-16 or binary"),
])
def test_wrong_archive_content_is_rejected(rt: Runtime, tmp_path: Path, members: dict[str, bytes],
                                           message: str) -> None:
    path = deliver(tmp_path, [], members=members)
    with pytest.raises(InputRejected, match=message):
        import_register(rt, path, None)
    assert counts(rt.engine)["qual_participants"] == 0 and not path.exists()


def test_unencrypted_zip_is_refused_and_quarantined(rt: Runtime, tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "plain.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("participants.csv", register_csv(base_rows()))
    with pytest.raises(InputRejected, match="^file plain.zip: .*quarantined and nothing was stored$"):
        import_register(rt, path, None)
    assert not path.exists() and len(list(rt.home.quarantine.glob("*-plain.zip"))) == 1
    assert counts(rt.engine)["qual_deliveries"] == 0


# --------------------------------------------------------------------------- withdrawal


def store_turns(rt: Runtime, turns: list[tuple[str, int, str, str | None, str]]) -> None:
    """Stored (already de-identified) turns and one coded segment per participant turn."""
    key = rt.secrets.key_or_create(TRANSCRIPT_KEY)[0]
    with rt.engine.begin() as conn:
        for session in sorted({t[0] for t in turns}):
            conn.execute(text(
                "INSERT INTO qual_sessions (cluster_id, session_id, delivery_sha256, source_format,"
                " source_sha256, imported_at, redacted_at, turns, words, replacements, review_entries)"
                " VALUES ('pilot', :s, 'd', 'txt', 's', 'x', 'x', 0, 0, '{}', 0)"), {"s": session})
        for session, no, speaker, pid, words in turns:
            nonce, ciphertext = seal(key, turn_aad("pilot", session, no), words)
            conn.execute(text(
                "INSERT INTO qual_turns (cluster_id, session_id, turn_no, source_line, speaker, participant_id,"
                " key_id, nonce, ciphertext, withdrawn) VALUES ('pilot', :s, :n, :n, :sp, :p, :k, :nonce,"
                " :c, :w)"), {"s": session, "n": no, "sp": speaker, "p": pid, "k": key_id(key),
                                "nonce": nonce, "c": ciphertext, "w": False})
            if pid is not None:
                conn.execute(text(
                    "INSERT INTO qual_segments (cluster_id, coding_sha256, selection_id, session_id, turn_no,"
                    " participant_id, theme, subtheme, start_cp, end_cp) VALUES ('pilot', 'c', :sel, :s, :n,"
                    " :p, 'Access', '', 0, 4)"), {"sel": f"sel-{session}-{no}", "s": session, "n": no, "p": pid})


FI01 = [("FI-01", 1, "Interviewer", None, "How did it start?"), ("FI-01", 2, "F01", "F01", "Rose said yes."),
        ("FI-01", 3, "F02", "F02", "Ivy agreed."), ("FI-01", 4, "F01", "F01", "It helped.")]


def test_withdraw_before_and_after_transcripts(rt: Runtime, tmp_path: Path) -> None:
    import_register(rt, deliver(tmp_path, base_rows()), None)
    # before any transcript exists
    assert withdraw_participant(rt, "P02", "run-w") == {
        "status": "withdrawn", "turns_withdrawn": 0, "segments_deleted": 0}
    with rt.engine.connect() as conn:
        p02 = conn.execute(text("SELECT names_ciphertext, names_nonce, names_key_id, withdrawn_date"
                                " FROM qual_participants WHERE participant_id = 'P02'")).one()
    assert p02[:3] == (None, None, None) and p02.withdrawn_date == datetime.now(UTC).date().isoformat()
    assert audit_events(rt.engine)[-1] == ("participant_withdrawn", {
        "participant_id": "P02", "turns": 0, "segments": 0, "repeat": False})
    before = counts(rt.engine)
    assert withdraw_participant(rt, "P02", None)["status"] == "already_withdrawn"
    assert withdraw_participant(rt, "F03", None)["status"] == "already_withdrawn"  # withdrew in the file
    assert counts(rt.engine) == before

    # with transcripts and coded segments: only F01's turns and segments go
    store_turns(rt, FI01)
    assert withdraw_participant(rt, " F01 ", None) == {
        "status": "withdrawn", "turns_withdrawn": 2, "segments_deleted": 2}
    with rt.engine.connect() as conn:
        turns = load_turns(conn, rt.secrets.key(TRANSCRIPT_KEY), "pilot")
        segments = conn.execute(text("SELECT participant_id FROM qual_segments")).scalars().all()
        people = {p.participant_id: p.withdrawn for p in load_participants(conn, "pilot")}
        token = conn.execute(text("SELECT survey_token FROM qual_participants WHERE participant_id = 'F01'")
                             ).scalar_one()
    assert [(t.turn_no, t.words, t.withdrawn) for t in turns] == [
        (1, "How did it start?", False), (2, WITHDRAWN_TEXT, True), (3, "Ivy agreed.", False),
        (4, WITHDRAWN_TEXT, True)]
    assert segments == ["F02"] and token is None
    assert people == {"F01": True, "F02": False, "F03": True, "P01": False, "P02": True, "P03": False}

    # a re-imported register keeps both withdrawals and withdraws F02 through its withdrawn_date
    rows = base_rows()
    rows[1]["withdrawn_date"] = "2022-05-01"
    result = import_register(rt, deliver(tmp_path, rows, "again.zip"), None).as_json()
    assert result["withdrawn"] == 4
    with rt.engine.connect() as conn:
        turns = load_turns(conn, rt.secrets.key(TRANSCRIPT_KEY), "pilot")
        names = load_names(conn, rt.secrets.key(PARTICIPANT_KEY), "pilot")
    assert [t.withdrawn for t in turns] == [False, True, True, True] and sorted(names) == ["P01", "P03"]
    assert audit_events(rt.engine)[-1][1]["turns_withdrawn"] == 1
    assert audit_events(rt.engine)[-1][1]["segments_deleted"] == 1


def test_unknown_or_malformed_participant_id_is_one_line(rt: Runtime, tmp_path: Path) -> None:
    import_register(rt, deliver(tmp_path, base_rows()), None)
    before = counts(rt.engine)
    with pytest.raises(InputRejected, match="^no participant with that participant_id in the register"):
        withdraw_participant(rt, "F99", None)
    with pytest.raises(InputRejected, match="^that is not a participant_id") as caught:
        withdraw_participant(rt, "Beth Carter", None)
    assert "Beth" not in str(caught.value) and counts(rt.engine) == before


def test_register_cannot_drop_or_move_a_participant_who_speaks(rt: Runtime, tmp_path: Path) -> None:
    import_register(rt, deliver(tmp_path, base_rows()), None)
    store_turns(rt, FI01)
    with pytest.raises(InputRejected, match=r"participant F02 speaks in stored transcripts but is not in the "
                       r"new register; keep their row, or withdraw them with: cluster-eval participants "
                       r"withdraw F02; the file was quarantined"):
        import_register(rt, deliver(tmp_path, [r for r in base_rows() if r["participant_id"] != "F02"],
                                    "dropped.zip"), None)
    moved = base_rows()
    moved[1]["session_id"] = "FI-02"
    with pytest.raises(InputRejected, match=r"column session_id: participant F02 \(row 3\) breaks the rule "
                       r"stored_session"):
        import_register(rt, deliver(tmp_path, moved, "moved.zip"), None)


# --------------------------------------------------------------------------- stale outputs


def test_status_lists_outputs_made_before_a_withdrawal(rt: Runtime, tmp_path: Path) -> None:
    import_register(rt, deliver(tmp_path, base_rows()), None)  # F03 withdrew in the file (now)
    now = datetime.now(UTC)
    with rt.engine.begin() as conn:
        for path, category, at in (("/o/report", "analysis_output", now - timedelta(days=2)),
                                   ("/o/coding.qdpx", "qdpx_export", now - timedelta(days=1)),
                                   ("/o/gone.qdpx", "qdpx_export", now - timedelta(days=1)),
                                   ("/o/raw.zip", "raw_register", now - timedelta(days=1)),
                                   ("/o/new", "analysis_output", now + timedelta(seconds=5))):
            conn.execute(text("INSERT INTO stored_files (cluster_id, path, category, registered_at, deleted_at)"
                              " VALUES ('pilot', :p, :c, :at, :d)"),
                         {"p": path, "c": category, "at": at.isoformat(),
                          "d": now.isoformat() if "gone" in path else None})
    with rt.engine.connect() as conn:
        assert stale_outputs(conn, "pilot") == ["/o/report", "/o/coding.qdpx"]
    withdraw_participant(rt, "P01", None, now=now + timedelta(seconds=10))
    with rt.engine.connect() as conn:
        stale = stale_outputs(conn, "pilot")
    assert stale == ["/o/report", "/o/coding.qdpx", "/o/new"]
    summary = _status_summary({
        "cluster": "pilot", "extracts": {"ingested": 0, "last_ingested_at": None},
        "survey": {"waves": []}, "retention": {"due": [], "next": [], "unscheduled": []},
        "warnings": [], "stale_outputs": stale})
    assert summary.splitlines()[-1] == (
        "stale: 3 output(s) made before a participant withdrew: /o/report, /o/coding.qdpx, /o/new; "
        "re-run analyse and coding export, then delete the old ones")


def test_no_withdrawal_means_nothing_is_stale(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        conn.execute(text("INSERT INTO stored_files VALUES ('pilot', '/o/r', 'analysis_output', '2022-01-01', NULL)"))
    with rt.engine.connect() as conn:
        assert stale_outputs(conn, "pilot") == []


# --------------------------------------------------------------------------- the commands


@pytest.mark.e2e
def test_cli_import_withdraw_and_status(prefect_harness: None, tmp_path: Path, sqlite_url: str,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_settings

    from cli.main import main
    from tasks.core.runtime import open_runtime

    home = tmp_path / "var"
    setup = open_runtime(make_settings(home, sqlite_url))
    prepare(setup)
    setup.engine.dispose()
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_url)
    path = deliver(tmp_path, base_rows())
    capsys.readouterr()

    assert main(["participants", "import", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (
        "register imported: 6 participant(s) in 3 session(s) (3 family member(s), 3 practitioner(s)), "
        "1 withdrawn; names are kept encrypted")
    assert main(["participants", "import", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "duplicate"

    bad = base_rows()
    bad[4]["chosen_pseudonym"] = "Gail"
    assert main(["participants", "import", str(deliver(tmp_path, bad, "bad.zip"))]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "cluster-eval: error: file bad.zip, column chosen_pseudonym: participant P02 (row 6) breaks the rule "
        "not_a_real_name: equals (ignoring letter case) a full name, first name, surname or other name in "
        "the register; the file was quarantined and nothing was stored\n")

    report = tmp_path / "out" / "report"
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:  # an analysis made before the withdrawal
        conn.execute(text("INSERT INTO stored_files VALUES ('pilot', :p, 'analysis_output', :at, NULL)"),
                     {"p": str(report), "at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
    engine.dispose()
    assert main(["participants", "withdraw", "P01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "status": "withdrawn", "turns_withdrawn": 0, "segments_deleted": 0}
    assert main(["participants", "withdraw", "Erin Fox"]) == 1
    assert "Erin" not in capsys.readouterr().err
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stale_outputs"] == [str(report)]
