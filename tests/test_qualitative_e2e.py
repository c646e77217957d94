"""The qualitative strand end to end through ``cluster-eval`` (issue 11, "Done when", first point).

One study is prepared once for the module (in-process CLI, the Prefect test harness): a synthetic
extract ingested, wave 1 drawn, responses imported (every respondent opted in to an interview),
then the synthetic qualitative corpus (tasks.demo.qualitative) registered with those tokens →
``participants import`` → ``transcripts import`` (docx, txt, vtt) → ``transcripts redact`` →
``transcripts approve`` (each session) → ``coding export`` → coded as a QDA tool would
(tasks.demo.qdpx_coder) → ``coding import`` → ``analyse``. The tests compare the restricted
matrices, counts and triangulation EXACTLY with the test's own expectation, computed here from
the coded project's selections and the stored de-identified turns (read back with the
transcript key). A second module fixture then withdraws a family participant who was coded and
quoted: ``status --json`` lists the first analysis as stale, and the next ``analyse`` leaves that
participant out of every output.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from qualitative_support import (
    FAM,
    PASS,
    PRAC,
    Piece,
    Project,
    QualStudy,
    add_selections,
    csv_rows,
    expected_counts,
    expected_excerpts,
    expected_pieces,
    ingest_and_survey,
    new_study,
    private_file,
    read_key,
    read_project,
    stale_paths,
    text_of_outputs,
    xlsx_layout,
    xlsx_sheets,
)
from sqlalchemy import text

from tasks.qualitative.model import Participant, Turn, export_text, load_participants, load_turns, text_sha256

pytestmark = pytest.mark.e2e

CORPUS_SEED = 2021
CODER_SEED = 11
SURVEY_ANSWERS = ("q1_life_satisfaction", "q2_worthwhile", "q3_happy_yesterday", "q4_anxious_yesterday",
                  "q5_child_wellbeing", "q6_parenting_confidence", "q7_help_with_difficulties",
                  "q8_worker_relationship", "q9_negative_effects", "q10_interview_opt_in")


@dataclass
class Analysed:
    """One ``analyse`` run and the state it was made from (read before anything changes)."""

    out: Path
    files: dict[str, bytes]  # path relative to out -> bytes
    turns: list[Turn]
    participants: list[Participant]
    segments: list[tuple[Any, ...]]
    pieces: list[Piece]


@dataclass
class Strand:
    study: QualStudy
    corpus: Any
    tokens: list[str]
    results: dict[str, Any]  # each command's --json result
    exported: bytes
    coded: bytes
    project: Project  # the coded project
    session_of: dict[str, str]  # TextSource GUID -> session_id
    sessions: list[dict[str, Any]]  # qual_sessions rows after the export
    turn_offsets: dict[tuple[str, int], tuple[int, int]]  # export_start/export_end per stored turn
    codes: list[tuple[str, str, str]]  # qual_codes (theme, subtheme, origin)
    survey: dict[str, dict[str, Any]]  # token -> stratum and answers
    first: Analysed


def _analysed(study: QualStudy, out: Path, project: Project, session_of: dict[str, str],
              coded_turns: list[Turn] | None = None) -> Analysed:
    study.cli("analyse", "--out", out)
    engine = study.engine()
    try:
        with engine.connect() as conn:
            turns = load_turns(conn, read_key(study.home, "transcript_key"), "pilot")
            participants = load_participants(conn, "pilot")
            segments = [tuple(r) for r in conn.execute(text(
                "SELECT selection_id, session_id, turn_no, participant_id, theme, subtheme, start_cp, end_cp"
                " FROM qual_segments WHERE cluster_id = 'pilot'"))]
    finally:
        engine.dispose()
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    return Analysed(out, files, turns, participants, segments,
                    expected_pieces(project, session_of, turns, coded_turns))


def _span_three_turns(coded: bytes, study: QualStudy) -> bytes:
    """One more selection, as a coder drags over three turns where one participant speaks twice.

    (The demo coder's drags cross two turns of different speakers; this one gives an excerpt of two
    pieces joined with " … " and a reference ``[SESSION La–b]``.)
    """
    engine = study.engine()
    try:
        with engine.connect() as conn:
            turns = load_turns(conn, read_key(study.home, "transcript_key"), "pilot")
            guids: dict[str, str] = dict(conn.execute(text("SELECT session_id, export_guid FROM qual_sessions"
                                           " WHERE cluster_id = 'pilot'")).all())
    finally:
        engine.dispose()
    for session in sorted(guids):
        mine = sorted((t for t in turns if t.session_id == session), key=lambda t: t.turn_no)
        _, offsets = export_text(mine)
        for i in range(len(mine) - 2):
            if mine[i].participant_id and mine[i].participant_id == mine[i + 2].participant_id:
                project = read_project(coded)
                code = next(g for g, c in project.codes.items() if c[1])
                return add_selections(coded, [(guids[session], offsets[i][0] + 1, offsets[i + 2][1], code)])
    raise AssertionError("no participant speaks twice within three turns")


def build_strand(root: Path, database_url: str | None = None) -> Strand:
    """Everything up to the first ``analyse``, and what the checks need read back."""
    from tasks.demo.qdpx_coder import code_project
    from tasks.demo.qualitative import codebook_csv, deny_list_csv, encrypted_delivery, make_corpus, register_csv

    study = new_study(root, database_url)
    tokens = ingest_and_survey(study)
    corpus = make_corpus(CORPUS_SEED, survey_tokens=tokens)
    config = study.root / "config"
    config.mkdir()
    study.env["CLUSTER_EVAL_QUALITATIVE__CODEBOOK"] = str(private_file(config / "codebook.csv",
                                                                       codebook_csv(corpus)))
    study.env["CLUSTER_EVAL_QUALITATIVE__DENY_LIST"] = str(private_file(config / "deny-list.csv",
                                                                        deny_list_csv(corpus)))
    results: dict[str, Any] = {}
    register = study.inbox / "register.zip"
    register.write_bytes(encrypted_delivery({"participants.csv": register_csv(corpus)}, PASS))
    results["participants"] = study.cli("participants", "import", register, "--json").json()
    bundle = study.inbox / "transcripts.zip"
    bundle.write_bytes(encrypted_delivery(corpus.transcripts, PASS))
    results["transcripts"] = study.cli("transcripts", "import", bundle, "--json").json()
    results["retried"] = [study.cli("participants", "import", register, "--json").json()["status"],
                          study.cli("transcripts", "import", bundle, "--json").json()["status"]]
    sessions = sorted(name.rsplit(".", 1)[0] for name in corpus.transcripts)
    results["redact"] = study.cli("transcripts", "redact", sessions[0], "--json").json()
    results["approve"] = {s: study.cli("transcripts", "approve", s, "--json").json() for s in sessions}
    exported_path = study.root / "coding" / "project.qdpx"
    exported_path.parent.mkdir()
    results["export"] = study.cli("coding", "export", "--out", exported_path, "--json").json()
    exported = exported_path.read_bytes()
    coded = _span_three_turns(code_project(exported, CODER_SEED), study)
    coded_path = study.inbox / "coded.qdpx"
    coded_path.write_bytes(coded)
    results["import"] = study.cli("coding", "import", coded_path, "--json").json()
    results["import_again"] = study.cli("coding", "import", coded_path, "--json").json()

    engine = study.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM qual_sessions WHERE cluster_id = 'pilot'"
                                     " ORDER BY session_id")).mappings().all()
            offsets = {(r.session_id, r.turn_no): (r.export_start, r.export_end) for r in conn.execute(text(
                "SELECT session_id, turn_no, export_start, export_end FROM qual_turns WHERE cluster_id = 'pilot'"))}
            codes = [tuple(r) for r in conn.execute(text(
                "SELECT theme, subtheme, origin FROM qual_codes WHERE cluster_id = 'pilot' ORDER BY theme, subtheme"))]
            survey = {r["token"]: dict(r) for r in conn.execute(text(
                "SELECT h.token, h.stratum, " + ", ".join(f"r.{q}" for q in SURVEY_ANSWERS)
                + " FROM households h JOIN responses r ON r.cluster_id = h.cluster_id AND r.token = h.token"
                " WHERE h.cluster_id = 'pilot'")).mappings()}
    finally:
        engine.dispose()
    project = read_project(coded)
    session_of = {r["export_guid"]: r["session_id"] for r in rows}
    first = _analysed(study, study.root / "analysis-1", project, session_of)
    return Strand(study, corpus, tokens, results, exported, coded, project, session_of,
                  [dict(r) for r in rows], offsets, codes, survey, first)


# --------------------------------------------------------------------------- intake


def check_register_and_transcripts_are_stored_as_delivered(strand: Strand) -> None:
    rows = strand.corpus.register_rows
    families = [r for r in rows if r["strand"] == FAM]
    assert strand.results["participants"] == {
        **strand.results["participants"], "status": "imported", "participants": len(rows),
        "sessions": len({r["session_id"] for r in rows}), "families": len(families),
        "practitioners": len(rows) - len(families), "withdrawn": sum(1 for r in rows if r.get("withdrawn_date"))}
    assert strand.results["retried"] == ["duplicate", "duplicate"]  # the same delivery again changes nothing
    participants = {p.participant_id: p for p in strand.first.participants}
    assert set(participants) == {r["participant_id"] for r in rows}
    linked = {r["participant_id"]: r["survey_token"] for r in rows if r.get("survey_token")}
    assert linked and set(linked.values()) <= set(strand.tokens)
    assert {pid: participants[pid].survey_token for pid in linked} == linked

    formats = {s["session_id"]: s["source_format"] for s in strand.sessions}
    assert formats == {name.rsplit(".", 1)[0]: name.rsplit(".", 1)[1] for name in strand.corpus.transcripts}
    assert set(formats.values()) == {"docx", "txt", "vtt"}
    assert strand.results["transcripts"]["sessions"] == len(formats)
    assert strand.results["transcripts"]["turns"] == len(strand.first.turns)
    assert all(s["approved_at"] for s in strand.sessions)
    assert all(s["turns"] == sum(1 for t in strand.first.turns if t.session_id == s["session_id"])
               for s in strand.sessions)
    # replacements by kind (counts only) cover every planted kind; the review lists are restricted files
    kinds = set(strand.results["transcripts"]["replacements"])
    assert {"name", "other_name", "email", "phone", "postcode", "date", "nhs_number", "url"} <= kinds
    assert {k for k in kinds if k.startswith("deny")}
    review = strand.study.home / "restricted" / "review"
    for row in strand.sessions:
        listed = review / f"{row['session_id']}.csv"
        assert listed.stat().st_mode & 0o077 == 0
        assert len(csv_rows(listed)) == row["review_entries"] == row["approved_review_entries"]


def check_nothing_planted_survives_de_identification(strand: Strand) -> None:
    """Every identifier the generator planted (names, schools, e-mails, phones...) is gone from the store."""
    stored = "\n".join(t.words for t in strand.first.turns).lower()
    planted = strand.corpus.planted
    assert {p.kind for p in planted} >= {"name", "other_name", "deny", "email", "phone", "postcode", "date"}
    left = sorted({(p.session_id, p.kind) for p in planted if p.text.lower() in stored})
    assert left == []
    for row in strand.corpus.register_rows:  # every name word of the register
        names = [row["full_name"], *row.get("other_names", "").split(";")]
        for word in {w for n in names for w in n.split() if len(w) > 2}:
            assert not re.search(rf"\b{re.escape(word.lower())}\b", stored), row["participant_id"]


# --------------------------------------------------------------------------- coding round trip


def check_export_is_valid_refi_qda_with_the_stored_text(strand: Strand) -> None:
    import xmlschema

    exported = read_project(strand.exported)
    schema = xmlschema.XMLSchema(str(Path(__file__).parents[1] / "schemas" / "refi-qda-project.xsd"))
    schema.validate(exported.members["project.qde"].decode("utf-8"))
    assert sorted(exported.sources.values()) and set(exported.sources) == set(strand.session_of)
    by_session: dict[str, list[Turn]] = {}
    for turn in strand.first.turns:
        by_session.setdefault(turn.session_id, []).append(turn)
    for row in strand.sessions:
        plain, offsets = export_text(by_session[row["session_id"]])
        assert exported.texts[row["export_guid"]] == plain
        assert row["export_sha256"] == text_sha256(plain)
        stored = [strand.turn_offsets[(row["session_id"], t.turn_no)] for t in by_session[row["session_id"]]]
        assert stored == offsets
    assert exported.selections == []
    assert strand.results["export"]["sessions"] == len(strand.sessions)
    # participants are cases (no personal data anywhere in the project)
    assert strand.results["export"]["cases"] == len(strand.corpus.register_rows)
    everything = b"\n".join(exported.members.values()).decode("utf-8", errors="replace")
    for row in strand.corpus.register_rows:
        for name in [row["full_name"], *[n for n in row["other_names"].split(";") if n]]:
            assert name not in everything, row["participant_id"]


def check_coding_import_maps_selections_to_turns_exactly(strand: Strand) -> None:
    from tasks.demo.qdpx_coder import expected_segments

    pieces = strand.first.pieces
    mine = sorted((p.selection, p.session, p.turn_no, p.participant, p.theme, p.subtheme, p.start, p.end)
                  for p in pieces)
    assert sorted(strand.first.segments) == mine
    assert len(mine) > 20 and len({p.participant for p in pieces}) > 5
    # the coder's own reading of its selections agrees with this test's
    theirs = sorted(tuple(e) for e in expected_segments(strand.coded))
    assert sorted((p.session, p.turn_no, p.theme, p.subtheme, p.speaker, p.start, p.end) for p in pieces) == theirs
    assert any(p.participant is None for p in pieces)  # research-team turns are coded too (kept out of matrices)
    result = strand.results["import"]
    assert result["status"] == "imported" and result["segments"] == len(mine)
    assert result["selections"] == len(strand.project.selections)
    assert result["codes_added"] == 1 and result["sessions"] == len(strand.sessions)
    assert strand.results["import_again"]["status"] == "duplicate"
    codebook = {(c[0], c[1]) for c in strand.codes if c[2] == "codebook"}
    added = {(c[0], c[1]) for c in strand.codes if c[2] == "coding"}
    assert len(added) == 1 and not added & codebook and added <= set(strand.project.codes.values())
    assert {(r["theme"], r["subtheme"]) for r in strand.corpus.codebook_rows} <= codebook


# --------------------------------------------------------------------------- matrices, counts, triangulation
#
# The expectation follows the spec (qualitative-v1.md §5) and the conventions documented in
# tasks/analysis/framework.py where the spec leaves a choice: rows = every participant who has not
# withdrawn (family participants first, then practitioners, each by participant_id); columns = the
# theme's subthemes in codebook order, then codes added while coding (alphabetical), then "(theme)"
# when text was coded to the theme itself; excerpts in a cell separated by a line break; CSV cells
# that would start a formula get a leading "'".

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _slug(theme: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", theme.lower()).strip("-") or "theme"


def _columns(strand: Strand, analysed: Analysed) -> dict[str, list[str]]:
    """theme -> its matrix columns as subthemes ('' = the theme itself), in order."""
    themes: dict[str, list[str]] = {}
    for row in strand.corpus.codebook_rows:
        themes.setdefault(row["theme"], [])
        if row["subtheme"]:
            themes[row["theme"]].append(row["subtheme"])
    for theme, subtheme, origin in sorted(strand.codes):
        if origin == "coding" and subtheme and subtheme not in themes.setdefault(theme, []):
            themes[theme].append(subtheme)
    for theme, columns in themes.items():
        if any(p.theme == theme and not p.subtheme for p in analysed.pieces):
            columns.append("")
    return themes


def _active(analysed: Analysed) -> list[Participant]:
    return sorted((p for p in analysed.participants if not p.withdrawn),
                  key=lambda p: (0 if p.strand == FAM else 1, p.participant_id))


def _expected_matrix(analysed: Analysed, theme: str, columns: list[str]) -> list[dict[str, str]]:
    cells = expected_excerpts(analysed.pieces)
    rows = []
    for p in _active(analysed):
        row = {"pseudonym": p.display_name, "strand": p.strand, "role": p.role}
        for sub in columns:
            row[sub or "(theme)"] = "\n".join(cells.get((p.participant_id, theme, sub), []))
        rows.append(row)
    return rows


def _assert_matrices(strand: Strand, analysed: Analysed) -> None:
    themes = _columns(strand, analysed)
    assert sorted(k for k in analysed.files if k.startswith("restricted/framework/")) == sorted(
        f"restricted/framework/{_slug(t)}.csv" for t in themes)
    sheets = xlsx_sheets(analysed.out / "restricted" / "framework.xlsx")
    assert list(sheets) == [t[:31] for t in themes]
    filled = 0
    for theme, columns in themes.items():
        expected = _expected_matrix(analysed, theme, columns)
        got = csv_rows(analysed.out / "restricted" / "framework" / f"{_slug(theme)}.csv")
        assert [list(r) for r in got[:1]] == [list(r) for r in expected[:1]], theme  # header, in order
        assert got == [{k: _neutral(v) for k, v in r.items()} for r in expected], theme
        assert sheets[theme[:31]] == expected, theme
        filled += sum(1 for r in expected for k, v in r.items() if v and k not in ("pseudonym", "strand", "role"))
    assert filled > 10


def check_framework_matrices_are_exact(strand: Strand) -> None:
    _assert_matrices(strand, strand.first)
    # the excerpts join the pieces of a selection that spans turns, and references name lines
    cells = "\n".join(e for v in expected_excerpts(strand.first.pieces).values() for e in v)
    assert re.search(r"\[F[IG]-\d+ L\d+\]", cells) and re.search(r"\[F[IG]-\d+ L\d+\u2013\d+\]", cells)


def check_framework_workbook_wraps_text_and_freezes_the_header(strand: Strand) -> None:
    layout = xlsx_layout(strand.first.out / "restricted" / "framework.xlsx")
    assert list(layout) == [t[:31] for t in _columns(strand, strand.first)]
    assert set(layout.values()) == {("B2", True)}


def _expected_counts(strand: Strand, analysed: Analysed) -> list[dict[str, str]]:
    strand_of = {p.participant_id: p.strand for p in _active(analysed)}
    pieces = [p for p in analysed.pieces if p.participant in strand_of]
    out = []
    for theme, columns in _columns(strand, analysed).items():
        counts = expected_counts(pieces, strand_of, [(theme, sub) for sub in columns])
        for sub in columns:
            fam, prac, segments = counts[(theme, sub)]
            out.append({"theme": theme, "subtheme": sub or "(theme)", "family_participants": str(fam),
                        "practitioners": str(prac), "segments": str(segments)})
    return out


def check_framework_counts_are_exact(strand: Strand) -> None:
    got = csv_rows(strand.first.out / "restricted" / "framework_counts.csv")
    assert got == _expected_counts(strand, strand.first)
    assert sum(int(r["segments"]) for r in got) == sum(1 for p in strand.first.pieces if p.participant)


def _answer(question: str, value: Any) -> str:
    if value is None:
        return ""
    if question in ("q9_negative_effects", "q10_interview_opt_in"):
        return "Y" if value else "N"
    return str(int(value))


def _expected_triangulation(strand: Strand, analysed: Analysed) -> list[dict[str, str]]:
    themes = list(_columns(strand, analysed))
    coded = {(p.participant, p.theme) for p in analysed.pieces}
    out = []
    for p in _active(analysed):
        if not p.is_family or not p.survey_token:
            continue
        answers = strand.survey.get(p.survey_token)
        row = {"pseudonym": p.display_name, "stratum": answers["stratum"] if answers else ""}
        row |= {q: _answer(q, answers[q]) if answers else "" for q in SURVEY_ANSWERS}
        row |= {theme: "Y" if (p.participant_id, theme) in coded else "N" for theme in themes}
        out.append(row)
    return out


def check_triangulation_rows_are_exact(strand: Strand) -> None:
    got = csv_rows(strand.first.out / "restricted" / "triangulation.csv")
    expected = _expected_triangulation(strand, strand.first)
    assert len(expected) == sum(1 for r in strand.corpus.register_rows if r["survey_token"]) >= 5
    assert [list(r) for r in got[:1]] == [list(r) for r in expected[:1]]
    assert got == expected
    assert {r["q10_interview_opt_in"] for r in got} == {"Y"}
    assert any(v == "N" for r in got for v in r.values()) and any(r["q1_life_satisfaction"] for r in got)


def _attributions(participant: Participant) -> list[str]:
    """How the report attributes a quote (tasks.analysis.framework.Quote.attribution)."""
    noun = "family participant" if participant.is_family else "practitioner"
    return [f"{participant.display_name} ({noun})"]


def check_report_says_what_families_and_practitioners_said(strand: Strand) -> None:
    html = strand.first.files["report.html"].decode("utf-8")
    assert html.count("What families and practitioners said") >= 2
    docx_text = text_of_outputs(strand.first.out)[str(strand.first.out / "report.docx") + "!word/document.xml"]
    assert "What families and practitioners said" in docx_text
    assert "not been analysed yet" not in html
    refused = [p for p in strand.first.participants if not p.consent_quotes]
    assert refused and not [a for p in refused for a in _attributions(p) if a in html]
    quoted = [p for p in strand.first.participants if p.consent_quotes and _attributions(p)[0] in html]
    assert len(quoted) >= 3 and {p.strand for p in quoted} == {FAM, PRAC}


# --------------------------------------------------------------------------- withdrawal mid-analysis


@dataclass
class Withdrawn:
    participant: Participant
    status_before: dict[str, Any]
    status_after: dict[str, Any]
    result: dict[str, Any]
    second: Analysed
    status_end: dict[str, Any]


def _quoted_family_participant(strand: Strand) -> Participant:
    """A family participant who was coded and quoted, preferably one nobody else names."""
    html = strand.first.files["report.html"].decode("utf-8")
    coded = {p.participant for p in strand.first.pieces}
    candidates = [p for p in strand.first.participants
                  if p.is_family and p.consent_quotes and p.participant_id in coded
                  and _attributions(p)[0] in html and p.survey_token]
    assert candidates, "no family participant was both coded and quoted in the first report"

    def named_by_others(p: Participant) -> bool:
        return any(p.display_name in t.words for t in strand.first.turns if t.participant_id != p.participant_id)

    return sorted(candidates, key=lambda p: (named_by_others(p), p.participant_id))[0]


def withdraw_and_reanalyse(strand: Strand) -> Withdrawn:
    """``status``, ``participants withdraw``, ``status``, ``analyse`` again, ``status``."""
    study = strand.study
    who = _quoted_family_participant(strand)
    before = study.cli("status", "--json").json()
    result = study.cli("participants", "withdraw", who.participant_id, "--json").json()
    after = study.cli("status", "--json").json()
    second = _analysed(study, study.root / "analysis-2", strand.project, strand.session_of, strand.first.turns)
    end = study.cli("status", "--json").json()
    return Withdrawn(who, before, after, result, second, end)


def check_status_lists_the_earlier_analysis_as_stale(strand: Strand, withdrawn: Withdrawn) -> None:
    first = str(strand.first.out.resolve())
    assert first not in stale_paths(withdrawn.status_before)
    assert first in stale_paths(withdrawn.status_after)
    exported = str((strand.study.root / "coding" / "project.qdpx").resolve())
    assert exported in stale_paths(withdrawn.status_after)
    assert str(withdrawn.second.out.resolve()) not in stale_paths(withdrawn.status_end)


def check_withdrawal_result_counts(strand: Strand, withdrawn: Withdrawn) -> None:
    pid = withdrawn.participant.participant_id
    assert withdrawn.result["status"] == "withdrawn"
    assert withdrawn.result["turns_withdrawn"] == sum(1 for t in strand.first.turns if t.participant_id == pid)
    assert withdrawn.result["segments_deleted"] == sum(1 for s in strand.first.segments if s[3] == pid)
    turns = [t for t in withdrawn.second.turns if t.participant_id == pid]
    assert turns and all(t.withdrawn and t.words == "[withdrawn]" for t in turns)
    assert all(s[3] != pid for s in withdrawn.second.segments)
    assert [p.withdrawn for p in withdrawn.second.participants if p.participant_id == pid] == [True]


def check_withdrawn_participant_is_absent_from_every_output(strand: Strand, withdrawn: Withdrawn) -> None:
    who = withdrawn.participant
    second = withdrawn.second
    assert all(p.participant != who.participant_id for p in second.pieces)
    _assert_matrices(strand, second)
    for name in sorted(k for k in second.files if k.startswith("restricted/framework/")):
        assert who.display_name not in {r["pseudonym"] for r in csv_rows(second.out / name)}
    assert csv_rows(second.out / "restricted" / "framework_counts.csv") == _expected_counts(strand, second)
    assert csv_rows(strand.first.out / "restricted" / "framework_counts.csv") != _expected_counts(strand, second)
    triangulation = csv_rows(second.out / "restricted" / "triangulation.csv")
    assert triangulation == _expected_triangulation(strand, second)
    assert who.display_name not in {r["pseudonym"] for r in triangulation}
    assert len(triangulation) == len(csv_rows(strand.first.out / "restricted" / "triangulation.csv")) - 1

    # Their excerpts (and their pseudonym, unless someone else says it) were in the first outputs, in none
    # of the second: matrices, counts, triangulation, report (HTML, Word), workbooks, manifest.
    others = "\n".join(t.words for t in second.turns if t.participant_id != who.participant_id)
    theirs = [p.words.strip() for p in strand.first.pieces if p.participant == who.participant_id
              and len(p.words.strip()) >= 25 and p.words.strip() not in others]  # (the bank repeats sentences)
    first_text = text_of_outputs(strand.first.out)
    assert theirs and who.display_name in "\n".join(first_text.values())
    assert [a for a in _attributions(who) if a in first_text[str(strand.first.out / "report.html")]]
    named = any(who.display_name in t.words for t in second.turns if t.participant_id != who.participant_id)
    second_text = text_of_outputs(second.out)
    for member in ("report.docx!word/document.xml", "restricted/framework.xlsx!xl/sharedStrings.xml",
                   "manifest.json", "report.html"):
        assert any(k.endswith(member) for k in second_text), member
    assert any("analysis.xlsx!" in k for k in second_text)
    for where, content in second_text.items():
        assert not [a for a in _attributions(who) if a in content], where
        assert not [w for w in theirs if w in content], where
        if not named:
            assert who.display_name not in content, where


def check_second_analysis_still_has_the_others(strand: Strand, withdrawn: Withdrawn) -> None:
    kept = {p.participant for p in withdrawn.second.pieces if p.participant}
    before = {p.participant for p in strand.first.pieces if p.participant}
    assert kept == before - {withdrawn.participant.participant_id}
    assert {p.strand for p in withdrawn.second.participants if p.participant_id in kept} == {FAM, PRAC}


def check_cli_results_name_no_one(strand: Strand) -> None:
    """What the commands printed holds no name from the register."""
    printed = "\n".join(strand.study.printed)
    for row in strand.corpus.register_rows:
        for name in [row["full_name"], *[n for n in row.get("other_names", "").split(";") if n]]:
            assert name not in printed, row["participant_id"]


# --------------------------------------------------------------------------- the test

BEFORE: list[Callable[[Strand], None]] = [
    check_register_and_transcripts_are_stored_as_delivered, check_nothing_planted_survives_de_identification,
    check_export_is_valid_refi_qda_with_the_stored_text, check_coding_import_maps_selections_to_turns_exactly,
    check_framework_matrices_are_exact, check_framework_workbook_wraps_text_and_freezes_the_header,
    check_framework_counts_are_exact, check_triangulation_rows_are_exact,
    check_report_says_what_families_and_practitioners_said,
]
AFTER: list[Callable[[Strand, Withdrawn], None]] = [
    check_status_lists_the_earlier_analysis_as_stale, check_withdrawal_result_counts,
    check_withdrawn_participant_is_absent_from_every_output, check_second_analysis_still_has_the_others,
]


def _failure(check: Callable[..., None], *args: Any) -> str | None:
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001 - every check runs; all failures are reported together
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{check.__name__} (line {where.lineno}): {type(exc).__name__}: {exc}"
    return None


def test_qualitative_strand_end_to_end(prefect_harness: None, tmp_path: Path, database_url: str) -> None:
    """The whole strand, then a withdrawal mid-analysis; every check runs and failures are listed together.

    On both backends (SQLite, PostgreSQL). One test function, not one per check: pytest-xdist
    would otherwise split the checks across workers and prepare the study, two ``analyse`` runs
    included, on each.
    """
    strand = build_strand(tmp_path / "study", database_url)
    failures = [_failure(check, strand) for check in BEFORE]
    failures.append(_failure(check_cli_results_name_no_one, strand))
    withdrawn = withdraw_and_reanalyse(strand)
    failures += [_failure(check, strand, withdrawn) for check in AFTER]
    failures.append(_failure(check_cli_results_name_no_one, strand))
    found = [f for f in failures if f]
    assert not found, "\n\n".join(found)
