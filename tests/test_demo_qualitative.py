"""The synthetic qualitative corpus and the QDA-tool stand-in the demo codes with (DEMO ONLY)."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET  # noqa: S405 - parses this test's own output

import docx
import pytest
import webvtt
import xmlschema

from tasks.core.archive import decrypt_extract
from tasks.core.home import prepare_home
from tasks.demo.qdpx_coder import ExpectedSegment, code_project, expected_segments
from tasks.demo.qualitative import (
    PLANTED_KINDS,
    REGISTER_COLUMNS,
    SyntheticCorpus,
    codebook_csv,
    deny_list_csv,
    encrypted_delivery,
    make_corpus,
    nhs_check_digit_ok,
    register_csv,
    with_recording_refused,
    write_demo_corpus,
)

TOKENS = ("tok-a", "tok-b", "tok-c", "tok-d", "tok-e")
PASS = "demo-qualitative-test-passphrase"  # noqa: S105 - test passphrase
TEAM = ("interviewer", "facilitator", "researcher")


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return make_corpus(2021, TOKENS)


def raw_text(name: str, data: bytes) -> str:
    """A delivered transcript's text as a reader of its format sees it."""
    if name.endswith(".docx"):
        return "\n".join(p.text for p in docx.Document(io.BytesIO(data)).paragraphs)
    if name.endswith(".vtt"):
        return "\n".join(f"{c.voice}: {c.text}" for c in webvtt.from_buffer(io.StringIO(data.decode("utf-8"))).captions)
    return data.decode("utf-8")


def test_corpus_is_deterministic_for_a_seed(corpus: SyntheticCorpus) -> None:
    again = make_corpus(2021, TOKENS)
    assert again.transcripts == corpus.transcripts  # same bytes, docx included
    assert (again.register_rows, again.deny_list, again.planted, again.words) == (
        corpus.register_rows, corpus.deny_list, corpus.planted, corpus.words)
    other = make_corpus(7)
    assert other.transcripts["FI-02.txt"] != corpus.transcripts["FI-02.txt"]
    assert [r["full_name"] for r in other.register_rows] != [r["full_name"] for r in corpus.register_rows]


def test_register_follows_the_spec(corpus: SyntheticCorpus) -> None:
    rows = corpus.register_rows
    assert [r["participant_id"] for r in rows] == [f"F0{i}" for i in range(1, 8)] + [f"P{i:02d}" for i in range(1, 14)]
    assert Counter(r["session_id"] for r in rows) == {"FI-01": 4, "FI-02": 3, "FG-1": 6, "FG-2": 7}
    assert [r["survey_token"] for r in rows[:7]] == [*TOKENS, "", ""]
    assert all(r["survey_token"] == "" for r in rows[7:])
    assert {r["role"] for r in rows[7:]} == {"targeted_services_worker", "child_family_practitioner", "therapist",
                                            "counsellor", "attendance_officer", "manager", "other"}
    assert {r["role"] for r in rows[:7]} <= {"parent", "carer", "grandparent", "other_adult"}
    assert all(r["consent_recording"] == "Y" for r in rows)
    assert [r["participant_id"] for r in rows if r["consent_quotes"] == "N"] == ["F03", "P09"]
    assert all(r["chosen_pseudonym"] for r in rows[:7])
    assert sum(1 for r in rows[7:] if not r["chosen_pseudonym"]) == 6
    assert all(r["consent_date"] <= r["session_date"] for r in rows)
    names = {w.lower() for r in rows for n in [r["full_name"], *r["other_names"].split(";")] for w in n.split()}
    pseudonyms = [r["chosen_pseudonym"].lower() for r in rows if r["chosen_pseudonym"]]
    assert len(set(pseudonyms)) == len(pseudonyms) and not names & set(pseudonyms)
    firsts = [r["full_name"].split()[0] for r in rows]
    assert len(set(firsts)) == len(firsts)  # a first-name speaker label is never ambiguous

    parsed = list(csv.DictReader(io.StringIO(register_csv(corpus).decode())))
    assert tuple(parsed[0]) == REGISTER_COLUMNS and parsed == rows
    bad = with_recording_refused(corpus, "F02")
    assert [r["participant_id"] for r in bad.register_rows if r["consent_recording"] == "N"] == ["F02"]
    assert corpus.register_rows[1]["consent_recording"] == "Y"  # the original is untouched


