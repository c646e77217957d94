"""Shared helpers of the qualitative strand's integration tests (e2e, privacy, rejections).

* ``QualStudy``: one private CLUSTER_EVAL_HOME with its environment (module-scoped tests cannot
  use ``monkeypatch``), and ``cli`` to run ``cluster-eval`` in-process, capturing stdout/stderr.
* ``ingest_and_survey``: a synthetic extract ingested, wave 1 drawn and responses imported (every
  respondent opted in to an interview), as the demo does; returns the opted-in tokens.
* A hand-written "marker corpus" (register + one transcript per format) whose every identifier
  is a unique ``Zqxmarker..`` string, for the privacy and rejection tests.
* Reading a QDPX project (sources, codes, selections) and adding selections as a QDA tool does.
* The test's own expectation of coded segments and framework matrices, from the QDPX's
  selections and the stored de-identified turns.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, text

PASS = "qualitative-test-passphrase-K4"  # noqa: S105 - test passphrase
QDA_NS = "urn:QDA-XML:project:1.0"
NS = {"q": QDA_NS}
QUAL_TABLES = ("qual_deliveries", "qual_participants", "qual_withdrawals", "qual_sessions", "qual_turns",
               "qual_codes", "qual_codings", "qual_segments")
EN_DASH = "\u2013"
ELLIPSIS_JOIN = " \u2026 "


# --------------------------------------------------------------------------- running the CLI


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class QualStudy:
    """A private state folder, the environment the CLI reads, and everything it printed."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "var"

    @property
    def inbox(self) -> Path:
        path = self.root / "inbox"
        path.mkdir(exist_ok=True)
        return path

    @property
    def db_path(self) -> Path:
        return self.home / "cluster-eval.db"

    def engine(self) -> Engine:
        return create_engine(self.env.get("CLUSTER_EVAL_DATABASE_URL") or f"sqlite:///{self.db_path}")

    def cli(self, *args: str | Path, expect: int | None = 0) -> CliResult:
        """Run ``cluster-eval ARGS`` in-process with this study's environment."""
        from cli.main import main

        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with env_applied(self.env, self.root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        result = CliResult(code, out.getvalue(), err.getvalue())
        self.timings.append((" ".join(str(a) for a in args[:2]), round(time.monotonic() - started, 2)))
        self.printed += [result.out, result.err]
        if expect is not None:
            assert code == expect, (args, code, result.err[-2000:])
        return result


@contextlib.contextmanager
def env_applied(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """Set CLUSTER_EVAL_* variables (removing any others) and the working folder for one call."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)  # no ./cluster-eval.toml there: built-in defaults + environment
        for name in [n for n in os.environ if n.startswith("CLUSTER_EVAL_") and not n.startswith("CLUSTER_EVAL_TEST_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        yield


def new_study(root: Path, database_url: str | None = None, **extra: str) -> QualStudy:
    """A study folder with its environment: the database (default: SQLite under home), extract passphrase."""
    root.mkdir(parents=True, exist_ok=True)
    study = QualStudy(root)
    study.env = {"CLUSTER_EVAL_HOME": str(study.home), "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS, **extra}
    if database_url:
        study.env["CLUSTER_EVAL_DATABASE_URL"] = database_url
    return study


def private_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def ingest_and_survey(study: QualStudy, families: int = 24, sample: int = 12, seed: int = 23) -> list[str]:
    """Ingest a synthetic extract, draw wave 1, import responses (all opted in); the opted-in tokens."""
    from tasks.demo.render import aes_zip, render_members
    from tasks.demo.survey_export import generate_survey_export, survey_export_csv
    from tasks.demo.synthetic import generate_tables

    extract = study.inbox / "extract.zip"
    extract.write_bytes(aes_zip(render_members(generate_tables(families, seed=seed)), PASS))
    study.cli("ingest", extract)
    drawn = study.cli("sample", "--wave", "1", "--size", str(sample), "--json").json()
    tokens = [h["token"] for h in drawn["households"]]
    export = generate_survey_export(tokens, seed=seed, response_rate=0.9)
    export = export.with_columns(pl.lit("Y").alias("q10_interview_opt_in"))
    responses = study.inbox / "SIMULATED-responses.csv"
    responses.write_bytes(survey_export_csv(export))
    study.cli("responses", "import", responses)
    return sorted(export.get_column("token").to_list())


# --------------------------------------------------------------------------- database snapshots


def table_fingerprints(engine: Engine, tables: Iterable[str] = QUAL_TABLES + ("stored_files",)
                       ) -> dict[str, tuple[int, str]]:
    """Row count and a hash of every row (sorted) per table: equal before/after = nothing stored."""
    out: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for table in tables:
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608 - fixed names
            digest = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
            out[table] = (len(rows), digest)
    return out


def read_key(home: Path, name: str) -> bytes:
    """A key the CLI created under HOME/keys (base64 in a 0600 file)."""
    return base64.urlsafe_b64decode((home / "keys" / name).read_bytes().strip())


# --------------------------------------------------------------------------- archives


def aes_members(members: Mapping[str, bytes], passphrase: str = PASS) -> bytes:
    from tasks.core.archive import aes_zip_bytes

    return aes_zip_bytes(members, passphrase)


def plain_zip(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def aes_renamed(members: Mapping[str, bytes], old: str, new: str) -> bytes:
    """An AES-256 ZIP with member ``old`` renamed to ``new`` in the headers (e.g. '../x')."""
    placeholder = "x" * len(new)
    assert placeholder.encode() not in b"".join(members.values())
    data = aes_members({placeholder if n == old else n: d for n, d in members.items()})
    return data.replace(placeholder.encode(), new.encode())


def zip_renamed(members: Mapping[str, bytes], old: str, new: str) -> bytes:
    """A plain ZIP with member ``old`` renamed to ``new`` in the headers."""
    placeholder = "x" * len(new)
    assert placeholder.encode() not in b"".join(members.values())
    data = rezip({placeholder if n == old else n: d for n, d in members.items()})
    return data.replace(placeholder.encode(), new.encode())


def unzip_all(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


# --------------------------------------------------------------------------- the marker corpus

MARKER = b"zqxmarker"  # every planted identifier starts with it (lower case); nothing else does


def _person(pid: str, strand: str, session: str, role: str, full: str, other: str, pseudonym: str,
            recording: str = "Y", quotes: str = "Y", token: str = "") -> dict[str, str]:
    date = {"FI-01": "2022-03-01", "FI-02": "2022-03-08", "FG-1": "2022-03-15"}[session]
    return {"participant_id": pid, "strand": strand, "session_id": session, "session_date": date,
            "role": role, "survey_token": token, "full_name": full, "other_names": other,
            "chosen_pseudonym": pseudonym, "consent_form_version": "v2.1", "info_sheet_version": "v1.3",
            "consent_date": "2022-02-20", "consent_recording": recording, "consent_quotes": quotes,
            "withdrawn_date": ""}


FAM, PRAC = "family_interview", "practitioner_focus_group"


def marker_register(tokens: Sequence[str] = ()) -> list[dict[str, str]]:
    """Eight participants, three sessions; every name field is a marker (F04 refused recording)."""
    tok = list(tokens) + [""] * 5
    return [
        _person("F01", FAM, "FI-01", "parent", "Zqxmarkeraa Zqxmarkerab", "Zqxmarkerac;Zqxmarkerad Zqxmarkerae",
                "Willow", token=tok[0]),
        _person("F02", FAM, "FI-01", "carer", "Zqxmarkerba Zqxmarkerbb", "Zqxmarkerbc", "Juniper", token=tok[1]),
        _person("F03", FAM, "FI-02", "grandparent", "Zqxmarkerca Zqxmarkercb", "Zqxmarkercc", "Heron",
                token=tok[2]),
        _person("F04", FAM, "FI-02", "parent", "Zqxmarkerda Zqxmarkerdb", "Zqxmarkerdc", "Kestrel",
                recording="N"),
        _person("F05", FAM, "FI-02", "other_adult", "Zqxmarkerea Zqxmarkereb", "", "Otter", quotes="N"),
        _person("P01", PRAC, "FG-1", "targeted_services_worker", "Zqxmarkerha Zqxmarkerhb", "Zqxmarkerhd",
                "Rowan"),
        _person("P02", PRAC, "FG-1", "manager", "Zqxmarkeria Zqxmarkerib", "", ""),
        _person("P03", PRAC, "FG-1", "therapist", "Zqxmarkerja Zqxmarkerjb", "Zqxmarkerjc", ""),
    ]


MARKER_DENY = [("Zqxmarkerfa Primary", "school"), ("Zqxmarkerfb", "street"), ("Zqxmarkerhc", "practitioner"),
               ("Zqxmarkerfc", "cluster")]

FI01_LINES = [  # docx paragraphs; the fourth has no label (continues the turn before)
    "Interviewer: Thank you both for coming today. How did you first hear about the service?",
    "Zqxmarkeraa Zqxmarkerab: My worker rang me after the school referred us. Zqxmarkerac was struggling "
    "at Zqxmarkerfa Primary and I was at the end of my tether with the mornings.",
    "It took a while but the mornings got calmer once we had a routine that worked for us.",
    "Zqxmarkerba: Same for us, really. My email was zqxmarkerga@example.org so they wrote to me first.",
    "Interviewer: What helped you most?",
    "F01: Having someone who listened without judging. Zqxmarkerad Zqxmarkerae's teacher noticed the "
    "difference too, and Zqxmarkeraa's own sleep got better.",
    "Zqxmarkerba Zqxmarkerbb: Zqxmarkerbc says the worker was kind. We live on Zqxmarkerfb near the park, "
    "so the group was easy to reach on foot.",
]
FI02_LINES = [
    "Facilitator: Welcome everyone, and thank you for coming along this morning.",
    "Zqxmarkerca: I started going in the spring. My grandson Zqxmarkercc loves the group at Zqxmarkerfa "
    "Primary and asks about it every week.",
    "Zqxmarkerea Zqxmarkereb: We were referred by the health visitor. Call me on 07700 900123 if you need "
    "anything else from me for the study.",
    "Facilitator: Is there anything that could have been better?",
    "F05: The waiting list was long, the page https://zqxmarkergb.example.org/waiting said six weeks.",
    "Zqxmarkerca Zqxmarkercb: For us the waiting was fine, and Zqxmarkercb is a name nobody here uses.",
]
FG1_CUES = [
    ("Researcher", "Thanks for joining this focus group about the family support model."),
    ("Zqxmarkerha Zqxmarkerhb", "Caseloads have been heavy since Zqxmarkerhc left the team at Zqxmarkerfc."),
    ("P02", "Families tell us the key worker model helps them. Zqxmarkerha agrees with that, I think."),
    ("Zqxmarkerja", "The training on trauma-informed practice was useful for the whole team."),
    ("Zqxmarkerja Zqxmarkerjb", "My partner Zqxmarkerjc says I talk about work too much at home."),
    ("P01", "Write to zqxmarkergc@council.example.org if the families want to know more."),
]


def docx_bytes(paragraphs: Sequence[str]) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def vtt_bytes(cues: Sequence[tuple[str, str]]) -> bytes:
    lines = ["WEBVTT", ""]
    for i, (speaker, words) in enumerate(cues):
        lines += [f"00:00:{i * 6:02d}.000 --> 00:00:{i * 6 + 5:02d}.500", f"<v {speaker}>{words}", ""]
    return "\n".join(lines).encode("utf-8")


def txt_bytes(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def marker_transcripts() -> dict[str, bytes]:
    return {"FI-01.docx": docx_bytes(FI01_LINES), "FI-02.txt": txt_bytes(FI02_LINES),
            "FG-1.vtt": vtt_bytes(FG1_CUES)}


CODEBOOK = [
    {"theme": "Access", "subtheme": "Referral route", "research_question": "1c",
     "description": "How families came to the service"},
    {"theme": "Access", "subtheme": "Waiting", "research_question": "1c",
     "description": "Waiting times and first contact"},
    {"theme": "Impact", "subtheme": "Child wellbeing", "research_question": "2b",
     "description": "Changes for the children"},
    {"theme": "Impact", "subtheme": "Parenting", "research_question": "2b",
     "description": "Changes in parenting and routines"},
    {"theme": "Delivery", "subtheme": "Workforce", "research_question": "1c",
     "description": "Caseloads, training, the team"},
]


def rows_csv(rows: Sequence[Mapping[str, str]], columns: Sequence[str] | None = None) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns or rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def rows_xlsx(rows: Sequence[Mapping[str, str]], sheet: str = "participants") -> bytes:
    """A workbook with one sheet of the rows (header row first), as a register delivery may be."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    page = book.add_worksheet(sheet)
    columns = list(rows[0])
    page.write_row(0, 0, columns)
    for i, row in enumerate(rows, start=1):
        page.write_row(i, 0, [row[c] for c in columns])
    book.close()
    return buf.getvalue()


def deny_csv(terms: Sequence[tuple[str, str]]) -> bytes:
    return ("term,tag\n" + "".join(f"{t},{g}\n" for t, g in terms)).encode("utf-8")


def configure_qualitative(study: QualStudy, codebook: bytes, deny: bytes) -> None:
    """Codebook and deny-list (0600, outside HOME: read in place) in the study's environment."""
    config = study.root / "config"
    config.mkdir(exist_ok=True)
    study.env["CLUSTER_EVAL_QUALITATIVE__CODEBOOK"] = str(private_file(config / "codebook.csv", codebook))
    study.env["CLUSTER_EVAL_QUALITATIVE__DENY_LIST"] = str(private_file(config / "deny-list.csv", deny))


# --------------------------------------------------------------------------- QDPX projects


@dataclass(frozen=True)
class Selection:
    guid: str
    source_guid: str
    start: int
    end: int
    codes: tuple[str, ...]  # code GUIDs


@dataclass
class Project:
    """What a QDPX holds, read with the standard library (the files are the test's own)."""

    codes: dict[str, tuple[str, str]]  # guid -> (theme, subtheme); subtheme '' for a top-level code
    sources: dict[str, str]  # TextSource guid -> name
    texts: dict[str, str]  # TextSource guid -> plain text
    selections: list[Selection]
    members: dict[str, bytes]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_project(qdpx: bytes) -> Project:
    import xml.etree.ElementTree as ET  # noqa: S405 - the test's own files (QDPX written by the CLI / coder)

    members = unzip_all(qdpx)
    root = ET.fromstring(members["project.qde"])  # noqa: S314
    codes: dict[str, tuple[str, str]] = {}

    def walk(node: ET.Element, theme: str | None) -> None:
        for code in node:
            if _local(code.tag) != "Code":
                continue
            name = code.get("name", "")
            codes[code.get("guid", "")] = (name, "") if theme is None else (theme, name)
            walk(code, name if theme is None else theme)

    for book in root.iter(f"{{{QDA_NS}}}Codes"):
        walk(book, None)
        break
    sources: dict[str, str] = {}
    texts: dict[str, str] = {}
    selections: list[Selection] = []
    for source in root.iter(f"{{{QDA_NS}}}TextSource"):
        guid = source.get("guid", "")
        sources[guid] = source.get("name", "")
        path = source.get("plainTextPath", "")
        if path.startswith("internal://"):
            texts[guid] = members["sources/" + path[len("internal://"):]].decode("utf-8")
        for sel in source.findall("q:PlainTextSelection", NS):
            refs = tuple(ref.get("targetGUID", "") for ref in sel.iter(f"{{{QDA_NS}}}CodeRef"))
            selections.append(Selection(sel.get("guid", ""), guid, int(sel.get("startPosition", "0")),
                                        int(sel.get("endPosition", "0")), refs))
    return Project(codes, sources, texts, selections, members)


def rezip(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def add_selections(qdpx: bytes, picks: Sequence[tuple[str, int, int, str]]) -> bytes:
    """Code a QDPX as a QDA tool would: (source guid, start, end, code guid) -> a PlainTextSelection."""
    from lxml import etree  # type: ignore[import-untyped]

    members = unzip_all(qdpx)
    root = etree.fromstring(members["project.qde"], etree.XMLParser(resolve_entities=False, no_network=True))
    q = f"{{{QDA_NS}}}"
    for source_guid, start, end, code_guid in picks:
        [source] = [s for s in root.iter(q + "TextSource") if s.get("guid") == source_guid]
        before = [c for c in source if etree.QName(c).localname in ("Description", "PlainTextContent",
                                                                    "PlainTextSelection")]
        sel = etree.Element(q + "PlainTextSelection", guid=str(uuid.uuid4()), name="selection",
                            startPosition=str(start), endPosition=str(end))
        coding = etree.SubElement(sel, q + "Coding", guid=str(uuid.uuid4()))
        etree.SubElement(coding, q + "CodeRef", targetGUID=code_guid)
        source.insert(source.index(before[-1]) + 1 if before else 0, sel)
    members["project.qde"] = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return rezip(members)


def code_guid(project: Project, theme: str, subtheme: str = "") -> str:
    return next(g for g, c in project.codes.items() if c == (theme, subtheme))


def coded_once(exported: bytes) -> bytes:
    """The exported project with one coded selection ("mornings got calmer": Impact / Parenting)."""
    project = read_project(exported)
    [(guid, plain)] = [(g, t) for g, t in project.texts.items() if "mornings got calmer" in t]
    start = plain.index("mornings got calmer")
    return add_selections(exported, [(guid, start, start + 19, code_guid(project, "Impact", "Parenting"))])


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Piece:
    selection: str
    session: str
    turn_no: int
    participant: str | None
    speaker: str  # participant_id or research-team label
    theme: str
    subtheme: str
    start: int  # code points within the turn's words
    end: int
    words: str  # the piece of text


def expected_pieces(project: Project, session_of: Mapping[str, str], turns: Sequence[Any],
                    coded_turns: Sequence[Any] | None = None) -> list[Piece]:
    """Every (selection, code, turn) overlap of a coded project, over the turns' words (not labels).

    ``session_of`` maps TextSource GUID -> session_id; ``coded_turns`` are the stored turns
    (model.Turn) as they were exported and coded (their text must be the project's), ``turns``
    the stored turns now: a turn withdrawn since gives no piece.
    """
    from tasks.qualitative.model import export_text

    def by_session(found: Sequence[Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for turn in sorted(found, key=lambda t: (t.session_id, t.turn_no)):
            out.setdefault(turn.session_id, []).append(turn)
        return out

    coded, now = by_session(coded_turns if coded_turns is not None else turns), by_session(turns)
    pieces: list[Piece] = []
    for sel in project.selections:
        session = session_of[sel.source_guid]
        plain, offsets = export_text(coded[session])
        assert plain == project.texts[sel.source_guid], "the coded text is not the stored turns' text"
        current = {t.turn_no: t for t in now[session]}
        for turn, (s, e) in zip(coded[session], offsets, strict=True):
            lo, hi = max(sel.start, s), min(sel.end, e)
            if lo >= hi or turn.withdrawn or current[turn.turn_no].withdrawn:
                continue
            words = " ".join(turn.words.split())
            for code in sel.codes:
                theme, subtheme = project.codes[code]
                pieces.append(Piece(sel.guid, session, turn.turn_no, turn.participant_id, turn.speaker, theme,
                                    subtheme, lo - s, hi - s, words[lo - s:hi - s]))
    return pieces


def reference(session: str, first: int, last: int) -> str:
    return f"[{session} L{first}]" if first == last else f"[{session} L{first}{EN_DASH}{last}]"


def expected_excerpts(pieces: Sequence[Piece]) -> dict[tuple[str, str, str], list[str]]:
    """(participant, theme, subtheme) -> the participant's excerpts, in transcript order.

    One excerpt per selection: the participant's pieces (stripped; empty ones left out) joined
    with " … ", then a space and its reference ``[SESSION Lfirst–last]``.
    """
    grouped: dict[tuple[str, str, str, str], list[Piece]] = {}
    for p in pieces:
        if p.participant is None:
            continue
        grouped.setdefault((p.participant, p.theme, p.subtheme, p.selection), []).append(p)
    cells: dict[tuple[str, str, str], list[tuple[tuple[str, int, int, str], str]]] = {}
    for (pid, theme, subtheme, selection), group in grouped.items():
        group.sort(key=lambda p: (p.session, p.turn_no, p.start))
        body = ELLIPSIS_JOIN.join(p.words.strip() for p in group if p.words.strip())
        if not body:
            continue
        excerpt = f"{body} {reference(group[0].session, group[0].turn_no, group[-1].turn_no)}"
        order = (group[0].session, group[0].turn_no, group[0].start, selection)
        cells.setdefault((pid, theme, subtheme), []).append((order, excerpt))
    return {k: [e for _, e in sorted(v)] for k, v in cells.items()}


def expected_counts(pieces: Sequence[Piece], strand_of: Mapping[str, str],
                    codes: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(theme, subtheme) -> (family participants, practitioners, segments) over participants' pieces."""
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    for theme, subtheme in codes:
        mine = [p for p in pieces if (p.theme, p.subtheme) == (theme, subtheme) and p.participant is not None]
        fam = {p.participant for p in mine if strand_of[p.participant or ""] == FAM}
        prac = {p.participant for p in mine if strand_of[p.participant or ""] == PRAC}
        out[(theme, subtheme)] = (len(fam), len(prac), len(mine))
    return out


# --------------------------------------------------------------------------- scanning


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file())


def blobs_of(path: Path) -> Iterator[tuple[str, bytes]]:
    """A file's bytes and, for a ZIP (xlsx, docx, qdpx), each member's bytes too."""
    data = path.read_bytes()
    yield str(path), data
    if data.startswith(b"PK\x03\x04"):
        try:
            for name, member in unzip_all(data).items():
                yield f"{path}!{name}", member
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError):  # encrypted: scanned as bytes
            pass


def marker_hits(roots: Sequence[Path], marker: bytes = MARKER) -> dict[str, int]:
    """Where the marker occurs (lower-cased bytes), file by file and ZIP member by member."""
    hits: dict[str, int] = {}
    for path in files_under(*roots):
        for where, blob in blobs_of(path):
            n = blob.lower().count(marker)
            if n:
                hits[where] = n
    return hits


def harness_database_folder() -> Path | None:
    """The folder of the Prefect test harness's SQLite database."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    if url.startswith("sqlite"):
        return Path(url.split(":///", 1)[1]).parent
    return None


def flush_prefect_logs() -> None:
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def xlsx_sheets(path: Path) -> dict[str, list[dict[str, str]]]:
    """Every sheet of a workbook as rows of dicts of text (header row first), read with fastexcel."""
    import fastexcel

    book = fastexcel.read_excel(path.read_bytes())
    out: dict[str, list[dict[str, str]]] = {}
    for name in book.sheet_names:
        frame = book.load_sheet_by_name(name, header_row=None, dtypes="string").to_polars()
        grid = [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]
        out[name] = [dict(zip(grid[0], row, strict=True)) for row in grid[1:]] if grid else []
    return out


def xlsx_layout(path: Path) -> dict[str, tuple[str | None, bool]]:
    """Per sheet (in order): the frozen pane's top-left cell and whether every used style wraps text."""
    from lxml import etree

    members = unzip_all(path.read_bytes())
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
    book = etree.fromstring(members["xl/workbook.xml"])
    rels = etree.fromstring(members["xl/_rels/workbook.xml.rels"])
    targets = {r.get("Id"): r.get("Target") for r in rels}
    styles = etree.fromstring(members["xl/styles.xml"])
    xfs = styles.find(f"{main}cellXfs")
    wraps = [x.find(f"{main}alignment") is not None and x.find(f"{main}alignment").get("wrapText") in ("1", "true")
             for x in (xfs if xfs is not None else [])]
    out: dict[str, tuple[str | None, bool]] = {}
    for sheet in book.iter(f"{main}sheet"):
        target = targets[sheet.get(f"{rel}id")].lstrip("/")
        xml = etree.fromstring(members[target if target.startswith("xl/") else f"xl/{target}"])
        pane = xml.find(f".//{main}pane")
        frozen = pane.get("topLeftCell") if pane is not None and pane.get("state") == "frozen" else None
        used = [int(c.get("s", "0")) for c in xml.iter(f"{main}c")]
        out[sheet.get("name", "")] = (frozen, bool(used) and all(wraps[i] for i in used))
    return out


def text_of_outputs(folder: Path) -> dict[str, str]:
    """Text of every output file (ZIP members decoded), for absence checks."""
    out: dict[str, str] = {}
    for path in files_under(folder):
        for where, blob in blobs_of(path):
            if where == str(path) and blob.startswith(b"PK\x03\x04"):
                continue
            out[where] = blob.decode("utf-8", errors="replace")
    return out


def stale_paths(status: Mapping[str, Any]) -> set[str]:
    """Paths of the outputs ``status --json`` lists as stale."""
    return {str(p) for p in status["stale_outputs"]}
