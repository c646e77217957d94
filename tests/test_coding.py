"""The coding round trip (qualitative-v1.md §4): codebook, REFI-QDA export/import, the Excel route.

Approved sessions are written straight into qual_* here (sealed like the intake does), so the
round trip is tested on its own: export validates against the XSD, a coded project made here
with lxml (as a QDA tool would) comes back as exact segments, and every bad project is refused
with one line and nothing stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastexcel
import pytest
import xlsxwriter
import xmlschema
from conftest import make_settings
from lxml import etree
from sqlalchemy import text

from tasks.coding.codebook import CodeRow, code_guid, load_codebook
from tasks.coding.refi_export import NS, export_coding
from tasks.coding.refi_import import import_coding
from tasks.coding.store import session_guid
from tasks.core.csvsafe import neutralise
from tasks.core.errors import ConfigError, InputRejected
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.core.secrets import PARTICIPANT_KEY, TRANSCRIPT_KEY
from tasks.qualitative.model import Names, key_id, seal, turn_aad

XSD = Path(__file__).resolve().parent.parent / "schemas" / "refi-qda-project.xsd"
Q = f"{{{NS}}}"
CLUSTER = "pilot"
NAME_MARKERS = ("Zebedeequist", "Marrowfinch", "Quillonby")  # register names: never exported

CODEBOOK_CSV = (
    "theme,subtheme,research_question,description\n"
    "Access,,1a,How families reach support\n"
    "Access,Waiting,1a,\n"
    "Access,Trust,,\n"
    "Impact,Wellbeing,2b,Changes families noticed\n"
)

# (participant_id, strand, session, role, token, pseudonym, display, withdrawn, names)
PEOPLE = [
    ("F01", "family_interview", "FI-01", "parent", "TOK-1", "Rosie", "Rosie", False, "Zebedeequist Marrowfinch"),
    ("F02", "family_interview", "FI-01", "carer", None, "Mo", "Mo", False, "Quillonby Smith"),
    ("F03", "family_interview", "FI-01", "parent", None, "Kit", "Kit", True, None),
    ("F04", "family_interview", "FI-02", "grandparent", None, "Lin", "Lin", False, "Ann Quillonby"),
    ("P01", "practitioner_focus_group", "FG-1", "manager", None, None, "Practitioner 1", False, "Bo Marrowfinch"),
]
# session -> turns (speaker, participant_id, words, withdrawn)
TURNS: dict[str, list[tuple[str, str | None, str, bool]]] = {
    "FI-01": [
        ("Interviewer", None, "Thank you all for coming today.", False),
        ("F01", "F01", "Café visits helped 😀 a lot, honestly.", False),
        ("F02", "F02", "The worker listened to us.", False),
        ("F03", "F03", "[withdrawn]", True),
        ("F01", "F01", "Naïve me thought it would not work.", False),
    ],
    "FG-1": [
        ("Facilitator", None, "What worked well?", False),
        ("P01", "P01", "Joint visits worked — mostly.", False),
        ("Facilitator", None, "+1 to that? @all", False),
    ],
    "FI-02": [
        ("Interviewer", None, "Hello.", False),
        ("F04", "F04", "Hi there.", False),
    ],
}
APPROVED = ("FG-1", "FI-01")


def seed(rt: Runtime) -> None:
    """Register, three sessions (two approved) and their sealed turns, as the intake stores them."""
    names_key, _ = rt.secrets.key_or_create(PARTICIPANT_KEY)
    turn_key, _ = rt.secrets.key_or_create(TRANSCRIPT_KEY)
    now = "2026-11-01T10:00:00+00:00"
    with rt.engine.begin() as conn:
        conn.execute(text("INSERT INTO waves (cluster_id, wave, seed, size, stratify_by, drawn_at)"
                          " VALUES (:c, 1, 1, 10, 'x', :at)"), {"c": CLUSTER, "at": now})
        conn.execute(text("INSERT INTO households (cluster_id, token, family_pid, wave, stratum, route)"
                          " VALUES (:c, 'TOK-1', 'fp1', 1, 'S2', 'email')"), {"c": CLUSTER})
        for pid, strand, session, role, token, pseudonym, display, withdrawn, names in PEOPLE:
            nonce = ciphertext = None
            if names is not None:
                nonce, ciphertext = Names(names, ()).seal(names_key, CLUSTER, pid)
            conn.execute(text(
                "INSERT INTO qual_participants (cluster_id, participant_id, strand, session_id, session_date,"
                " role, survey_token, pseudonym, display_name, consent_form_version, info_sheet_version,"
                " consent_date, consent_recording, consent_quotes, withdrawn_date, names_key_id, names_nonce,"
                " names_ciphertext, register_sha256) VALUES (:c, :p, :strand, :s, '2026-10-01', :role, :token,"
                " :pseudonym, :display, 'v1', 'v1', '2026-09-01', TRUE, TRUE, :wd, :kid, :nonce, :ct, 'r')"),
                {"c": CLUSTER, "p": pid, "strand": strand, "s": session, "role": role, "token": token,
                 "pseudonym": pseudonym, "display": display, "wd": "2026-10-20" if withdrawn else None,
                 "kid": key_id(names_key) if names else None, "nonce": nonce, "ct": ciphertext})
            if withdrawn:
                conn.execute(text("INSERT INTO qual_withdrawals VALUES (:c, :p, :at)"),
                             {"c": CLUSTER, "p": pid, "at": now})
        for session, turns in TURNS.items():
            conn.execute(text(
                "INSERT INTO qual_sessions (cluster_id, session_id, delivery_sha256, source_format, source_sha256,"
                " imported_at, redacted_at, turns, words, replacements, review_entries, approved_at,"
                " approved_review_entries) VALUES (:c, :s, 'd', 'txt', 'x', :at, :at, :n, 20, '{}', 0, :ap, :are)"),
                {"c": CLUSTER, "s": session, "at": now, "n": len(turns),
                 "ap": now if session in APPROVED else None, "are": 0 if session in APPROVED else None})
            for number, (speaker, pid, words, withdrawn) in enumerate(turns, start=1):
                nonce, ciphertext = seal(turn_key, turn_aad(CLUSTER, session, number), words)
                conn.execute(text(
                    "INSERT INTO qual_turns (cluster_id, session_id, turn_no, source_line, speaker, participant_id,"
                    " key_id, nonce, ciphertext, withdrawn) VALUES (:c, :s, :n, :n, :sp, :p, :k, :nonce, :ct, :w)"),
                    {"c": CLUSTER, "s": session, "n": number, "sp": speaker, "p": pid, "k": key_id(turn_key),
                     "nonce": nonce, "ct": ciphertext, "w": withdrawn})


def session_text(session: str) -> str:
    """The exported text of a session, computed here from the turns above (not by the code under test)."""
    return "".join(f"{speaker}: {words}\n" for speaker, _, words, _ in TURNS[session])


def words_of(session: str, turn_no: int) -> str:
    return TURNS[session][turn_no - 1][2]


def open_rt(tmp_path: Path, database_url: str, codebook: bool = True) -> Runtime:
    path = tmp_path / "codebook.csv"
    path.write_text(CODEBOOK_CSV, encoding="utf-8")
    settings = make_settings(tmp_path / "var", database_url,
                             qualitative={"codebook": path} if codebook else {})
    return open_runtime(settings)


@pytest.fixture
def rt(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """Seeded study on each backend, with the codebook configured."""
    runtime = open_rt(tmp_path, database_url)
    with use_runtime(runtime):
        seed(runtime)
        yield runtime


@pytest.fixture
def rt1(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    """Seeded study on SQLite only (rejection tests)."""
    runtime = open_rt(tmp_path, sqlite_url)
    with use_runtime(runtime):
        seed(runtime)
        yield runtime


def segments(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(text(
            "SELECT session_id, turn_no, start_cp, end_cp, theme, subtheme, participant_id FROM qual_segments"
            " WHERE cluster_id = :c"), {"c": CLUSTER}))


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # type: ignore[return-value]
                     for table in ("qual_segments", "qual_codings", "audit_log"))


# --- the project a QDA tool returns ------------------------------------------------------------


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def coded(data: bytes, edit: Callable[[etree._Element], None]) -> bytes:
    """The exported project as a QDA tool returns it after ``edit`` coded it (project.qde rewritten)."""
    members = members_of(data)
    root = etree.fromstring(members["project.qde"])
    edit(root)
    members["project.qde"] = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return rezip(members)


def select(root: etree._Element, session: str, start: int, end: int, *codes: str) -> str:
    """Add a PlainTextSelection coded with ``codes`` (GUIDs) to a session's TextSource; its GUID."""
    source = root.find(f"{Q}Sources/{Q}TextSource[@name='{session}']")
    guid = str(uuid.uuid4())
    selection = etree.SubElement(source, f"{Q}PlainTextSelection", guid=guid, name="sel",
                                 startPosition=str(start), endPosition=str(end))
    for code in codes:
        coding = etree.SubElement(selection, f"{Q}Coding", guid=str(uuid.uuid4()))
        etree.SubElement(coding, f"{Q}CodeRef", targetGUID=code)
    return guid


