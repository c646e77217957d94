"""Framework matrices, counts, triangulation and the report's qualitative parts (issue 11, item 5).

A small qualitative study is written straight into the database (turns sealed with the
transcript key, as intake stores them): two family interviews, one focus group, a withdrawn
family participant, one family participant who refused quotes, codes of the codebook and one
added while coding. The tests check every matrix cell, the counts and triangulation files, the
words of the report per strand, which quotes are chosen, and that the withdrawn participant
and the refused quotes appear nowhere.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import docx
import fastexcel
import pytest
from sqlalchemy import Connection, text

from tasks.analysis.docx_report import write_docx
from tasks.analysis.framework import (
    ANALYSED,
    NO_KEY,
    NO_SEGMENTS,
    Framework,
    QualitativeData,
    build_framework,
    cut,
    extent,
    load_qualitative,
    read_codebook_order,
)
from tasks.analysis.framework_files import sheet_names, write_framework
from tasks.analysis.manifest import qualitative_entry
from tasks.analysis.outputs import write_outputs
from tasks.analysis.report import render_report
from tasks.analysis.sections import NO_THEME, SAID_HEADING
from tasks.core.csvsafe import csv_bytes, neutralise
from tasks.core.runtime import Runtime
from tasks.core.secrets import TRANSCRIPT_KEY
from tasks.qualitative.model import FAMILY, PRACTITIONER, key_id, seal, turn_aad

CODING = "c" * 64
#: (participant_id, strand, session, role, token, pseudonym, display name, quotes, withdrawn)
PEOPLE = [
    ("F01", FAMILY, "FI-01", "parent", "TOK-A", "Jade", "Jade", True, False),
    ("F02", FAMILY, "FI-01", "carer", None, "Tamsin", "Tamsin", False, False),
    ("F03", FAMILY, "FI-01", "grandparent", "TOK-C", "Rowan", "Rowan", True, True),
    ("F04", FAMILY, "FI-02", "parent", "TOK-B", "Ash", "Ash", True, False),
    ("P01", PRACTITIONER, "FG-1", "manager", None, None, "Practitioner 1", True, False),
    ("P02", PRACTITIONER, "FG-1", "other", None, None, "Practitioner 2", True, False),
    ("P03", PRACTITIONER, "FG-1", "therapist", None, None, "Practitioner 3", True, False),
]
LONG = "=SUM(A1) waiting was hard but the worker called me back quickly every time I rang."
#: session -> turns (speaker, participant_id or None, words, withdrawn)
TURNS = {
    "FI-01": [("Interviewer", None, "What helped you most?", False),
              ("F01", "F01", "The worker listened to me every week. She came to the house.", False),
              ("F02", "F02", "We waited months before anyone called. It felt like forever.", False),
              ("F01", "F01", "Then things got better at school.", False),
              ("F03", "F03", "[withdrawn]", True),
              ("F01", "F01", "Rowan's son felt judged too, F03 said.", False)],
    "FI-02": [("Interviewer", None, "Tell me about waiting.", False),
              ("F04", "F04", LONG, False)],
    "FG-1": [("Facilitator", None, "What gets in the way?", False),
             ("P01", "P01", "Caseloads are too high.", False),
             ("P02", "P02", "As P01 said, caseloads are high and waiting lists grow.", False),
             ("P03", "P03", "I agree.", False)],
}
#: (theme, subtheme, research question, description, origin)
CODES = [
    ("Relationships", "", "2a", "relationships between families and workers", "codebook"),
    ("Relationships", "Feeling listened to", "2a", "the worker listens and takes time", "codebook"),
    ("Relationships", "Consistency", "2a", "seeing the same worker.", "codebook"),
    ("Access", "", "1c", "getting support", "codebook"),
    ("Access", "Waiting", "1c", "time from referral to support", "codebook"),
    ("Access", "Caseloads", "1c", "workers' caseloads", "codebook"),
    ("Access", "Phone contact", None, None, "coding"),
    ("Harms", "", "2c", "negative effects", "codebook"),
    ("Harms", "Stigma", "2c", "feeling judged", "codebook"),
    ("Endings", "", "2c", "how support ended", "codebook"),
    ("Endings", "Closure", "2c", "the case being closed", "codebook"),
]
CODEBOOK_ORDER = [(t, s) for t, s, _, _, origin in CODES if origin == "codebook"]
#: (selection, session, turn, theme, subtheme, the coded text within the turn, or None = all)
SEGMENTS = [
    ("s1", "FI-01", 2, "Relationships", "Feeling listened to", "The worker listened to me every week."),
    ("s2", "FI-01", 2, "Relationships", "Consistency", "She came to the house."),
    ("s2", "FI-01", 3, "Relationships", "Consistency", None),
    ("s2", "FI-01", 4, "Relationships", "Consistency", None),
    ("s3", "FI-01", 3, "Access", "Waiting", "We waited months before anyone called."),
    ("s10", "FI-01", 3, "Access", "Waiting", "It felt like forever."),
    ("s5", "FI-01", 5, "Access", "Waiting", None),
    ("s4", "FI-02", 2, "Access", "Waiting", None),
    ("s11", "FI-02", 2, "Access", "Phone contact", "called me back quickly"),
    ("s6", "FG-1", 2, "Access", "Caseloads", None),
    ("s6", "FG-1", 3, "Access", "Caseloads", "As P01 said, caseloads are high"),
    ("s7", "FG-1", 1, "Access", "Caseloads", None),
    ("s9", "FG-1", 4, "Access", "Caseloads", None),
    ("s12", "FG-1", 3, "Access", "Waiting", "waiting lists grow"),
    ("s8", "FG-1", 2, "Relationships", "", None),
    ("s13", "FI-01", 6, "Harms", "Stigma", None),
]
FAM, PRA = "family_interview", "practitioner_focus_group"
EXPECTED_RELATIONSHIPS = [
    ["pseudonym", "strand", "role", "Feeling listened to", "Consistency", "(theme)"],
    ["Jade", FAM, "parent", "The worker listened to me every week. [FI-01 L2]",
     "She came to the house. … Then things got better at school. [FI-01 L2–4]", ""],
    ["Tamsin", FAM, "carer", "", "We waited months before anyone called. It felt like forever. [FI-01 L3]", ""],
    ["Ash", FAM, "parent", "", "", ""],
    ["Practitioner 1", PRA, "manager", "", "", "Caseloads are too high. [FG-1 L2]"],
    ["Practitioner 2", PRA, "other", "", "", ""],
    ["Practitioner 3", PRA, "therapist", "", "", ""],
]
EXPECTED_ACCESS = [
    ["pseudonym", "strand", "role", "Waiting", "Caseloads", "Phone contact"],
    ["Jade", FAM, "parent", "", "", ""],
    ["Tamsin", FAM, "carer",
     "We waited months before anyone called. [FI-01 L3]\nIt felt like forever. [FI-01 L3]", "", ""],
    ["Ash", FAM, "parent", f"{LONG} [FI-02 L2]", "", "called me back quickly [FI-02 L2]"],
    ["Practitioner 1", PRA, "manager", "", "Caseloads are too high. [FG-1 L2]", ""],
    ["Practitioner 2", PRA, "other", "waiting lists grow [FG-1 L3]",
     "As P01 said, caseloads are high [FG-1 L3]", ""],
    ["Practitioner 3", PRA, "therapist", "", "I agree. [FG-1 L4]", ""],
]
EXPECTED_COUNTS = [
    ["theme", "subtheme", "family_participants", "practitioners", "segments"],
    ["Relationships", "Feeling listened to", "1", "0", "1"],
    ["Relationships", "Consistency", "2", "0", "3"],
    ["Relationships", "(theme)", "0", "1", "1"],
    ["Access", "Waiting", "2", "1", "4"],
    ["Access", "Caseloads", "0", "3", "3"],
    ["Access", "Phone contact", "1", "0", "1"],
    ["Harms", "Stigma", "1", "0", "1"],
    ["Endings", "Closure", "0", "0", "0"],
]
SURVEY_HEADER = ["q1_life_satisfaction", "q2_worthwhile", "q3_happy_yesterday", "q4_anxious_yesterday",
                 "q5_child_wellbeing", "q6_parenting_confidence", "q7_help_with_difficulties",
                 "q8_worker_relationship", "q9_negative_effects", "q10_interview_opt_in"]
EXPECTED_TRIANGULATION = [
    ["pseudonym", "stratum", *SURVEY_HEADER, "Relationships", "Access", "Harms", "Endings"],
    ["Jade", "school", "7", "8", "6", "3", "5", "4", "4", "5", "N", "Y", "Y", "N", "Y", "N"],
    ["Ash", "self", "", "", "", "", "", "", "", "", "", "", "N", "Y", "N", "N"],
]
#: Sentences of the report per research question and theme.
EXPECTED_SAID: dict[str, list[tuple[str, list[str]]]] = {
    "2a": [("Relationships", [
        "One family participant talked about feeling listened to (the worker listens and takes time).",
        "Most family participants talked about consistency (seeing the same worker).",
        "One practitioner talked about relationships (relationships between families and workers).",
    ])],
    "1c": [("Access", [
        "Most family participants and one practitioner talked about waiting (time from referral to "
        "support).",
        "All practitioners talked about caseloads (workers' caseloads).",
        "One family participant talked about phone contact.",
    ])],
    "2c": [("Harms", ["One family participant talked about stigma (feeling judged)."]),
           ("Endings", [])],
}
#: (theme, subtheme) -> quotes as (text, attribution), with a limit of 8 words
EXPECTED_QUOTES = {
    ("Relationships", "Feeling listened to"): [
        ("The worker listened to me every week.", "Jade (family participant)")],
    ("Relationships", "Consistency"): [
        ("She came to the house. … Then things got …", "Jade (family participant)")],
    ("Relationships", ""): [("Caseloads are too high.", "Practitioner 1 (practitioner)")],
    ("Access", "Waiting"): [("waiting lists grow", "Practitioner 2 (practitioner)"),
                            ("=SUM(A1) waiting was hard but the worker called …", "Ash (family participant)")],
    ("Access", "Caseloads"): [("Caseloads are too high.", "Practitioner 1 (practitioner)"),
                              ("As Practitioner 1 said, caseloads are high", "Practitioner 2 (practitioner)")],
    ("Access", "Phone contact"): [("called me back quickly", "Ash (family participant)")],
    ("Harms", "Stigma"): [("[name]'s son felt judged too, [name] said.", "Jade (family participant)")],
}


@dataclass(frozen=True)
class Options:
    survey: bool = True
    segments: bool = True


def _insert(conn: Connection, table: str, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)  # noqa: S608 - test data


def add_qualitative(rt: Runtime, options: Options = Options()) -> None:
    """Write the small qualitative study (and optionally its survey answers) into the database."""
    key, _ = rt.secrets.key_or_create(TRANSCRIPT_KEY)
    cluster = rt.cluster
    with rt.engine.begin() as conn:
        for pid, strand, session, role, token, pseudonym, display, quotes, withdrawn in PEOPLE:
            _insert(conn, "qual_participants", {
                "cluster_id": cluster, "participant_id": pid, "strand": strand, "session_id": session,
                "session_date": "2021-09-01", "role": role, "survey_token": token,
                "pseudonym": pseudonym, "display_name": display, "consent_form_version": "v1",
                "info_sheet_version": "v1", "consent_date": "2021-08-20", "consent_recording": True,
                "consent_quotes": quotes, "withdrawn_date": "2021-10-01" if withdrawn else None,
                "register_sha256": "r" * 64})
            if withdrawn:
                _insert(conn, "qual_withdrawals", {"cluster_id": cluster, "participant_id": pid,
                                                   "withdrawn_at": "2021-10-01T00:00:00+00:00"})
        for session, turns in TURNS.items():
            _insert(conn, "qual_sessions", {
                "cluster_id": cluster, "session_id": session, "delivery_sha256": "d" * 64,
                "source_format": "txt", "source_sha256": "s" * 64,
                "imported_at": "2021-09-02T00:00:00+00:00", "redacted_at": "2021-09-02T00:00:00+00:00",
                "turns": len(turns), "words": 50, "replacements": "{}", "review_entries": 0,
                "approved_at": "2021-09-03T00:00:00+00:00"})
            for number, (speaker, speaker_id, words, gone) in enumerate(turns, start=1):
                nonce, sealed = seal(key, turn_aad(cluster, session, number), words)
                _insert(conn, "qual_turns", {
                    "cluster_id": cluster, "session_id": session, "turn_no": number,
                    "source_line": number, "speaker": speaker, "participant_id": speaker_id,
                    "key_id": key_id(key), "nonce": nonce, "ciphertext": sealed, "withdrawn": gone})
        for index, (theme, subtheme, rq, description, origin) in enumerate(CODES):
            _insert(conn, "qual_codes", {
                "cluster_id": cluster, "theme": theme, "subtheme": subtheme, "research_question": rq,
                "description": description, "origin": origin, "guid": f"guid-{index}"})
        if options.segments:
            for selection, session, turn, theme, subtheme, part in SEGMENTS:
                _, coded_id, said, _ = TURNS[session][turn - 1]
                start = 0 if part is None else said.index(part)
                end = len(said) if part is None else start + len(part)
                _insert(conn, "qual_segments", {
                    "cluster_id": cluster, "coding_sha256": CODING, "selection_id": selection,
                    "session_id": session, "turn_no": turn, "participant_id": coded_id, "theme": theme,
                    "subtheme": subtheme, "start_cp": start, "end_cp": end})
        if options.survey:
            _insert(conn, "waves", {"cluster_id": cluster, "wave": 99, "seed": 1, "size": 3,
                                    "stratify_by": "route", "drawn_at": "2021-07-01T00:00:00+00:00"})
            for token, family, stratum in (("TOK-A", "FQ1", "school"), ("TOK-B", "FQ2", "self"),
                                           ("TOK-C", "FQ3", "school")):
                _insert(conn, "households", {"cluster_id": cluster, "token": token, "family_pid": family,
                                             "wave": 99, "stratum": stratum, "route": "email",
                                             "withdrawn_at": None})
            for token in ("TOK-A", "TOK-C"):
                _insert(conn, "responses", {
                    "cluster_id": cluster, "token": token, "submitted_at": "2021-07-10T00:00:00+00:00",
                    "mode": "online", "q1_life_satisfaction": 7, "q2_worthwhile": 8,
                    "q3_happy_yesterday": 6, "q4_anxious_yesterday": 3, "q5_child_wellbeing": 5,
                    "q6_parenting_confidence": 4, "q7_help_with_difficulties": 4,
                    "q8_worker_relationship": 5, "q9_negative_effects": False,
                    "q10_interview_opt_in": True, "import_sha256": "i" * 64})


def framework_of(rt: Runtime, words: int = 8) -> Framework:
    with rt.engine.connect() as conn:
        data = load_qualitative(conn, rt.cluster, rt.secrets.key_if_any(TRANSCRIPT_KEY), CODEBOOK_ORDER)
    return build_framework(data, words)


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def test_matrices_counts_and_triangulation_are_exact(runtime: Runtime, tmp_path: Path) -> None:
    add_qualitative(runtime)
    framework = framework_of(runtime)
    assert framework.status == ANALYSED
    assert framework.summary() == {"status": "analysed", "themes": 4, "coded_segments": 14,
                                   "participants": 6}
    assert [m.theme.name for m in framework.matrices] == ["Relationships", "Access", "Harms", "Endings"]
    assert [m.theme.slug for m in framework.matrices] == ["relationships", "access", "harms", "endings"]
    written = write_framework(tmp_path, framework)
    assert written == ["restricted/framework/relationships.csv", "restricted/framework/access.csv",
                       "restricted/framework/harms.csv", "restricted/framework/endings.csv",
                       "restricted/framework.xlsx", "restricted/framework_counts.csv",
                       "restricted/triangulation.csv"]
    restricted = tmp_path / "restricted"
    assert read_csv(restricted / "framework" / "relationships.csv") == EXPECTED_RELATIONSHIPS
    access = read_csv(restricted / "framework" / "access.csv")
    injected = [row[:] for row in EXPECTED_ACCESS]
    injected[3][3] = "'" + injected[3][3]  # a cell starting "=" is neutralised in the CSV
    assert access == injected
    harms = read_csv(restricted / "framework" / "harms.csv")
    assert harms[0] == ["pseudonym", "strand", "role", "Stigma"]
    assert [row[0] for row in harms[1:]] == ["Jade", "Tamsin", "Ash", "Practitioner 1", "Practitioner 2",
                                             "Practitioner 3"]
    # the withdrawn participant named in someone else's words is masked
    assert [row[3] for row in harms[1:]] == ["[name]'s son felt judged too, [name] said. [FI-01 L6]"] + [""] * 5
    endings = read_csv(restricted / "framework" / "endings.csv")
    assert endings[0] == ["pseudonym", "strand", "role", "Closure"]
    assert len(endings) == 7 and all(row[3] == "" for row in endings[1:])
    assert read_csv(restricted / "framework_counts.csv") == EXPECTED_COUNTS
    assert read_csv(restricted / "triangulation.csv") == EXPECTED_TRIANGULATION
    raw = (restricted / "framework" / "relationships.csv").read_bytes()
    assert raw.startswith(b"pseudonym,strand,role,") and b"\r\n" not in raw
    # the withdrawn participant is nowhere: no name, no words, no row
    for path in restricted.rglob("*"):
        if path.is_file():
            body = path.read_bytes()
            assert b"Rowan" not in body and b"[withdrawn]" not in body and b"F03" not in body, path


def test_framework_workbook_sheets_wrap_and_freeze(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    add_qualitative(sqlite_runtime)
    write_framework(tmp_path, framework_of(sqlite_runtime))
    book_path = tmp_path / "restricted" / "framework.xlsx"
    reader = fastexcel.read_excel(str(book_path))
    assert reader.sheet_names == ["Relationships", "Access", "Harms", "Endings"]
    access = reader.load_sheet("Access", header_row=None).to_polars()
    rows = [["" if v is None else str(v) for v in row] for row in access.iter_rows()]
    assert rows == EXPECTED_ACCESS  # the workbook keeps "=SUM(A1)…" as text, not a formula
    with zipfile.ZipFile(book_path) as book:
        sheet = book.read("xl/worksheets/sheet2.xml").decode()
        styles = book.read("xl/styles.xml").decode()
    assert '<pane xSplit="1" ySplit="1" topLeftCell="B2" activePane="bottomRight" state="frozen"/>' in sheet
    assert "<f>" not in sheet
    assert re.search(r'<col min="4" max="6" width="60\.\d+"', sheet)
    assert 'wrapText="1"' in styles


def test_sheet_names_and_csv_neutralising() -> None:
    long = "Relationships with workers and other professionals"
    assert sheet_names([long, long, "Why? / how", "history", "'quoted'"]) == [
        "Relationships with workers and", "Relationships with workers (2)", "Why    how",
        "history (2)", "quoted"]
    assert [neutralise(v) for v in ("=1+1", "+44", "-3", "@SUM", "\tx", "\rx", "plain", None)] == [
        "'=1+1", "'+44", "'-3", "'@SUM", "'\tx", "'\rx", "plain", ""]
    assert csv_bytes(["a", "b"], [["=x", "1,2"]]) == b"a,b\n'=x,\"1,2\"\n"


def test_extent_words_cut_offs() -> None:
    figures = {(0, 5): None, (1, 1): "one", (1, 8): "one", (2, 2): "all", (3, 3): "all",
               (2, 3): "most", (5, 8): "most", (4, 6): "most", (3, 5): "about half",
               (4, 8): "about half", (2, 5): "about half", (3, 8): "some", (2, 6): "some",
               (1, 0): None}
    assert {pair: extent(*pair) for pair in figures} == figures
    assert cut("one two three", 3) == "one two three"
    assert cut("one two … three four five", 4) == "one two … three four …"
    assert cut("one two … three", 2) == "one two …"


def test_report_words_and_quotes(sqlite_runtime: Runtime) -> None:
    add_qualitative(sqlite_runtime)
    report = framework_of(sqlite_runtime).report
    assert report.analysed
    assert sorted(report.questions) == ["1c", "2a", "2c"]
    said = {rq: [(t.theme, [i.sentence for i in t.items]) for t in q.themes]
            for rq, q in report.questions.items()}
    assert said == EXPECTED_SAID
    assert report.questions["2c"].themes[0].none_raised == ""
    assert report.questions["2c"].themes[1].none_raised == "No participant talked about this theme."
    quotes = {(i.theme, i.subtheme): [(q.text, q.attribution) for q in i.quotes]
              for q in report.questions.values() for t in q.themes for i in t.items}
    assert quotes == EXPECTED_QUOTES
    # a larger word limit quotes the whole excerpt instead of cutting it
    wider = framework_of(sqlite_runtime, words=60).report.questions["1c"].themes[0].items[0]
    assert [(q.text, q.attribution) for q in wider.quotes] == [
        ("waiting lists grow", "Practitioner 2 (practitioner)"), (LONG, "Ash (family participant)")]


def _without_images(page: str) -> str:
    """The page without its inline PNG charts (base64 can hold any short word)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def _section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start:page.index("</section>", start)]


