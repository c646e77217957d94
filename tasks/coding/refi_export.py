"""``coding export``: the approved transcripts as a REFI-QDA project (.qdpx) or an Excel coding sheet.

The project (QDA-XML 1.0, ``schemas/refi-qda-project.xsd``) is a ZIP of ``project.qde`` and one
``sources/<guid>.txt`` per approved session, the text being ``model.export_text`` of its
de-identified turns. It holds the codebook as codes (theme -> subthemes), the participants who
have not withdrawn as cases (participant_id and display name, strand, role, stratum) and no
personal data. ``project.qde`` is validated against the XSD before anything is written: a
failure is a bug of this module, not of the user's input.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET  # noqa: S405 - building, never parsing

import xmlschema
from sqlalchemy import Connection, text

from tasks.coding.archive import PROJECT_FILE
from tasks.coding.codebook import (
    CODEBOOK,
    CodeRow,
    code_guid,
    codebook_path,
    load_codebook,
    stable_guid,
    store_codebook,
    stored_codes,
)
from tasks.coding.csv_route import coding_sheet
from tasks.coding.store import SessionText, approved_sessions, record_export, session_texts
from tasks.core.errors import InputRejected
from tasks.core.home import write_private
from tasks.core.runtime import Runtime
from tasks.core.secrets import TRANSCRIPT_KEY
from tasks.qualitative.model import Participant, load_participants

NS = "urn:QDA-XML:project:1.0"
USER_NAME = "cluster-eval"
VARIABLES = ("strand", "role", "stratum")
SUFFIXES = (".qdpx", ".csv", ".xlsx")

ET.register_namespace("", NS)


@lru_cache(maxsize=1)
def refi_schema() -> xmlschema.XMLSchema:
    """The REFI-QDA project schema (QDA-XML 1.0), parsed once."""
    path = resources.files("schemas") / "refi-qda-project.xsd"
    with resources.as_file(path) as xsd:
        return xmlschema.XMLSchema(str(xsd))


@dataclass(frozen=True)
class Case:
    """A participant as a REFI-QDA case (no personal data: the pseudonymous id and display name)."""

    participant: Participant
    stratum: str | None


def export_coding(rt: Runtime, out: Path, flow_run_id: str | None) -> dict[str, Any]:
    """Write the coding project (.qdpx) or coding sheet (.csv/.xlsx) of the approved sessions; record it."""
    out = Path(out).resolve()
    if out.suffix.lower() not in SUFFIXES:
        raise InputRejected("the output must end in .qdpx (a REFI-QDA project), .csv or .xlsx "
                            "(an Excel coding sheet)", file=out.name)
    codebook = load_codebook(codebook_path(rt.settings.qualitative.codebook))
    cluster = rt.cluster
    with rt.engine.connect() as conn:
        sessions = approved_sessions(conn, cluster)
        if not sessions:
            raise InputRejected("no transcript has been approved yet: approve the de-identified "
                                "transcripts with `cluster-eval transcripts approve SESSION` first")
        texts = session_texts(conn, rt.secrets.key(TRANSCRIPT_KEY), cluster, sessions)
        cases = _cases(conn, cluster)
        added = [c for c in stored_codes(conn, cluster) if c.origin != CODEBOOK
                 and (c.theme, c.subtheme) not in {(r.theme, r.subtheme) for r in codebook}]
    codes = [*codebook, *added]
    kind = "qdpx" if out.suffix.lower() == ".qdpx" else out.suffix.lower().lstrip(".")
    if kind == "qdpx":
        data = project_bytes(cluster, texts, codes, cases, datetime.now(UTC))
    else:
        data = coding_sheet(texts, kind)
    write_private(out, data)
    details = {"format": kind, "sessions": len(texts), "turns": sum(len(t.turns) for t in texts),
               "codes": len(codes), "cases": len(cases) if kind == "qdpx" else 0}
    try:
        with rt.engine.begin() as conn:
            store_codebook(conn, cluster, codebook)
            record_export(conn, cluster, out, texts, details, flow_run_id)
    except BaseException:
        out.unlink(missing_ok=True)  # an unrecorded export is not left behind
        raise
    return {"status": "exported", "out": str(out), **details}


def _cases(conn: Connection, cluster: str) -> list[Case]:
    """Participants who have not withdrawn, with their household's stratum when they gave a token."""
    strata = {r.token: r.stratum for r in conn.execute(text(
        "SELECT h.token, h.stratum FROM households h JOIN qual_participants p"
        " ON p.cluster_id = h.cluster_id AND p.survey_token = h.token WHERE p.cluster_id = :c"), {"c": cluster})}
    return [Case(p, strata.get(p.survey_token) if p.survey_token else None)
            for p in load_participants(conn, cluster) if not p.withdrawn]