def add_code(parent: etree._Element, name: str) -> str:
    guid = str(uuid.uuid4()).upper()  # tools write upper-case GUIDs too
    etree.SubElement(parent, f"{Q}Code", guid=guid, name=name, isCodable="true")
    return guid


def code_el(root: etree._Element, theme: str) -> etree._Element:
    return root.find(f"{Q}CodeBook/{Q}Codes/{Q}Code[@name='{theme}']")


def the_coding(root: etree._Element) -> None:
    """What the researchers coded: a selection over two turns, a theme-level code over a withdrawn
    turn, the team's turn with a new child code, a new top-level theme with a child."""
    fi = session_text("FI-01")
    fg = session_text("FG-1")
    transport = add_code(code_el(root, "Access"), "Transport")
    partnership = add_code(root.find(f"{Q}CodeBook/{Q}Codes"), "Partnership")
    joint = add_code(root.find(f"{Q}CodeBook/{Q}Codes/{Q}Code[@name='Partnership']"), "Joint work")
    assert partnership
    etree.SubElement(root.find(f"{Q}Users"), f"{Q}User", guid=str(uuid.uuid4()), name="coder 1")
    select(root, "FI-01", fi.index("a lot"), fi.index("listened") + len("listened"),
           code_guid(CLUSTER, "Access", "Trust"))
    select(root, "FI-01", fi.index("F03: [withdrawn]"), len(fi) - 1, code_guid(CLUSTER, "Impact", ""))
    select(root, "FI-01", 0, fi.index("today.") + len("today."), transport)
    select(root, "FG-1", fg.index("Joint"), fg.index("Joint") + len("Joint visits"),
           joint, code_guid(CLUSTER, "Access", "Waiting"))