def test_report_html_and_word_say_what_was_said(analysed, sqlite_runtime: Runtime, tmp_path: Path) -> None:
    analysis, publication, context = analysed
    add_qualitative(sqlite_runtime)
    framework = framework_of(sqlite_runtime)
    written = write_outputs(tmp_path / "run", analysis, publication, context, framework)
    page = _without_images(written.report.read_text(encoding="utf-8"))
    for rq in ("1c", "2a", "2c"):
        section = _section(page, f"rq-{rq}")
        assert f"<h3 id=\"rq-{rq}-said\">{SAID_HEADING}</h3>" in section
        for theme, sentences in EXPECTED_SAID[rq]:
            assert f"<h4>{theme}</h4>" in section
            for sentence in sentences:
                assert sentence.replace("'", "&#39;") in section
    assert "“waiting lists grow”</p><footer>— Practitioner 2 (practitioner)</footer>" in page
    assert "— Ash (family participant)" in page
    assert "not been analysed yet" not in page
    rq2b = _section(page, "rq-2b")
    assert NO_THEME.replace("'", "&#39;") in rq2b and SAID_HEADING not in rq2b
    rq1a = _section(page, "rq-1a")
    assert SAID_HEADING not in rq1a and "codebook informs" not in rq1a
    assert 'id="qualitative-method"' in page
    # never the quote of someone who refused quotes, never the withdrawn participant, no counts
    assert "Tamsin" not in page and "We waited months" not in page and "forever" not in page
    assert "Rowan" not in page and "[withdrawn]" not in page
    said_parts = re.findall(r'<p class="said-sentence">(.*?)</p>', page)
    assert len(said_parts) == 8 and not any(re.search(r"\d", html.unescape(p)) for p in said_parts)
    assert "Simulated data (demo)" not in page
    manifest = written.manifest
    assert manifest["qualitative"] == {
        "status": "analysed", "themes": 4, "coded_segments": 14,
        "files": ["restricted/framework/relationships.csv", "restricted/framework/access.csv",
                  "restricted/framework/harms.csv", "restricted/framework/endings.csv",
                  "restricted/framework.xlsx",
                  "restricted/framework_counts.csv", "restricted/triangulation.csv"]}
    assert "restricted/framework.xlsx" in manifest["files"]
    assert not any("framework" in name or "triangulation" in name
                   for name in manifest["files"] if not name.startswith("restricted/"))
    document = docx.Document(str(written.out / "report.docx"))
    paragraphs = [p.text for p in document.paragraphs]
    assert paragraphs.count(SAID_HEADING) == 3
    assert "All practitioners talked about caseloads (workers' caseloads)." in paragraphs
    assert "“Caseloads are too high.” — Practitioner 1 (practitioner)" in paragraphs
    body = "\n".join(paragraphs)
    assert "Tamsin" not in body and "Rowan" not in body and "not been analysed yet" not in body
    for path in (written.out / "publication").rglob("*"):
        body_bytes = path.read_bytes()
        assert b"Jade" not in body_bytes and b"Caseloads are too high" not in body_bytes

    # a demo (simulated responses): every qualitative part is labelled as simulated
    demo = replace(context, simulated_responses=True, qualitative=framework.report)
    page = render_report(analysis, publication, [], {}, demo)
    assert page.count('<p class="demo-label" role="note"><strong>Simulated data (demo)') == 3
    for rq in ("1c", "2a", "2c"):
        assert "Simulated data (demo)" in _section(page, f"rq-{rq}")
    write_docx(tmp_path / "demo.docx", analysis, publication, [], {}, demo)
    paragraphs = [p.text for p in docx.Document(str(tmp_path / "demo.docx")).paragraphs]
    assert sum(p.startswith("Simulated data (demo)") for p in paragraphs) == 3

    # not analysed (no coded segments): today's text, no qualitative part, no framework files
    pending = build_framework(QualitativeData(NO_SEGMENTS), 60)
    page = render_report(analysis, publication, [], {}, replace(context, qualitative=pending.report))
    assert page.count("qualitative strand, which has not been analysed yet") == 4
    assert SAID_HEADING not in page and 'id="qualitative-method"' not in page
    assert write_framework(tmp_path / "pending", pending) == []
    assert not (tmp_path / "pending").exists()
    assert qualitative_entry(pending) == {"status": NO_SEGMENTS, "themes": 0, "coded_segments": 0,
                                          "files": []}