def test_all_three_formats_parse_and_every_label_is_known(corpus: SyntheticCorpus) -> None:
    assert sorted(corpus.transcripts) == ["FG-1.vtt", "FG-2.vtt", "FI-01.docx", "FI-02.txt"]
    paragraphs = [p.text for p in docx.Document(io.BytesIO(corpus.transcripts["FI-01.docx"])).paragraphs]
    captions = {s: webvtt.from_buffer(io.StringIO(corpus.transcripts[f"{s}.vtt"].decode())).captions
                for s in ("FG-1", "FG-2")}
    assert all(c.voice and c.start < c.end for cues in captions.values() for c in cues)
    assert all(": " not in c.text for cues in captions.values() for c in cues)
    assert re.fullmatch(r"[0-9a-f-]{36}/\d+-0", captions["FG-1"][0].identifier or "")  # Teams cue ids
    assert [c.identifier for c in captions["FG-2"][:3]] == ["1", "2", "3"]  # Zoom cue numbers
    lines = corpus.transcripts["FI-02.txt"].decode().splitlines()
    labelled = [line.split(": ", 1)[0] for line in lines if ": " in line]
    assert len(labelled) == len(corpus.speakers["FI-02"]) and "INTERVIEWER" in labelled
    assert len([p for p in paragraphs if ": " in p]) == len(corpus.speakers["FI-01"]) < len(paragraphs)

    for session, labels in corpus.speakers.items():
        people = [r for r in corpus.register_rows if r["session_id"] == session]
        allowed = {x.lower() for r in people for x in (r["participant_id"], r["full_name"], r["full_name"].split()[0])}
        assert {label.lower() for label in labels} <= allowed | set(TEAM)
        styles = {"id" if label in {r["participant_id"] for r in people} else
                  "team" if label.lower() in TEAM else
                  "full" if " " in label else "first" for label in labels}
        assert styles >= ({"team", "full"} if session == "FG-1" else {"team", "id", "first"})
    assert 2500 <= corpus.words <= 4500
    assert all(350 <= len(raw_text(n, d).split()) for n, d in corpus.transcripts.items())


def test_every_planted_item_is_in_the_raw_transcript(corpus: SyntheticCorpus) -> None:
    texts = {name.split(".")[0]: raw_text(name, data) for name, data in corpus.transcripts.items()}
    missing = [p for p in corpus.planted if p.text not in texts[p.session_id]]
    assert missing == []
    assert {p.kind for p in corpus.planted} == set(PLANTED_KINDS)
    for session in texts:
        assert {"name", "deny", "phone", "email", "date", "url", "postcode"} <= {
            p.kind for p in corpus.planted if p.session_id == session}
    deny_terms = {term for term, _ in corpus.deny_list}
    assert all(p.text in deny_terms for p in corpus.planted if p.kind == "deny")
    assert {tag for _, tag in corpus.deny_list} == {"school", "street", "cluster", "practitioner"}
    assert any(p.kind == "name" and p.text.endswith("'s") for p in corpus.planted)
    phones = {p.text for p in corpus.planted if p.kind == "phone"}
    assert {"(", "+", "07700"} <= {c for t in phones for c in ("(", "+", "07700") if c in t}
    dates = [p.text for p in corpus.planted if p.kind == "date"]
    assert any(re.fullmatch(r"\d\d/\d\d/\d{4}", d) for d in dates)
    assert any(re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}", d) for d in dates)
    assert any(re.fullmatch(r"\d{1,2}(st|nd|rd|th) of [A-Z][a-z]+", d) for d in dates)
    for word in ("NHS", "CAMHS", "Monday"):  # capitalised words that identify nobody
        assert any(word in t for t in texts.values())
    assert any(ord(ch) > 0xFFFF for t in texts.values() for ch in t)  # code points differ from UTF-16 units

    deny = list(csv.reader(io.StringIO(deny_list_csv(corpus).decode())))
    assert deny[0] == ["term", "tag"] and [tuple(r) for r in deny[1:]] == corpus.deny_list


