"""Transcript intake, redaction re-runs and approval (qualitative-v1.md §2–3)."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import pytest
from conftest import make_settings
from sqlalchemy import text

from tasks.core.archive import aes_zip_bytes
from tasks.core.errors import ConfigError, InputRejected
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.core.secrets import TRANSCRIPT_KEY
from tasks.qualitative.model import Names, Participant, load_turns
from tasks.qualitative.register import import_register
from tasks.qualitative.withdraw import withdraw_participant
from tasks.transcripts.intake import (
    Register,
    approve_session,
    import_transcripts,
    map_speakers,
    redact_session,
    speaker_labels,
)
from tasks.transcripts.parse import RawTurn, parse_transcript

PASS = "transcripts test passphrase"  # noqa: S105 - a test passphrase
# Marker names: they must never appear, as bytes, outside the encrypted stores.
SARAH, SARAH_LAST, TOM = "Zaraphine", "Quellington", "Tomasz"


# --------------------------------------------------------------------------- fixtures


def docx_bytes(paragraphs: list[str]) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# participant_id, strand, session, role, full name, other names, pseudonym, recording, quotes, withdrawn
REGISTER = [
    ("F01", "family_interview", "FI-01", "parent", f"{SARAH} {SARAH_LAST}", (TOM,), "Rose", True, True, False),
    ("F02", "family_interview", "FI-01", "carer", "Mark Brown", (), "Oak", True, False, False),
    ("F03", "family_interview", "FI-01", "parent", None, (), "Ivy", True, True, True),
    ("F04", "family_interview", "FI-02", "parent", "Anna White", (), "Willow", True, True, False),
    ("P01", "practitioner_focus_group", "FG-1", "manager", "Priya Patel", (), None, True, True, False),
    ("P02", "practitioner_focus_group", "FG-1", "other", "Kevin Lee", (), None, False, True, False),
]


def register_csv() -> bytes:
    """participants.csv of the register above (qualitative-v1.md §1 columns)."""
    head = ("participant_id,strand,session_id,session_date,role,full_name,other_names,chosen_pseudonym,"
            "consent_form_version,info_sheet_version,consent_date,consent_recording,consent_quotes,withdrawn_date")
    lines = [head]
    for pid, strand, session, role, full, other, pseudonym, recording, quotes, withdrawn in REGISTER:
        lines.append(",".join([pid, strand, session, "2022-01-10", role, full or "Linda Green", ";".join(other),
                               pseudonym or "", "v1", "v1", "2022-01-05", "Y" if recording else "N",
                               "Y" if quotes else "N", "2022-02-01" if withdrawn else ""]))
    return ("\n".join(lines) + "\n").encode("utf-8")


def insert_register(rt: Runtime, tmp_path: Path) -> None:
    """Import the register with ``participants import`` (names sealed under participant_key)."""
    path = tmp_path / "register.zip"
    path.write_bytes(aes_zip_bytes({"participants.csv": register_csv()}, PASS))
    assert import_register(rt, path).as_json()["participants"] == len(REGISTER)


def write_deny_list(path: Path, rows: list[tuple[str, str]]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("term,tag\n" + "".join(f"{term},{tag}\n" for term, tag in rows))
    return path


@pytest.fixture
def qrt(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """A runtime with the register inserted, an extract passphrase and an (empty) deny-list."""
    deny = write_deny_list(tmp_path / "deny.csv", [])
    settings = make_settings(tmp_path / "var", database_url, qualitative={"deny_list": deny})
    rt = open_runtime(settings, environ={"CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS})
    with use_runtime(rt):
        insert_register(rt, tmp_path)
        yield rt


FI01_TXT = (
    "\ufeffInterviewer: Welcome, thank you for coming.\r\n"
    "\r\n"
    f"{SARAH.lower()} {SARAH_LAST.lower()}: I am {SARAH}, and {TOM} is my son.\r\n"
    "He goes to Oakfield Primary.\r\n"
    "Mark: We met at the Zorblatt centre in March.\r\n"
    "F03: I would rather not say.\r\n"
    "F01: Email me at someone@example.org please.\r\n"
)
FG1_VTT = (
    "WEBVTT\n\n"
    "1\n00:00:01.000 --> 00:00:04.000\n<v Facilitator>Let us begin.</v>\n\n"
    "2\n00:00:05.000 --> 00:00:09.000\n<v Priya Patel>I manage the Krellwood team.</v>\n\n"
)


def delivery(tmp_path: Path, members: dict[str, bytes], name: str = "delivery.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(aes_zip_bytes(members, PASS))
    return path


def stored(rt: Runtime, sql: str) -> list[Any]:
    with rt.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), {"c": rt.cluster})]


def words_of(rt: Runtime, session: str) -> list[tuple[int, str, str | None, str, bool]]:
    with rt.engine.connect() as conn:
        turns = load_turns(conn, rt.secrets.key(TRANSCRIPT_KEY), rt.cluster, [session])
    return [(t.turn_no, t.speaker, t.participant_id, t.words, t.withdrawn) for t in turns]


# --------------------------------------------------------------------------- parsing


def test_txt_turns_bom_crlf_blank_lines_and_continuations() -> None:
    data = "\ufeffInterviewer: Hello  there.\r\n\r\nF01:   Hi.\r\nSecond line\r\n  of the turn.\r\nMark Brown:\r\n"
    assert parse_transcript(data.encode("utf-8"), "txt", "FI-01", "d.zip") == [
        RawTurn(1, "Interviewer", "Hello there."),
        RawTurn(3, "F01", "Hi. Second line of the turn."),
    ]


def test_docx_turns_are_paragraphs() -> None:
    data = docx_bytes(["Facilitator: Shall we start?", "", "P01: Yes.", "It went well.", "Kevin Lee: Agreed."])
    assert parse_transcript(data, "docx", "FG-1", "d.zip") == [
        RawTurn(1, "Facilitator", "Shall we start?"),
        RawTurn(3, "P01", "Yes. It went well."),
        RawTurn(5, "Kevin Lee", "Agreed."),
    ]


def test_vtt_turns_are_voice_spans_of_cues() -> None:
    data = (
        b"WEBVTT\r\n\r\n"
        b"a1b2/12-0\r\n00:00:01.000 --> 00:00:04.000\r\n<v Jane Smith>Hello,\r\nhow <i>are</i> you?</v>\r\n\r\n"
        b"00:00:05.000 --> 00:00:08.000\r\n<v.loud Interviewer>Fine &amp; you?</v><v F01>Good.</v>\r\n"
    )
    assert parse_transcript(data, "vtt", "FI-01", "d.zip") == [
        RawTurn(1, "Jane Smith", "Hello, how are you?"),
        RawTurn(2, "Interviewer", "Fine & you?"),
        RawTurn(2, "F01", "Good."),
    ]


@pytest.mark.parametrize(("fmt", "data", "message"), [
    ("txt", b"No label here at all\nF01: hi\n", "transcript FI-01, line 1: the first turn has no speaker label"),
    ("txt", b"F01: caf\xe9\n", "transcript FI-01 is not UTF-8 text"),
    ("docx", b"PK\x03\x04 not really a document", "transcript FI-01 is not a valid .docx document"),
    ("vtt", b"not a webvtt file\n", "transcript FI-01 is not a valid WebVTT file"),
    ("vtt", b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v F01>Hi</v>\n\n"
            b"00:00:03.000 --> 00:00:04.000\nSecret words\n", "transcript FI-01, cue 2: the cue has no speaker voice"),
    ("txt", b"\n\n", "transcript FI-01 has no speaker turns"),
])
def test_bad_transcripts_are_refused_without_content(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(InputRejected) as caught:
        parse_transcript(data, fmt, "FI-01", "d.zip")
    assert str(caught.value).startswith(f"file d.zip: {message}")
    assert "Secret" not in str(caught.value) and "label here" not in str(caught.value)


def test_docx_with_entity_expansion_is_refused() -> None:
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "x" * 10}">' for i in range(8))
    buffer, source = io.BytesIO(), zipfile.ZipFile(io.BytesIO(docx_bytes(["F01: hi"])))
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/document.xml":
                body = data.decode()
                body = body[body.index("<w:document"):].replace("hi", "&e7;")
                data = f'<?xml version="1.0"?><!DOCTYPE w:document [{entities}]>{body}'.encode()
            target.writestr(info, data)
    with pytest.raises(InputRejected, match="^file d.zip: transcript FI-01 refused: its Word XML declares a DTD "
                       "or entities"):
        parse_transcript(buffer.getvalue(), "docx", "FI-01", "d.zip")


def test_docx_with_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("Zqxexternal")
    buffer, source = io.BytesIO(), zipfile.ZipFile(io.BytesIO(docx_bytes(["F01: hi"])))
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/document.xml":
                body = data.decode()
                body = body[body.index("<w:document"):].replace("hi", "&ext;")
                data = (f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY ext SYSTEM "file://{secret}">]>'
                        f"{body}").encode()
            target.writestr(info, data)
    with pytest.raises(InputRejected, match="^file d.zip: transcript FI-01 refused: its Word XML declares a DTD "
                       "or entities") as refused:
        parse_transcript(buffer.getvalue(), "docx", "FI-01", "d.zip")
    assert "Zqxexternal" not in str(refused.value)


# --------------------------------------------------------------------------- import


def test_import_maps_labels_deidentifies_and_stores_sealed(qrt: Runtime, tmp_path: Path) -> None:
    members = {"FI-01.txt": FI01_TXT.encode("utf-8"), "FG-1.vtt": FG1_VTT.encode("utf-8"),
               "FI-02.docx": docx_bytes(["Researcher: Hello Anna.", "anna: Hello."])}
    path = delivery(tmp_path, members)
    result = import_transcripts(qrt, path, "run-1")

    assert result["status"] == "imported"
    assert (result["sessions"], result["session_ids"], result["withdrawn_turns"]) == (3, ["FG-1", "FI-01", "FI-02"], 1)
    assert words_of(qrt, "FI-01") == [
        (1, "Interviewer", None, "Welcome, thank you for coming.", False),
        (2, "F01", "F01", "I am Rose, and [name] is my son. He goes to Oakfield Primary.", False),
        (3, "F02", "F02", "We met at the Zorblatt centre in March.", False),
        (4, "F03", "F03", "[withdrawn]", True),
        (5, "F01", "F01", "Email me at [email] please.", False),
    ]
    assert words_of(qrt, "FG-1") == [(1, "Facilitator", None, "Let us begin.", False),
                                      (2, "P01", "P01", "I manage the Krellwood team.", False)]
    assert words_of(qrt, "FI-02") == [(1, "Researcher", None, "Hello Willow.", False),
                                      (2, "F04", "F04", "Hello.", False)]
    # speaker labels by name: "zaraphine quellington", "Mark", "Priya Patel", "anna"
    assert result["replacements"] == {"email": 1, "name": 2, "other_name": 1, "speaker_label": 4}
    assert (result["turns"], result["words"]) == (9, (5 + 13 + 8 + 5) + (3 + 5) + (2 + 1))
    assert result["review_entries"] == 3  # Oakfield, Zorblatt, Krellwood ("Primary" is a common word)

    review = qrt.home.restricted / "review" / "FI-01.csv"
    assert review.read_text() == "session_id,line,term\nFI-01,2,Oakfield\nFI-01,3,Zorblatt\n"
    assert stat.S_IMODE(review.stat().st_mode) == 0o600
    raw = qrt.home.qualitative_raw / f"{result['sha256']}.zip"
    assert raw.read_bytes() == path.read_bytes() and stat.S_IMODE(raw.stat().st_mode) == 0o600
    assert stored(qrt, "SELECT kind, stored_path FROM qual_deliveries WHERE cluster_id = :c"
                       " AND kind = 'transcripts'") == [("transcripts", str(raw))]
    assert stored(qrt, "SELECT path, category FROM stored_files WHERE cluster_id = :c"
                       " AND category = 'raw_transcripts'") == [(str(raw), "raw_transcripts")]
    assert stored(qrt, "SELECT session_id, source_format, turns, words, replacements, review_entries, approved_at"
                       " FROM qual_sessions WHERE cluster_id = :c ORDER BY session_id") == [
        ("FG-1", "vtt", 2, 8, '{"speaker_label": 1}', 1, None),
        ("FI-01", "txt", 5, 31, '{"email": 1, "name": 1, "other_name": 1, "speaker_label": 2}', 2, None),
        ("FI-02", "docx", 2, 3, '{"name": 1, "speaker_label": 1}', 0, None),
    ]
    [(details,)] = stored(qrt, "SELECT details FROM audit_log WHERE event = 'transcripts_imported'")
    assert json.loads(details) == {
        "sha256": result["sha256"], "sessions": 3, "turns": 9, "words": 42, "withdrawn_turns": 1,
        "review_entries": 3, "replaced_sessions": 0, "replacements_email": 1, "replacements_name": 2,
        "replacements_other_name": 1, "replacements_speaker_label": 4}

    # the same bytes again: nothing to do
    assert import_transcripts(qrt, path, "run-2")["status"] == "duplicate"
    assert stored(qrt, "SELECT COUNT(*) FROM audit_log WHERE event = 'transcripts_imported'") == [(1,)]


@pytest.mark.parametrize(("member", "body", "message"), [
    ("FI-01.txt", "Interviewer: Hi.\nF01: Hello.\nSomebody Else: Who am I?\n",
     "transcript FI-01, line 3: the speaker label matches no participant of this session"),
    ("FI-01.txt", "Interviewer: Hi.\nAnna: I belong to FI-02.\n",  # a participant of another session
     "transcript FI-01, line 2: the speaker label matches no participant of this session"),
    ("FG-1.txt", "Facilitator: Hi.\nP01: Hello.\nKevin: I said no to recording.\n",
     "transcript FG-1, line 3: a participant who did not consent to recording speaks"),
    ("FI-09.txt", "F01: Hello.\n", "an archive member is not named after a session of the participants register"),
    ("notes.rtf", "F01: Hello.\n", "an archive member is not a .docx, .txt or .vtt transcript"),
])
def test_refused_transcript_stores_nothing_and_is_quarantined(qrt: Runtime, tmp_path: Path, member: str,
                                                             body: str, message: str) -> None:
    path = delivery(tmp_path, {member: body.encode("utf-8")})
    with pytest.raises(InputRejected) as caught:
        import_transcripts(qrt, path, None)
    assert str(caught.value) == f"file delivery.zip: {message}" + str(caught.value).split(message, 1)[1]
    assert str(caught.value).endswith("; the file was quarantined")
    for label in ("Somebody", "Anna", "Kevin"):
        assert label not in str(caught.value)
    assert not path.exists() and len(list(qrt.home.quarantine.glob("*-delivery.zip"))) == 1
    assert stored(qrt, "SELECT COUNT(*) FROM qual_sessions") == [(0,)]
    assert stored(qrt, "SELECT COUNT(*) FROM qual_deliveries WHERE kind = 'transcripts'") == [(0,)]
    assert len(list(qrt.home.qualitative_raw.iterdir())) == 1  # the register only


def test_unencrypted_archive_is_refused(qrt: Runtime, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("FI-01.txt", "F01: Hello.\n")
    path = tmp_path / "plain.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InputRejected, match=r"^file plain.zip: archive is not encrypted; .* the file was quarantined$"):
        import_transcripts(qrt, path, None)
    assert stored(qrt, "SELECT COUNT(*) FROM qual_sessions") == [(0,)]


def test_reimport_replaces_until_approved_then_redact_and_approve(qrt: Runtime, tmp_path: Path) -> None:
    first = import_transcripts(qrt, delivery(tmp_path, {"FI-01.txt": FI01_TXT.encode("utf-8")}, "a.zip"), None)
    second = import_transcripts(qrt, delivery(tmp_path, {"FI-01.txt": b"Interviewer: Hi Mark.\nF02: Hello.\n"},
                                              "b.zip"), None)
    assert (first["review_entries"], second["replaced_sessions"], second["turns"]) == (2, 1, 2)
    assert words_of(qrt, "FI-01") == [(1, "Interviewer", None, "Hi Oak.", False), (2, "F02", "F02", "Hello.", False)]
    assert stored(qrt, "SELECT COUNT(*) FROM qual_deliveries WHERE kind = 'transcripts'") == [(2,)]
    # back to the first delivery's content, under a new delivery, then redact with a deny-list
    import_transcripts(qrt, delivery(tmp_path, {"FI-01.txt": FI01_TXT.encode("utf-8"), "FI-02.txt": b"F04: Hi.\n"},
                                     "c.zip"), None)
    assert (qrt.home.restricted / "review" / "FI-01.csv").read_text().count("\n") == 3

    write_deny_list(qrt.settings.qualitative.deny_list, [("Oakfield Primary", "school")])  # type: ignore[arg-type]
    redacted = redact_session(qrt, "FI-01", "run-r")
    assert (redacted["review_entries_before"], redacted["review_entries"]) == (2, 1)
    assert redacted["replacements"] == {"deny:school": 1, "email": 1, "name": 1, "other_name": 1, "speaker_label": 2}
    assert redacted["review_list"] == str(qrt.home.restricted / "review" / "FI-01.csv")
    assert Path(redacted["review_list"]).read_text() == "session_id,line,term\nFI-01,3,Zorblatt\n"
    assert words_of(qrt, "FI-01")[1][3] == "I am Rose, and [name] is my son. He goes to [school]."

    approved = approve_session(qrt, "FI-01", "run-a")
    assert (approved["status"], approved["review_entries"]) == ("approved", 1)
    assert approve_session(qrt, "FI-01", None)["status"] == "already_approved"
    assert stored(qrt, "SELECT approved_review_entries FROM qual_sessions WHERE session_id = 'FI-01'") == [(1,)]
    [(details,)] = stored(qrt, "SELECT details FROM audit_log WHERE event = 'transcript_approved'")
    assert json.loads(details) == {"session_id": "FI-01", "review_entries_left": 1}
    assert stored(qrt, "SELECT COUNT(*) FROM audit_log WHERE event = 'transcript_redacted'") == [(1,)]

    with pytest.raises(InputRejected, match="^session FI-01 was approved, so its transcript can no longer be"):
        redact_session(qrt, "FI-01", None)
    with pytest.raises(InputRejected, match="session FI-01 was approved already, so its transcript cannot be"):
        import_transcripts(qrt, delivery(tmp_path, {"FI-01.txt": b"F01: Again.\n"}, "d.zip"), None)
    with pytest.raises(InputRejected, match="^session FI-07 has no transcript"):
        approve_session(qrt, "FI-07", None)


def test_redact_after_a_withdrawal_keeps_the_turns_withdrawn(qrt: Runtime, tmp_path: Path) -> None:
    import_transcripts(qrt, delivery(tmp_path, {"FI-01.txt": FI01_TXT.encode("utf-8")}), None)
    assert withdraw_participant(qrt, "F01")["turns_withdrawn"] == 2
    # F01's turns were labelled with their full name, which is gone now: the stored turns tell whose they were
    result = redact_session(qrt, "FI-01", None)
    assert (result["withdrawn_turns"], result["words"], result["review_entries"]) == (3, 5 + 8, 1)
    assert [(t[1], t[3], t[4]) for t in words_of(qrt, "FI-01")] == [
        ("Interviewer", "Welcome, thank you for coming.", False), ("F01", "[withdrawn]", True),
        ("F02", "We met at the Zorblatt centre in March.", False), ("F03", "[withdrawn]", True),
        ("F01", "[withdrawn]", True)]


def test_a_deny_list_others_can_read_leaves_the_delivery_in_place(qrt: Runtime, tmp_path: Path) -> None:
    deny = qrt.settings.qualitative.deny_list
    assert deny is not None
    deny.chmod(0o644)
    path = delivery(tmp_path, {"FI-02.txt": b"F04: Hi.\n"})
    with pytest.raises(ConfigError, match="chmod 600"):
        import_transcripts(qrt, path, None)
    assert path.is_file() and stored(qrt, "SELECT COUNT(*) FROM qual_sessions") == [(0,)]


def test_redact_needs_the_delivery(qrt: Runtime, tmp_path: Path) -> None:
    result = import_transcripts(qrt, delivery(tmp_path, {"FI-02.txt": b"F04: Hi.\n"}), None)
    (qrt.home.qualitative_raw / f"{result['sha256']}.zip").unlink()
    with pytest.raises(InputRejected, match="is no longer in the home folder"):
        redact_session(qrt, "FI-02", None)


def test_no_name_outside_the_encrypted_stores(qrt: Runtime, tmp_path: Path) -> None:
    members = {"FI-01.txt": FI01_TXT.encode("utf-8"), "FG-1.vtt": FG1_VTT.encode("utf-8"),
               "FI-02.docx": docx_bytes([f"Researcher: Did {SARAH} {SARAH_LAST} come?", f"anna: {TOM} did."])}
    import_transcripts(qrt, delivery(tmp_path, members), None)
    redact_session(qrt, "FI-01", None)
    markers = [m.encode() for m in (SARAH, SARAH_LAST, TOM)] + [m.lower().encode() for m in (SARAH, SARAH_LAST, TOM)]
    database = list(tmp_path.glob("analysis.db*"))
    if not database:  # PostgreSQL: every text column of every table
        with qrt.engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))]
            dump = "".join(str(list(conn.execute(text(f'SELECT * FROM "{t}"')))) for t in tables).encode()
        assert not [m for m in markers if m in dump]
    skipped = {qrt.home.qualitative_raw, qrt.home.keys}
    files = [p for p in qrt.home.root.rglob("*") if p.is_file() and not skipped & set(p.parents)] + database
    assert any(p.name == "FI-01.csv" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not [m for m in markers if m in data], path


def test_a_label_two_participants_share_is_refused() -> None:
    jo = [Participant(pid, "family_interview", "FI-05", "2022-01-10", "parent", None, f"P{pid}", f"P{pid}",
                      True, True, False) for pid in ("F10", "F11")]
    register = Register({p.participant_id: p for p in jo},
                        {"F10": Names("Jo Smith", ()), "F11": Names("Jo Brown", ())})
    labels = speaker_labels(register, "FI-05", ("Interviewer",))
    turns = [RawTurn(1, "JO  SMITH", "a"), RawTurn(2, "f11", "b"), RawTurn(4, "interviewer", "c")]
    assert [s.speaker for s in map_speakers(turns, "FI-05", labels, "d.zip")] == ["F10", "F11", "Interviewer"]
    with pytest.raises(InputRejected, match=r"^file d.zip: transcript FI-05, line 7: the speaker label matches "
                                            "more than one participant"):
        map_speakers([*turns, RawTurn(7, "Jo", "d")], "FI-05", labels, "d.zip")


@pytest.mark.e2e
def test_commands_run_as_flows(prefect_harness: None, tmp_path: Path, sqlite_url: str,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    deny = write_deny_list(tmp_path / "deny.csv", [])
    for name, value in (("HOME", str(tmp_path / "var")), ("DATABASE_URL", sqlite_url),
                        ("EXTRACT_PASSPHRASE", PASS), ("QUALITATIVE__DENY_LIST", str(deny))):
        monkeypatch.setenv(f"CLUSTER_EVAL_{name}", value)
    register = tmp_path / "register.zip"
    register.write_bytes(aes_zip_bytes({"participants.csv": register_csv()}, PASS))
    assert main(["participants", "import", str(register)]) == 0
    capsys.readouterr()

    path = delivery(tmp_path, {"FI-01.txt": FI01_TXT.encode("utf-8"), "FG-1.vtt": FG1_VTT.encode("utf-8")})
    assert main(["transcripts", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == ("2 transcript(s) imported (FG-1, FI-01): 7 turns, 39 words, 1 withdrawn turn(s); "
                   "replacements: email 1, name 1, other_name 1, speaker_label 3; 3 review-list entries in "
                   f"{tmp_path / 'var' / 'restricted' / 'review'}/<session>.csv; add terms to the deny-list or "
                   "allow-list and run: cluster-eval transcripts redact SESSION, or approve with: cluster-eval "
                   "transcripts approve SESSION\n")
    assert main(["transcripts", "import", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "duplicate"

    write_deny_list(deny, [("Zorblatt", "place")])
    assert main(["transcripts", "redact", "FI-01"]) == 0
    review = tmp_path / "var" / "restricted" / "review" / "FI-01.csv"
    assert capsys.readouterr().out == (
        "session FI-01 de-identified again: 5 turns, 31 words; replacements: deny:place 1, email 1, name 1, "
        f"other_name 1, speaker_label 2; review list {review} has 1 entries (before: 2); add terms to the "
        "deny-list or allow-list and run this again, or approve with: cluster-eval transcripts approve FI-01\n")
    assert main(["transcripts", "approve", "FI-01"]) == 0
    assert capsys.readouterr().out == "session FI-01 approved with 1 review-list entries left\n"
    assert main(["transcripts", "redact", "FI-01"]) == 1
    assert capsys.readouterr().err == ("cluster-eval: error: session FI-01 was approved, so its transcript can "
                                       "no longer be redacted\n")