def test_not_analysed_without_segments_or_key(sqlite_runtime: Runtime) -> None:
    add_qualitative(sqlite_runtime, Options(segments=False))
    key = sqlite_runtime.secrets.key_if_any(TRANSCRIPT_KEY)
    with sqlite_runtime.engine.connect() as conn:
        assert load_qualitative(conn, sqlite_runtime.cluster, key).status == NO_SEGMENTS
    with sqlite_runtime.engine.begin() as conn:
        _insert(conn, "qual_segments", {
            "cluster_id": sqlite_runtime.cluster, "coding_sha256": CODING, "selection_id": "x",
            "session_id": "FI-01", "turn_no": 2, "participant_id": "F01", "theme": "Access",
            "subtheme": "Waiting", "start_cp": 0, "end_cp": 3})
    with sqlite_runtime.engine.connect() as conn:
        # segments but no transcript key: still not analysed
        no_key = load_qualitative(conn, sqlite_runtime.cluster, None)
        assert no_key.status == NO_KEY
        assert build_framework(no_key, 60).report.analysed is False
        assert load_qualitative(conn, sqlite_runtime.cluster, key).status == ANALYSED
        assert load_qualitative(conn, "other-cluster", key).status == NO_SEGMENTS


def test_codebook_order_file(tmp_path: Path) -> None:
    path = tmp_path / "codebook.csv"
    path.write_text("\ufefftheme,subtheme,research_question,description\nB,,1c,x\nB,b2,1c,y\nA,a1,2a,z\n",
                    encoding="utf-8")
    assert read_codebook_order(path) == (("B", ""), ("B", "b2"), ("A", "a1"))
    assert read_codebook_order(tmp_path / "missing.csv") == ()
    assert read_codebook_order(None) == ()