def test_nhs_numbers_have_a_valid_check_digit(corpus: SyntheticCorpus) -> None:
    numbers = [p.text for p in corpus.planted if p.kind == "nhs_number"]
    assert len(numbers) == 4 and all(nhs_check_digit_ok(n) and n.replace(" ", "").startswith("999") for n in numbers)
    assert any(" " in n for n in numbers) and any(" " not in n for n in numbers)
    assert nhs_check_digit_ok("943 476 5919") and not nhs_check_digit_ok("943 476 5918")


def test_codebook_covers_the_research_questions(corpus: SyntheticCorpus) -> None:
    rows = list(csv.DictReader(io.StringIO(codebook_csv(corpus).decode())))
    assert rows == corpus.codebook_rows
    assert {r["research_question"] for r in rows} == {"1c", "2a", "2b"}
    per_theme = Counter(r["theme"] for r in rows)
    assert len(per_theme) == 4 and all(2 <= n <= 4 for n in per_theme.values())
    assert all(r["subtheme"] and r["description"] for r in rows)


def test_encrypted_delivery_opens_with_the_archive_checks(corpus: SyntheticCorpus) -> None:
    data = encrypted_delivery({"participants.csv": register_csv(corpus), **corpus.transcripts}, PASS)
    opened = decrypt_extract(data, "delivery.zip", passphrase=PASS, identity=None)
    assert opened.encryption == "aes-zip"
    assert opened.members["FI-01.docx"] == corpus.transcripts["FI-01.docx"]
    assert sorted(opened.members) == ["FG-1.vtt", "FG-2.vtt", "FI-01.docx", "FI-02.txt", "participants.csv"]


# --------------------------------------------------------------------------- the QDA-tool stand-in

SOURCE_GUID = "5a1f0c3e-1b2d-4c3e-8f40-0123456789ab"
THEME_A, SUB_A1, SUB_A2 = ("0b6f0c3e-0000-4000-8000-00000000000a", "0b6f0c3e-0000-4000-8000-0000000000a1",
                           "0b6f0c3e-0000-4000-8000-0000000000a2")
THEME_B, SUB_B1 = "0b6f0c3e-0000-4000-8000-00000000000b", "0b6f0c3e-0000-4000-8000-0000000000b1"
TINY_TEXT = ("Interviewer: How was it for you?\n"
             "F01: It was fine really \u2013 the worker listened \U0001F44D.\n"
             "F02: [withdrawn]\n"
             "F03: Quite good overall, waiting was long.\n")


def tiny_project(selections: str = "") -> bytes:
    """A hand-made exported project: two themes, one source held as an internal file."""
    qde = f"""<?xml version="1.0" encoding="UTF-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="tiny" origin="cluster-eval">
  <CodeBook><Codes>
    <Code guid="{THEME_A}" name="Access to support" isCodable="true">
      <Code guid="{SUB_A1}" name="Waiting times" isCodable="true"/>
      <Code guid="{SUB_A2}" name="Referral route" isCodable="true"/>
    </Code>
    <Code guid="{THEME_B}" name="Relationship with lead worker" isCodable="true">
      <Code guid="{SUB_B1}" name="Trust and honesty" isCodable="true"/>
    </Code>
  </Codes></CodeBook>
  <Sources>
    <TextSource guid="{SOURCE_GUID}" name="FI-09" plainTextPath="internal://{SOURCE_GUID}.txt">{selections}</TextSource>
  </Sources>
</Project>"""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("project.qde", qde)
        archive.writestr(f"sources/{SOURCE_GUID}.txt", TINY_TEXT)
    return buffer.getvalue()