def _el(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{NS}}}{tag}", attrs)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def project_xml(cluster: str, texts: Sequence[SessionText], codes: Sequence[CodeRow],
                cases: Sequence[Case], created: datetime) -> bytes:
    """``project.qde``: users, codebook, variables, cases and text sources (UTF-8 XML)."""
    stamp = _timestamp(created)
    user = stable_guid(cluster, "user", USER_NAME)
    root = ET.Element(f"{{{NS}}}Project", {"name": f"cluster-eval {cluster} coding", "origin": "cluster-eval",
                                            "creatingUserGUID": user, "creationDateTime": stamp})
    _el(_el(root, "Users"), "User", guid=user, name=USER_NAME)
    _codebook_xml(_el(_el(root, "CodeBook"), "Codes"), cluster, codes)
    variables = _el(root, "Variables")
    for name in VARIABLES:
        _el(variables, "Variable", guid=stable_guid(cluster, "variable", name), name=name,
            typeOfVariable="Text")
    exported = {t.session_id: t.guid for t in texts}
    if cases:
        _cases_xml(_el(root, "Cases"), cluster, cases, exported)
    sources = _el(root, "Sources")
    for session in texts:
        _el(sources, "TextSource", guid=session.guid, name=session.session_id,
            plainTextPath=f"internal://{session.guid}.txt", creatingUser=user, creationDateTime=stamp)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _codebook_xml(codes_el: ET.Element, cluster: str, codes: Sequence[CodeRow]) -> None:
    themes: dict[str, ET.Element] = {}
    for code in codes:  # theme rows come before their subthemes
        if code.theme not in themes:
            themes[code.theme] = _el(codes_el, "Code", guid=code_guid(cluster, code.theme, ""),
                                     name=code.theme, isCodable="true")
        if code.subtheme:
            child = _el(themes[code.theme], "Code", guid=code_guid(cluster, code.theme, code.subtheme),
                        name=code.subtheme, isCodable="true")
            if code.description:
                _el(child, "Description").text = code.description
        elif code.description:
            description = ET.Element(f"{{{NS}}}Description")
            description.text = code.description
            themes[code.theme].insert(0, description)  # Description precedes child codes


def _cases_xml(cases_el: ET.Element, cluster: str, cases: Sequence[Case], exported: dict[str, str]) -> None:
    for case in cases:
        p = case.participant
        element = _el(cases_el, "Case", guid=stable_guid(cluster, "case", p.participant_id),
                      name=f"{p.participant_id} ({p.display_name})")
        for name, value in (("strand", p.strand), ("role", p.role), ("stratum", case.stratum)):
            if value is None:
                continue
            variable_value = _el(element, "VariableValue")
            _el(variable_value, "VariableRef", targetGUID=stable_guid(cluster, "variable", name))
            _el(variable_value, "TextValue").text = value
        if p.session_id in exported:
            _el(element, "SourceRef", targetGUID=exported[p.session_id])


def project_bytes(cluster: str, texts: Sequence[SessionText], codes: Sequence[CodeRow],
                  cases: Sequence[Case], created: datetime) -> bytes:
    """The .qdpx: ``project.qde`` (validated against the XSD) and ``sources/<guid>.txt`` per session."""
    qde = project_xml(cluster, texts, codes, cases, created)
    errors = list(refi_schema().iter_errors(qde.decode("utf-8")))
    if errors:  # our own output: never the user's fault
        raise RuntimeError(f"the REFI-QDA export does not follow the schema at {errors[0].path}")
    buffer = io.BytesIO()
    stamp = created.astimezone(UTC).timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in ((PROJECT_FILE, qde),
                           *((f"sources/{t.guid}.txt", t.text.encode("utf-8")) for t in texts)):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, body)
    return buffer.getvalue()