def test_analyse_command_writes_the_framework(sqlite_runtime: Runtime, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, prefect_harness: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from test_analysis import base_study

    from cli.main import main

    with sqlite_runtime.engine.begin() as conn:
        base_study().insert(conn)
    add_qualitative(sqlite_runtime, Options(survey=False))
    codebook = tmp_path / "codebook.csv"
    codebook.write_text("theme,subtheme,research_question,description\n"
                        + "".join(f"{t},{s},{rq},{d}\n" for t, s, rq, d, origin in CODES
                                  if origin == "codebook").replace("workers' caseloads", "caseloads"),
                        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(sqlite_runtime.settings.home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_runtime.settings.database)
    monkeypatch.setenv("CLUSTER_EVAL_QUALITATIVE__CODEBOOK", str(codebook))
    monkeypatch.setenv("CLUSTER_EVAL_QUALITATIVE__MAX_QUOTE_WORDS", "8")
    out = tmp_path / "analysis"
    assert main(["analyse", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "qualitative strand: 4 themes, 14 coded segments (Framework matrices in restricted/)" in printed
    restricted = out / "restricted"
    assert read_csv(restricted / "framework" / "relationships.csv") == EXPECTED_RELATIONSHIPS
    assert read_csv(restricted / "framework_counts.csv") == EXPECTED_COUNTS
    assert [row[:2] for row in read_csv(restricted / "triangulation.csv")] == [
        ["pseudonym", "stratum"], ["Jade", ""], ["Ash", ""]]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "“She came to the house. … Then things got …”" in page
    with sqlite_runtime.engine.connect() as conn:
        details = json.loads(conn.execute(text(
            "SELECT details FROM audit_log WHERE event = 'analysis_written'")).scalar_one())
    assert details["qualitative"] == "analysed" and details["coded_segments"] == 14