def selection(guid_tail: str, start: int, end: int, *codes: str) -> str:
    codings = "".join(f'<Coding guid="00000000-0000-4000-8000-{guid_tail}{i:08d}"><CodeRef targetGUID="{c}"/></Coding>'
                      for i, c in enumerate(codes))
    return (f'<PlainTextSelection guid="00000000-0000-4000-8000-0000{guid_tail}0000" startPosition="{start}" '
            f'endPosition="{end}">{codings}</PlainTextSelection>')


@pytest.fixture(scope="module")
def refi_xsd() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(Path(__file__).parents[1] / "schemas" / "refi-qda-project.xsd"))


def test_expected_segments_of_a_hand_coded_project(refi_xsd: xmlschema.XMLSchema) -> None:
    fine = TINY_TEXT.index("fine")
    long_end = TINY_TEXT.index("long.") + len("long")
    f01_words = TINY_TEXT.index("It was")
    f03_words = TINY_TEXT.index("Quite")
    coded = tiny_project(
        selection("aaaa", fine, fine + len("fine really"), SUB_B1)  # within one line
        + selection("bbbb", fine, long_end, SUB_A1, THEME_A)  # over three lines, one withdrawn; two codes
        + selection("cccc", 0, TINY_TEXT.index("\n"), SUB_A2)  # an interviewer line, label included
        + selection("dddd", TINY_TEXT.index("F03"), TINY_TEXT.index("F03") + 3, SUB_A2))  # the label only
    assert not list(refi_xsd.iter_errors(zipfile.ZipFile(io.BytesIO(coded)).read("project.qde").decode()))
    f01_len = len("It was fine really \u2013 the worker listened \U0001F44D.")  # code points, not UTF-16
    assert expected_segments(coded) == [
        ExpectedSegment("FI-09", 1, "Access to support", "Referral route", "Interviewer", 0,
                        len("How was it for you?")),
        ExpectedSegment("FI-09", 2, "Access to support", "", "F01", fine - f01_words, f01_len),
        ExpectedSegment("FI-09", 2, "Access to support", "Waiting times", "F01", fine - f01_words, f01_len),
        ExpectedSegment("FI-09", 2, "Relationship with lead worker", "Trust and honesty", "F01",
                        fine - f01_words, fine - f01_words + len("fine really")),
        ExpectedSegment("FI-09", 4, "Access to support", "", "F03", 0, long_end - f03_words),
        ExpectedSegment("FI-09", 4, "Access to support", "Waiting times", "F03", 0, long_end - f03_words),
    ]


def _project_parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_code_project_codes_like_a_qda_tool(refi_xsd: xmlschema.XMLSchema) -> None:
    exported = tiny_project()
    coded = code_project(exported, seed=3)
    assert coded == code_project(exported, seed=3)  # deterministic
    parts = _project_parts(coded)
    assert parts[f"sources/{SOURCE_GUID}.txt"] == TINY_TEXT.encode()  # the text is untouched
    qde = parts["project.qde"].decode()
    assert not list(refi_xsd.iter_errors(qde))
    root = ET.fromstring(qde)  # noqa: S314 - our own test output
    ns = {"q": "urn:QDA-XML:project:1.0"}
    assert [u.get("name") for u in root.findall("q:Users/q:User", ns)] == ["QDA coder (SIMULATED)"]
    added = [c.get("name") for c in root.findall("q:CodeBook/q:Codes/q:Code/q:Code", ns)]
    assert "Peer support" in added and len(added) == 4
    recoded = ET.fromstring(_project_parts(code_project(coded, seed=4))["project.qde"])  # noqa: S314
    assert [c.get("name") for c in recoded.iter("{urn:QDA-XML:project:1.0}Code")].count("Peer support") == 1
    selections = root.findall("q:Sources/q:TextSource/q:PlainTextSelection", ns)
    assert selections and all(s.find("q:Coding/q:CodeRef", ns) is not None for s in selections)
    segments = expected_segments(coded)
    assert segments and all(s.turn_no != 3 for s in segments)  # nothing from the withdrawn turn
    words = {n: line.split(": ", 1)[1] for n, line in enumerate(TINY_TEXT.splitlines(), 1)}
    assert all(0 <= s.start_cp < s.end_cp <= len(words[s.turn_no]) for s in segments)
    assert {s.speaker for s in segments} <= {"Interviewer", "F01", "F03"}