def expected_segments() -> list[tuple[Any, ...]]:
    w2, w3 = words_of("FI-01", 2), words_of("FI-01", 3)
    return sorted([
        ("FI-01", 2, w2.index("a lot"), len(w2), "Access", "Trust", "F01"),
        ("FI-01", 3, 0, w3.index("listened") + len("listened"), "Access", "Trust", "F02"),
        ("FI-01", 5, 0, len(words_of("FI-01", 5)), "Impact", "", "F01"),
        ("FI-01", 1, 0, len(words_of("FI-01", 1)), "Access", "Transport", None),
        ("FG-1", 2, 0, len("Joint visits"), "Partnership", "Joint work", "P01"),
        ("FG-1", 2, 0, len("Joint visits"), "Access", "Waiting", "P01"),
    ], key=lambda s: tuple("" if v is None else v for v in s))


def sort_key(s: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("" if v is None else v for v in s)


# --- codebook ----------------------------------------------------------------------------------


def test_codebook_rows_theme_first_with_inherited_research_question(tmp_path: Path) -> None:
    path = tmp_path / "cb.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CODEBOOK_CSV.encode())
    assert load_codebook(path) == [
        CodeRow("Access", "", "1a", "How families reach support"),
        CodeRow("Access", "Waiting", "1a", None),
        CodeRow("Access", "Trust", "1a", None),
        CodeRow("Impact", "", "2b", None),
        CodeRow("Impact", "Wellbeing", "2b", "Changes families noticed"),
    ]


@pytest.mark.parametrize(("body", "message"), [
    ("theme,subtheme,research_question\nA,,1a\n", "column description: the codebook has no column"),
    ("theme,subtheme,research_question,description\nA,,3z,\n",
     "column research_question, row 2: not one of the research questions"),
    ("theme,subtheme,research_question,description\nA,,1a,\n,B,1a,\n", "column theme, row 3: a theme is required"),
    ("theme,subtheme,research_question,description\nA,x,1a,\nA,X,1b,\n",
     "column subtheme, row 3: the same theme and subtheme are already on row 2"),
    ("theme,subtheme,research_question,description\nA,x,,\n",
     "column research_question, row 2: no row of this theme gives its research question"),
    ("theme,subtheme,research_question,description\n", "the codebook has no codes"),
])
def test_codebook_errors_name_row_and_column(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "cb.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InputRejected) as caught:
        load_codebook(path)
    assert str(caught.value).startswith("file cb.csv")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- export ------------------------------------------------------------------------------------


def test_export_is_a_valid_refi_qda_project_without_personal_data(rt: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "out" / "coding.qdpx"
    result = export_coding(rt, out, None)
    assert result == {"status": "exported", "out": str(out.resolve()), "format": "qdpx", "sessions": 2,
                      "turns": 8, "codes": 5, "cases": 4}
    assert out.stat().st_mode & 0o777 == 0o600
    data = out.read_bytes()
    members = members_of(data)
    guids = {s: session_guid(CLUSTER, s) for s in APPROVED}
    assert sorted(members) == sorted(["project.qde", *(f"sources/{g}.txt" for g in guids.values())])
    for session, guid in guids.items():
        assert members[f"sources/{guid}.txt"].decode("utf-8") == session_text(session)
    xmlschema.XMLSchema(str(XSD)).validate(io.BytesIO(members["project.qde"]))
    root = etree.fromstring(members["project.qde"])
    assert root.get("name") == "cluster-eval pilot coding" and root.get("creationDateTime")
    assert [u.get("name") for u in root.iter(f"{Q}User")] == ["cluster-eval"]
    themes = root.findall(f"{Q}CodeBook/{Q}Codes/{Q}Code")
    assert [(t.get("name"), [c.get("name") for c in t.findall(f"{Q}Code")]) for t in themes] == [
        ("Access", ["Waiting", "Trust"]), ("Impact", ["Wellbeing"])]
    assert all(c.get("isCodable") == "true" for c in root.iter(f"{Q}Code"))
    assert themes[0].get("guid") == code_guid(CLUSTER, "Access", "")
    assert [v.get("name") for v in root.iter(f"{Q}Variable")] == ["strand", "role", "stratum"]
    cases = root.findall(f"{Q}Cases/{Q}Case")
    assert [c.get("name") for c in cases] == ["F01 (Rosie)", "F02 (Mo)", "F04 (Lin)", "P01 (Practitioner 1)"]
    assert [v.text for v in cases[0].iter(f"{Q}TextValue")] == ["family_interview", "parent", "S2"]
    assert [r.get("targetGUID") for c in cases for r in c.findall(f"{Q}SourceRef")] == [
        guids["FI-01"], guids["FI-01"], guids["FG-1"]]  # F04's session is not approved
    sources = root.findall(f"{Q}Sources/{Q}TextSource")
    assert [(s.get("name"), s.get("plainTextPath")) for s in sources] == [
        (s, f"internal://{guids[s]}.txt") for s in APPROVED]
    for marker in (*NAME_MARKERS, "Kit"):  # names in the register; the withdrawn participant's pseudonym
        assert marker.encode() not in data and all(marker.encode() not in body for body in members.values())
    with rt.engine.connect() as conn:
        stored = {r.session_id: (r.export_guid, r.export_sha256) for r in conn.execute(text(
            "SELECT session_id, export_guid, export_sha256 FROM qual_sessions WHERE export_guid IS NOT NULL"))}
        ranges = list(conn.execute(text("SELECT turn_no, export_start, export_end FROM qual_turns"
                                        " WHERE session_id = 'FI-01' ORDER BY turn_no")))
        files = list(conn.execute(text("SELECT path, category FROM stored_files")))
        codes = conn.execute(text("SELECT COUNT(*) FROM qual_codes WHERE origin = 'codebook'")).scalar_one()
    assert stored == {s: (guids[s], hashlib.sha256(session_text(s).encode()).hexdigest()) for s in APPROVED}
    fi = session_text("FI-01")
    assert [tuple(r) for r in ranges][1] == (2, fi.index("Café"), fi.index("Café") + len(words_of("FI-01", 2)))
    assert [tuple(r) for r in files] == [(str(out.resolve()), "qdpx_export")]
    assert codes == 5


def test_export_needs_a_codebook_and_an_approved_session(tmp_path: Path, sqlite_url: str) -> None:
    runtime = open_rt(tmp_path, sqlite_url, codebook=False)
    with use_runtime(runtime):
        with pytest.raises(ConfigError, match="^no codebook is set: set qualitative.codebook"):
            export_coding(runtime, tmp_path / "x.qdpx", None)
    runtime = open_rt(tmp_path, sqlite_url)
    with use_runtime(runtime):
        with pytest.raises(InputRejected, match="^no transcript has been approved yet"):
            export_coding(runtime, tmp_path / "x.qdpx", None)
        with pytest.raises(InputRejected, match="must end in .qdpx"):
            export_coding(runtime, tmp_path / "x.docx", None)
    assert not (tmp_path / "x.qdpx").exists()


# --- import: the round trip --------------------------------------------------------------------


def test_round_trip_gives_exact_segments_and_keeps_new_codes(rt: Runtime, tmp_path: Path) -> None:
    export_coding(rt, tmp_path / "c.qdpx", None)
    project = coded((tmp_path / "c.qdpx").read_bytes(), the_coding)
    members = members_of(project)
    xmlschema.XMLSchema(str(XSD)).validate(io.BytesIO(members["project.qde"]))  # what a tool could send
    path = tmp_path / "coded.qdpx"
    path.write_bytes(project)
    result = import_coding(rt, path, None)
    assert result == {"status": "imported", "sha256": result["sha256"], "kind": "qdpx", "selections": 4,
                      "segments": 6, "codes_added": 3, "sessions": 2, "segments_dropped_withdrawn": 1}
    assert sorted(segments(rt), key=sort_key) == expected_segments()
    # code points, not bytes or UTF-16 units: "Café ... 😀 " precedes the selection
    w2 = words_of("FI-01", 2)
    assert w2.index("a lot") == 21 != len(w2[:21].encode()) != len(w2[:21].encode("utf-16-le")) // 2
    with rt.engine.connect() as conn:
        added = sorted(tuple(r) for r in conn.execute(text(
            "SELECT theme, subtheme, research_question FROM qual_codes WHERE origin = 'coding'")))
        audit = conn.execute(text("SELECT details FROM audit_log WHERE event = 'coding_imported'")).scalar_one()
    assert added == [("Access", "Transport", None), ("Partnership", "", None), ("Partnership", "Joint work", None)]
    assert json.loads(audit)["segments"] == 6
    again = import_coding(rt, path, None)
    assert again["status"] == "duplicate" and again["segments"] == 6
    assert counts(rt)[1] == 1
    # a re-export carries the codes added while coding; the texts (and their hashes) are unchanged
    assert export_coding(rt, tmp_path / "again.qdpx", None)["codes"] == 8
    root = etree.fromstring(members_of((tmp_path / "again.qdpx").read_bytes())["project.qde"])
    assert [(t.get("name"), [c.get("name") for c in t.findall(f"{Q}Code")])
            for t in root.findall(f"{Q}CodeBook/{Q}Codes/{Q}Code")] == [
        ("Access", ["Waiting", "Trust", "Transport"]), ("Impact", ["Wellbeing"]), ("Partnership", ["Joint work"])]
    assert import_coding(rt, path, None)["status"] == "duplicate"


def test_a_new_coding_replaces_the_segments(rt1: Runtime, tmp_path: Path) -> None:
    export_coding(rt1, tmp_path / "c.qdpx", None)
    fg = session_text("FG-1")
    first = tmp_path / "first.qdpx"
    first.write_bytes(coded((tmp_path / "c.qdpx").read_bytes(), the_coding))
    import_coding(rt1, first, None)

    def inline_and_code(root: etree._Element) -> None:  # a tool that keeps the text inline
        source = root.find(f"{Q}Sources/{Q}TextSource[@name='FG-1']")
        del source.attrib["plainTextPath"]
        etree.SubElement(source, f"{Q}PlainTextContent").text = fg
        select(root, "FG-1", fg.index("worked —"), fg.index("mostly") + 6, code_guid(CLUSTER, "Impact", "Wellbeing"))

    members = members_of(coded((tmp_path / "c.qdpx").read_bytes(), inline_and_code))
    del members[f"sources/{session_guid(CLUSTER, 'FG-1')}.txt"]
    second = tmp_path / "second.qdpx"
    second.write_bytes(rezip(members))
    result = import_coding(rt1, second, None)
    assert (result["segments"], result["codes_added"]) == (1, 0)
    words = words_of("FG-1", 2)
    assert segments(rt1) == [("FG-1", 2, words.index("worked"), words.index("mostly") + 6, "Impact", "Wellbeing",
                              "P01")]
    with rt1.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM qual_codes WHERE origin = 'coding'")).scalar_one() == 0


# --- import: refusals --------------------------------------------------------------------------

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE Project [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
                  b'<!ENTITY c "&b;&b;&b;&b;&b;&b;">]><Project xmlns="urn:QDA-XML:project:1.0" name="&c;"/>')
EXTERNAL = (b'<?xml version="1.0"?><!DOCTYPE Project [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Project xmlns="urn:QDA-XML:project:1.0" name="&x;"/>')


def _edit_text(members: dict[str, bytes]) -> None:
    name = next(n for n in members if n.startswith("sources/"))
    members[name] = members[name].replace(b"worker", b"w0rker").replace(b"Joint", b"J0int")


def _out_of_range(root: etree._Element) -> None:
    select(root, "FG-1", 3, len(session_text("FG-1")) + 1, code_guid(CLUSTER, "Access", ""))


def _schema_invalid(root: etree._Element) -> None:
    selection = etree.SubElement(root.find(f"{Q}Sources/{Q}TextSource"), f"{Q}PlainTextSelection",
                                 guid="not-a-guid", startPosition="0", endPosition="1")
    assert selection is not None


@pytest.mark.parametrize(("case", "message"), [
    ("edited", "text differs from the exported text; code the exported project without editing the transcripts"),
    ("out_of_range", "lies outside its text (positions 3-"),
    ("billion_laughs", "project.qde refused: XML entity declarations are not allowed"),
    ("external_entity", "project.qde refused: XML entity declarations are not allowed"),
    ("malformed", "project.qde is not well-formed XML (line 1, column"),
    ("schema", "does not follow the REFI-QDA schema at /Project/Sources/TextSource[1]/PlainTextSelection "
               "(attribute guid)"),
    ("unknown_code", "is coded with code"),
    ("not_zip", "not a REFI-QDA project"),
    ("traversal", "unsafe path"),
    ("foreign", "none of the project's sources is a transcript `coding export` wrote"),
])
def test_bad_projects_are_refused_with_one_line_and_nothing_stored(rt1: Runtime, tmp_path: Path, case: str,
                                                                    message: str) -> None:
    export_coding(rt1, tmp_path / "c.qdpx", None)
    exported = (tmp_path / "c.qdpx").read_bytes()
    before = counts(rt1)
    members = members_of(exported)
    if case == "edited":
        _edit_text(members)
        data = rezip(members)
    elif case == "out_of_range":
        data = coded(exported, _out_of_range)
    elif case in ("billion_laughs", "external_entity", "malformed"):
        members["project.qde"] = {"billion_laughs": BILLION_LAUGHS, "external_entity": EXTERNAL,
                                  "malformed": b"<Project><Sources></Project>"}[case]
        data = rezip(members)
    elif case == "schema":
        data = coded(exported, _schema_invalid)
    elif case == "unknown_code":
        data = coded(exported, lambda root: select(root, "FI-01", 0, 3, str(uuid.uuid4())))
    elif case == "foreign":
        data = coded(exported, lambda root: [s.set("guid", str(uuid.uuid4())) or s.set("name", "memo")
                                             for s in root.iter(f"{Q}TextSource")])
    elif case == "not_zip":
        data = b"<Project/>"
    else:
        members["../evil.txt"] = b"x"
        data = rezip(members)
    path = tmp_path / "bad.qdpx"
    path.write_bytes(data)
    with pytest.raises(InputRejected) as caught:
        import_coding(rt1, path, None)
    assert message in str(caught.value) and str(caught.value).startswith("file bad.qdpx: ")
    assert "\n" not in str(caught.value) and "passwd" not in str(caught.value)
    assert counts(rt1) == before and segments(rt1) == []


# --- the Excel route ---------------------------------------------------------------------------


def test_csv_sheet_export_and_import_round_trip(rt: Runtime, tmp_path: Path) -> None:
    result = export_coding(rt, tmp_path / "sheet.csv", None)
    assert (result["format"], result["sessions"], result["turns"], result["cases"]) == ("csv", 2, 8, 0)
    body = (tmp_path / "sheet.csv").read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["session_id", "line", "speaker", "text", "theme", "subtheme"]
    assert rows[1:4] == [["FG-1", "1", "Facilitator", "What worked well?", "", ""],
                         ["FG-1", "2", "P01", "Joint visits worked — mostly.", "", ""],
                         ["FG-1", "3", "Facilitator", "'+1 to that? @all", "", ""]]
    assert len(rows) == 9 and all(m.encode() not in body for m in NAME_MARKERS)
    rows[2][4:] = ["Access", "Waiting"]
    rows[5][4:] = ["Impact", ""]  # FI-01 line 2
    rows[6][4:] = ["Roads", "Potholes"]  # a code added while coding
    rows[7][4:] = ["Impact", ""]  # FI-01 line 4: withdrawn
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    coded_sheet = tmp_path / "coded.csv"
    coded_sheet.write_text(buffer.getvalue(), encoding="utf-8")
    result = import_coding(rt, coded_sheet, None)
    assert (result["kind"], result["selections"], result["segments"], result["codes_added"],
            result["sessions"], result["segments_dropped_withdrawn"]) == ("csv", 4, 3, 2, 2, 1)
    assert sorted(segments(rt), key=sort_key) == sorted([
        ("FG-1", 2, 0, len(words_of("FG-1", 2)), "Access", "Waiting", "P01"),
        ("FI-01", 2, 0, len(words_of("FI-01", 2)), "Impact", "", "F01"),
        ("FI-01", 3, 0, len(words_of("FI-01", 3)), "Roads", "Potholes", "F02"),
    ], key=sort_key)
    assert import_coding(rt, coded_sheet, None)["status"] == "duplicate"


def test_range_csv_and_xlsx_import(rt1: Runtime, tmp_path: Path) -> None:
    ranges = tmp_path / "ranges.csv"
    ranges.write_bytes(b"\xef\xbb\xbfsession_id;line_start;line_end;theme;subtheme\r\n"  # Excel in some locales
                       b"FI-01;1;5;Access;Trust\r\nFG-1;2;2;Access;\r\n")
    result = import_coding(rt1, ranges, None)
    assert (result["selections"], result["segments"], result["segments_dropped_withdrawn"]) == (2, 5, 1)
    assert [s[:2] for s in segments(rt1)] == [("FG-1", 2), ("FI-01", 1), ("FI-01", 2), ("FI-01", 3), ("FI-01", 5)]
    export_coding(rt1, tmp_path / "sheet.xlsx", None)
    reader = fastexcel.read_excel((tmp_path / "sheet.xlsx").read_bytes())
    frame = reader.load_sheet_by_name("coding", dtypes="string").to_polars()
    assert frame.columns == ["session_id", "line", "speaker", "text", "theme", "subtheme"]
    assert frame.height == 8 and frame["text"][2] == "+1 to that? @all"
    workbook_path = tmp_path / "coded.xlsx"
    workbook = xlsxwriter.Workbook(str(workbook_path))
    sheet = workbook.add_worksheet("coding")
    for r, row in enumerate([["session_id", "line_start", "line_end", "theme", "subtheme"],
                             ["FG-1", 1, 3, "Impact", "Wellbeing"]]):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    workbook.close()
    assert import_coding(rt1, workbook_path, None)["segments"] == 3
    assert [s[:2] for s in segments(rt1)] == [("FG-1", 1), ("FG-1", 2), ("FG-1", 3)]


@pytest.mark.parametrize(("rows", "message"), [
    ("FI-01,4,9,Access,", "row 2: lines out of range: the session has lines 1 to 5"),
    ("FI-02,1,1,Access,", "column session_id, row 2: this session's transcript has not been approved"),
    ("XX-9,1,1,Access,", "column session_id, row 2: unknown session"),
    ("FI-01,x,1,Access,", "column line_start, row 2: not a whole line number"),
    ("FI-01,1,1,,Trust", "column theme, row 2: a subtheme needs its theme"),
    ("FI-01,1,1,,", "the coding sheet codes nothing"),
    ("FI-01,inf,1,A,", "column line_start, row 2: not a whole line number"),
])
def test_bad_coding_csv_rows_are_named(rt1: Runtime, tmp_path: Path, rows: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"session_id,line_start,line_end,theme,subtheme\n{rows}\n", encoding="utf-8")
    before = counts(rt1)
    with pytest.raises(InputRejected) as caught:
        import_coding(rt1, path, None)
    assert message in str(caught.value)
    assert counts(rt1) == before


def test_neutralise_formula_cells() -> None:
    assert [neutralise(v) for v in ("=1+1", "+1", "-x", "@a", "\tx", "\rx", "ok", "")] == [
        "'=1+1", "'+1", "'-x", "'@a", "'\tx", "'\rx", "ok", ""]


# --- the command line --------------------------------------------------------------------------


def test_cli_export_import_and_refusal(rt1: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], prefect_harness: None) -> None:
    from cli.main import main

    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(rt1.home.root))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", rt1.settings.database)
    monkeypatch.setenv("CLUSTER_EVAL_QUALITATIVE__CODEBOOK", str(tmp_path / "codebook.csv"))
    out = tmp_path / "c.qdpx"
    capsys.readouterr()
    assert main(["coding", "export", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"REFI-QDA project {out}: 2 approved session(s), 8 turns, 5 codes")
    path = tmp_path / "coded.qdpx"
    path.write_bytes(coded(out.read_bytes(), the_coding))
    assert main(["coding", "import", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 6
    members = members_of(path.read_bytes())
    _edit_text(members)
    path.write_bytes(rezip(members))
    assert main(["coding", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cluster-eval: error: file coded.qdpx: source ") and err.count("\n") == 1
    assert sorted(segments(rt1), key=sort_key) == expected_segments()


def test_tool_variants_crlf_text_capital_sources_folder_and_project_name(rt1: Runtime, tmp_path: Path) -> None:
    """A tool that writes CR LF line endings (positions counted in its own text), a ``Sources/``
    folder and ``<name>.qde`` still gives the exported text's segments."""
    export_coding(rt1, tmp_path / "c.qdpx", None)
    fi = session_text("FI-01").replace("\n", "\r\n")

    def code(root: etree._Element) -> None:
        select(root, "FI-01", fi.index("The worker"), fi.index("Naïve") + len("Naïve"),
               code_guid(CLUSTER, "Access", "Waiting"))

    members = members_of(coded((tmp_path / "c.qdpx").read_bytes(), code))
    renamed = {"My study.qde": members.pop("project.qde")}
    for name, body in members.items():
        renamed["Sources/" + name.split("/", 1)[1]] = body.replace(b"\n", b"\r\n")
    path = tmp_path / "tool.qdpx"
    path.write_bytes(rezip(renamed))
    result = import_coding(rt1, path, None)
    assert (result["selections"], result["segments"], result["segments_dropped_withdrawn"]) == (1, 2, 1)
    assert segments(rt1) == [
        ("FI-01", 3, 0, len(words_of("FI-01", 3)), "Access", "Waiting", "F02"),
        ("FI-01", 5, 0, len("Naïve"), "Access", "Waiting", "F01")]
