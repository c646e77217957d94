"""Bad input to the qualitative strand: one clear line, exit 1, nothing stored (issue 11, "Done when").

One prepared study for the module (in-process CLI, Prefect test harness): the marker register
imported, transcripts FI-01 (docx) and FG-1 (vtt) imported and approved, a coding export. FI-02,
the session where F04 refused recording, is left for the bad transcripts. Each case then gives one
command a bad file (or a bad argument) and checks the whole contract: exit 1; stderr exactly one
line ``cluster-eval: error: ...`` with the expected phrase, no traceback, no marker (so no name,
no label, no transcript text); the qual_* tables and stored_files unchanged (row count and a hash
of every row); a rejected encrypted delivery moved to HOME/quarantine, other files left in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from qualitative_support import (
    CODEBOOK,
    MARKER,
    MARKER_DENY,
    PASS,
    QUAL_TABLES,
    Project,
    QualStudy,
    add_selections,
    aes_members,
    aes_renamed,
    code_guid,
    coded_once,
    configure_qualitative,
    deny_csv,
    docx_bytes,
    files_under,
    marker_register,
    marker_transcripts,
    new_study,
    plain_zip,
    read_project,
    rezip,
    rows_csv,
    table_fingerprints,
    txt_bytes,
    unzip_all,
    zip_renamed,
)
from test_archive import zipcrypto_zip

pytestmark = pytest.mark.e2e

FI02_OK = ["Facilitator: Welcome everyone.", "F03: The group helped us a lot, Zqxmarkertext says so too.",
           "F05: We waited six weeks."]


@dataclass
class Prepared:
    study: QualStudy
    exported: bytes
    coded: bytes  # a valid coding of the export (imports cleanly)
    project: Project


@pytest.fixture(scope="module")
def prepared(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    study = new_study(tmp_path_factory.mktemp("qual-rejections"))
    configure_qualitative(study, rows_csv(CODEBOOK), deny_csv(MARKER_DENY))
    register = study.inbox / "register.zip"
    register.write_bytes(aes_members({"participants.csv": rows_csv(marker_register())}))
    study.cli("participants", "import", register)
    transcripts = {k: v for k, v in marker_transcripts().items() if not k.startswith("FI-02")}
    bundle = study.inbox / "transcripts.zip"
    bundle.write_bytes(aes_members(transcripts))
    study.cli("transcripts", "import", bundle)
    for session in ("FI-01", "FG-1"):
        study.cli("transcripts", "approve", session)
    out = study.root / "project.qdpx"
    study.cli("coding", "export", "--out", out)
    exported = out.read_bytes()
    coded = coded_once(exported)
    return Prepared(study, exported, coded, read_project(coded))


# --------------------------------------------------------------------------- bad files


def _register(edit: Callable[[list[dict[str, str]]], None]) -> bytes:
    rows = marker_register()
    edit(rows)
    return rows_csv(rows)


def _set(pid: str, column: str, value: str) -> Callable[[list[dict[str, str]]], None]:
    def edit(rows: list[dict[str, str]]) -> None:
        next(r for r in rows if r["participant_id"] == pid)[column] = value
    return edit


REGISTER = rows_csv(marker_register())
BOMB_PADDING = b" " * 3_000_000


def _qdpx_edit(prepared: Prepared, edit: Callable[[dict[str, bytes], Project], None]) -> bytes:
    members = unzip_all(prepared.coded)
    edit(members, prepared.project)
    return rezip(members)


def _edit_text(members: dict[str, bytes], project: Project) -> None:
    name = next(n for n in members if n.startswith("sources/") and n.endswith(".txt")
                and "mornings got calmer" in members[n].decode())
    members[name] = members[name].replace(b"mornings got calmer", b"mornings got better", 1)


def _selection(start: Callable[[int], int], end: Callable[[int], int]) -> Callable[[Prepared], bytes]:
    def build(prepared: Prepared) -> bytes:
        project = read_project(prepared.exported)
        guid, plain = next(iter(project.texts.items()))
        n = len(plain)
        return add_selections(prepared.coded, [(guid, start(n), end(n), code_guid(project, "Access", "Waiting"))])
    return build


def _qde(edit: Callable[[str], str]) -> Callable[[Prepared], bytes]:
    def build(prepared: Prepared) -> bytes:
        def change(members: dict[str, bytes], project: Project) -> None:
            members["project.qde"] = edit(members["project.qde"].decode("utf-8")).encode("utf-8")
        return _qdpx_edit(prepared, change)
    return build


def _with_doctype(doctype: str, reference: str) -> Callable[[str], str]:
    def edit(qde: str) -> str:
        qde = re.sub(r"^<\?xml[^>]*\?>\s*", "", qde)
        qde = re.sub(r'(<Project\b[^>]*?\bname=")[^"]*(")', lambda m: m.group(1) + reference + m.group(2), qde,
                     count=1)
        assert reference in qde
        return '<?xml version="1.0" encoding="utf-8"?>\n' + doctype + "\n" + qde
    return edit


LAUGHS = ("<!DOCTYPE Project [<!ENTITY lol \"lol\">"
          + "".join(f"<!ENTITY lol{i} \"{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}\">"
                    for i in range(1, 10)) + "]>")


def _docx_with_doctype(doctype: str, reference: str) -> bytes:
    """FI-02 as a Word file whose document.xml declares entities and uses one in a paragraph."""
    members = unzip_all(docx_bytes(FI02_OK))
    xml = members["word/document.xml"].decode("utf-8")
    xml = re.sub(r"^<\?xml[^>]*\?>\s*", "", xml)
    xml = xml.replace("We waited six weeks.", f"We waited {reference} weeks.", 1)
    assert reference in xml
    members["word/document.xml"] = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                                    + doctype + "\n" + xml).encode("utf-8")
    return rezip(members)


def _external_entity(root: Path) -> str:
    secret = root / "secret.txt"
    secret.write_text("Zqxmarkersecret lives here\n")
    return f'<!DOCTYPE Project [<!ENTITY xxe SYSTEM "file://{secret}">]>'


@dataclass(frozen=True)
class Case:
    name: str  # the file name (unique: quarantine keeps it)
    command: tuple[str, ...]  # the command before the file
    build: Callable[[Prepared], bytes] | None  # None: no file, the command takes an argument
    phrases: tuple[str, ...]  # each must be in the error line (case-insensitive)
    quarantined: bool
    unset: tuple[str, ...] = ()  # environment variables removed for this command


def _delivery(members: dict[str, bytes]) -> Callable[[Prepared], bytes]:
    return lambda _: aes_members(members)


CSV_HEAD = b"session_id,line_start,line_end,theme,subtheme\n"  # the Excel coding route
P_IMPORT, T_IMPORT, C_IMPORT = ("participants", "import"), ("transcripts", "import"), ("coding", "import")
CASES = [
    # --- participants register
    Case("register-no-passphrase.zip", P_IMPORT, _delivery({"participants.csv": REGISTER}),
         ("no passphrase",), False, unset=("CLUSTER_EVAL_EXTRACT_PASSPHRASE",)),
    Case("register-plain.zip", P_IMPORT, lambda _: plain_zip({"participants.csv": REGISTER}),
         ("not encrypted",), True),
    Case("register-slip.zip", P_IMPORT, lambda _: aes_renamed({"participants.csv": REGISTER}, "participants.csv",
                                                              "../participants.csv"), ("unsafe path",), True),
    Case("register-bomb.zip", P_IMPORT, _delivery({"participants.csv": REGISTER + BOMB_PADDING}),
         ("zip bomb",), True),
    Case("register-pseudonym.zip", P_IMPORT,
         _delivery({"participants.csv": _register(_set("F02", "chosen_pseudonym", "Zqxmarkeraa"))}),
         ("column chosen_pseudonym", "participant F02", "not_a_real_name"), True),
    Case("register-surname.zip", P_IMPORT,
         _delivery({"participants.csv": _register(_set("P01", "chosen_pseudonym", "zqxmarkerjb"))}),
         ("column chosen_pseudonym", "participant P01", "not_a_real_name"), True),
    Case("register-token.zip", P_IMPORT,
         _delivery({"participants.csv": _register(_set("F01", "survey_token", "Zqxmarkertoken"))}),
         ("column survey_token", "participant F01", "issued_token"), True),
    Case("register-consent-after.zip", P_IMPORT,
         _delivery({"participants.csv": _register(_set("F03", "consent_date", "2022-03-09"))}),
         ("column consent_date", "participant F03", "consent_before_session"), True),
    # --- transcripts
    Case("transcripts-plain.zip", T_IMPORT, lambda _: plain_zip({"FI-02.txt": txt_bytes(FI02_OK)}),
         ("not encrypted",), True),
    Case("transcripts-slip.zip", T_IMPORT,
         lambda _: aes_renamed({"FI-02.txt": txt_bytes(FI02_OK)}, "FI-02.txt", "../FI-02.txt"),
         ("unsafe path",), True),
    Case("transcripts-bomb.zip", T_IMPORT, _delivery({"FI-02.txt": txt_bytes(FI02_OK) + BOMB_PADDING}),
         ("zip bomb",), True),
    Case("unknown-speaker.zip", T_IMPORT,
         _delivery({"FI-02.txt": txt_bytes(FI02_OK[:2] + ["Zqxmarkerzz Zqxmarkeryy: I was never registered."])}),
         ("transcript FI-02, line 3", "speaker label"), True),
    Case("other-session-speaker.zip", T_IMPORT,
         _delivery({"FI-02.txt": txt_bytes(FI02_OK + ["Zqxmarkeraa: I belong to FI-01, Zqxmarkertext."])}),
         ("transcript FI-02, line 4", "speaker label"), True),
    Case("refused-recording.zip", T_IMPORT,
         _delivery({"FI-02.txt": txt_bytes(FI02_OK + ["Zqxmarkerda: I said no to recording, Zqxmarkertext."])}),
         ("transcript FI-02, line 4", "consent to recording"), True),
    Case("refused-recording-by-id.zip", T_IMPORT,
         _delivery({"FI-02.txt": txt_bytes(FI02_OK[:1] + ["F04: Zqxmarkertext words."])}),
         ("transcript FI-02, line 2", "consent to recording"), True),
    Case("docx-laughs.zip", T_IMPORT,
         lambda _: aes_members({"FI-02.docx": _docx_with_doctype(LAUGHS.replace("Project", "w:document"), "&lol9;")}),
         ("transcript FI-02", "entities"), True),
    Case("docx-external-entity.zip", T_IMPORT,
         lambda p: aes_members({"FI-02.docx": _docx_with_doctype(
             _external_entity(p.study.root).replace("Project", "w:document"), "&xxe;")}),
         ("transcript FI-02", "entities"), True),
    Case("register-zipcrypto.zip", P_IMPORT, lambda _: zipcrypto_zip("participants.csv", REGISTER, PASS.encode()),
         ("ZipCrypto",), True),
    Case("unknown-session.zip", T_IMPORT, _delivery({"FI-09.txt": txt_bytes(FI02_OK)}),
         ("not named after a session",), True),
    # --- coding round trip
    Case("edited.qdpx", C_IMPORT, lambda p: _qdpx_edit(p, _edit_text), ("differs from the exported text",), False),
    Case("beyond-end.qdpx", C_IMPORT, _selection(lambda n: n - 3, lambda n: n + 10), ("outside its text",), False),
    Case("reversed.qdpx", C_IMPORT, _selection(lambda n: 20, lambda n: 10), ("outside its text",), False),
    Case("negative.qdpx", C_IMPORT, _selection(lambda n: -5, lambda n: 10), ("outside its text",), False),
    Case("malformed.qdpx", C_IMPORT, _qde(lambda q: q[: len(q) // 2]), ("not well-formed xml",), False),
    Case("laughs.qdpx", C_IMPORT, _qde(_with_doctype(LAUGHS, "&lol9;")), ("entity",), False),
    Case("not-a-zip.qdpx", C_IMPORT, lambda _: b"PK\x03\x04" + b"\x00" * 200, ("corrupt",), False),
    Case("qdpx-slip.qdpx", C_IMPORT, lambda p: zip_renamed(
        {**unzip_all(p.coded), "notes.txt": b"x"}, "notes.txt", "../notes.txt"), ("unsafe path",), False),
    Case("qdpx-bomb.qdpx", C_IMPORT, lambda p: rezip({**unzip_all(p.coded), "sources/padding.txt": BOMB_PADDING}),
         ("zip bomb",), False),
    Case("no-project.qdpx", C_IMPORT, lambda p: rezip({k: v for k, v in unzip_all(p.coded).items()
                                                        if k != "project.qde"}), ("project.qde",), False),
    Case("lines-beyond-end.csv", C_IMPORT, lambda _: CSV_HEAD + b"FI-01,2,999,Impact,Parenting\n",
         ("lines out of range",), False),
    Case("lines-unknown-session.csv", C_IMPORT, lambda _: CSV_HEAD + b"FI-09,1,2,Impact,Parenting\n",
         ("unknown session",), False),
    # --- commands on sessions
    Case("approve-unknown", ("transcripts", "approve", "FI-09"), None, ("FI-09",), False),
    Case("redact-unknown", ("transcripts", "redact", "FI-09"), None, ("FI-09",), False),
    Case("redact-approved", ("transcripts", "redact", "FI-01"), None, ("session FI-01 was approved",), False),
    Case("withdraw-unknown", ("participants", "withdraw", "F99"), None, ("participant_id",), False),
]


def _check_rejected(prepared: Prepared, case: Case, source: Path | None) -> None:
    study = prepared.study
    engine = study.engine()
    quarantine = study.home / "quarantine"
    quarantine.mkdir(exist_ok=True)
    kept_before = set(quarantine.iterdir())
    stores = [study.home / "raw", study.home / "restricted", study.home / "outputs"]
    files_before = {p: p.read_bytes() for p in files_under(*stores)}
    try:
        before = table_fingerprints(engine, QUAL_TABLES + ("stored_files", "audit_log"))
        saved = dict(study.env)
        for name in case.unset:
            study.env.pop(name)
        try:
            result = study.cli(*case.command, *([str(source)] if source else []), expect=None)
        finally:
            study.env = saved
        after = table_fingerprints(engine, QUAL_TABLES + ("stored_files", "audit_log"))
    finally:
        engine.dispose()
    assert result.code == 1, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cluster-eval: error: "), result.err
    assert "Traceback" not in result.err + result.out and len(lines[0]) < 400
    assert MARKER.decode() not in (result.err + result.out).lower()
    for phrase in case.phrases:
        assert phrase.lower() in lines[0].lower(), (phrase, lines[0])
    assert after == before
    assert {p: p.read_bytes() for p in files_under(*stores)} == files_before
    new = set(quarantine.iterdir()) - kept_before
    if source is None:
        return
    if case.quarantined:
        assert not source.exists()
        assert [p for p in new if p.name.endswith(case.name)], new
        for reason in [p for p in new if p.name.endswith(".reason.txt")]:
            assert MARKER.decode() not in reason.read_text().lower()
    elif case.command != C_IMPORT:
        assert source.exists() and not new  # a setup mistake, not a bad file
    else:
        assert source.exists() or [p for p in new if p.name.endswith(case.name)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_1_and_nothing_stored(prepared: Prepared, case: Case) -> None:
    source = None
    if case.build is not None:
        folder = prepared.study.inbox / "bad"
        folder.mkdir(exist_ok=True)
        source = folder / case.name
        source.write_bytes(case.build(prepared))
    _check_rejected(prepared, case, source)


def test_xml_external_entity_is_refused(prepared: Prepared) -> None:
    source = prepared.study.inbox / "external-entity.qdpx"
    source.write_bytes(_qde(_with_doctype(_external_entity(prepared.study.root), "&xxe;"))(prepared))
    _check_rejected(prepared, Case(source.name, C_IMPORT, None, ("entity",), False), source)


def test_archive_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


def test_the_unedited_coded_project_imports(prepared: Prepared) -> None:
    """The control: the same project before any of the edits above imports cleanly."""
    source = prepared.study.inbox / "control.qdpx"
    source.write_bytes(prepared.coded)
    result = prepared.study.cli("coding", "import", source, "--json").json()
    assert result["status"] in ("imported", "duplicate") and result["selections"] == 1
    assert result["segments"] == 1