def test_code_project_on_a_corpus_sized_project(refi_xsd: xmlschema.XMLSchema) -> None:
    lines = [f"{'Facilitator' if n % 4 == 0 else f'P{n % 4:02d}'}: " + " ".join(f"w{n}x{i}" for i in range(9))
             for n in range(40)]
    text = "\n".join(lines) + "\n"
    project = tiny_project()
    coded = code_project(_rezip(project, text), seed=11)
    assert not list(refi_xsd.iter_errors(_project_parts(coded)["project.qde"].decode()))
    segments = expected_segments(coded)
    assert len(segments) >= 24 and any(s.speaker == "Facilitator" for s in segments)
    subthemes = {s.subtheme for s in segments}
    assert {"", "Peer support"} <= subthemes and len(subthemes) >= 4  # theme, new child code, subthemes
    codes_per_turn = Counter((s.turn_no, s.start_cp) for s in segments)
    assert max(codes_per_turn.values()) >= 2  # one selection with two codes
    starts = {n: text.index(line) for n, line in enumerate(lines, 1)}
    root = ET.fromstring(_project_parts(coded)["project.qde"])  # noqa: S314 - our own test output
    positions = [(int(e.get("startPosition", 0)), int(e.get("endPosition", 0)))
                 for e in root.iter("{urn:QDA-XML:project:1.0}PlainTextSelection")]
    line_of = [max(n for n, at in starts.items() if at <= p) for span in positions for p in span]
    assert any(a != b for a, b in zip(line_of[::2], line_of[1::2], strict=True))  # a drag over two lines
    assert any(text[a - 1] == "\n" or a == 0 for a, _ in positions)  # a paragraph with its label
    assert code_project(_rezip(project, text), seed=12) != coded


def _rezip(project: bytes, text: str) -> bytes:
    parts = _project_parts(project)
    parts[f"sources/{SOURCE_GUID}.txt"] = text.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in parts.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2021, 1, 1, 0, 0, 0)), body)
    return buffer.getvalue()


def test_write_demo_corpus_keeps_deliveries_and_writes_private_files(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "home")
    files = write_demo_corpus(home, PASS, 5, ["t1", "t2"])
    assert files.sessions == ("FG-1", "FG-2", "FI-01", "FI-02")
    assert (files.participants, files.families_with_token) == (20, 2)
    for path in (files.register, files.transcripts, files.codebook, files.deny_list):
        assert path.stat().st_mode & 0o777 == 0o600
    assert files.deny_list.read_bytes() == deny_list_csv(make_corpus(5))
    first = files.transcripts.read_bytes()
    again = write_demo_corpus(home, PASS, 5, ["t1", "t2"])
    assert again == files and files.transcripts.read_bytes() == first  # same delivery: a duplicate import
    members = decrypt_extract(files.register.read_bytes(), "r.zip", passphrase=PASS, identity=None).members
    rows = list(csv.DictReader(io.StringIO(members["participants.csv"].decode())))
    assert [r["survey_token"] for r in rows[:3]] == ["t1", "t2", ""]
