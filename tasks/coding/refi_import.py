"""``coding import``: a coded REFI-QDA project (.qdpx) or a coding CSV back into coded segments.

A .qdpx is an unencrypted ZIP (the same member count, size, ratio and path checks as a
delivery) holding ``project.qde``, parsed with defusedxml (no DOCTYPE, no entities: a billion
laughs or an external entity is refused) and validated against the REFI-QDA XSD. Each
``TextSource`` this project exported must still hold exactly the exported text (SHA-256), and
every ``PlainTextSelection`` must lie within it (positions in Unicode code points). A selection
becomes one segment per speaker turn it overlaps, clipped to the turn's words; a top-level
code is the theme, a child code the subtheme (deeper codes: ``child / grandchild``). Every
check runs before the one transaction that replaces the cluster's segments.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError  # noqa: S405 - types only; parsing is defusedxml

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from tasks.coding.archive import PROJECT_FILE, QDPX_LIMITS, read_qdpx
from tasks.coding.codebook import CODING, CodeRow, load_codebook
from tasks.coding.csv_route import csv_coding
from tasks.coding.refi_export import NS, refi_schema
from tasks.coding.store import (
    Coding,
    Segment,
    TurnSpan,
    current_coding,
    duplicate_result,
    exported_sources,
    import_result,
    store_coding,
    turn_spans,
)
from tasks.core.errors import InputRejected
from tasks.core.runtime import Runtime
from tasks.core.secrets import TRANSCRIPT_KEY
from tasks.qualitative.model import text_sha256

INTERNAL = "internal://"
_NS_TAG = re.compile(r"\{[^}]*\}")
_ATTRIBUTE = re.compile(r"^attribute ([A-Za-z_][\w.-]*)=")


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def import_coding(rt: Runtime, path: Path, flow_run_id: str | None) -> dict[str, Any]:
    """Check a coded project (.qdpx) or coding CSV/xlsx and replace the cluster's coded segments with it."""
    path = Path(path)
    try:
        if path.stat().st_size > QDPX_LIMITS.max_total_bytes:
            raise InputRejected(f"is larger than {QDPX_LIMITS.max_total_bytes // 2**20} MB, which is over the "
                                "limit for a coded project", file=path.name)
        data = path.read_bytes()
    except OSError as exc:
        raise InputRejected(f"cannot be read ({exc.strerror})", file=path.name) from None
    sha256 = hashlib.sha256(data).hexdigest()
    cluster = rt.cluster
    codebook_file = rt.settings.qualitative.codebook
    codebook = load_codebook(codebook_file) if codebook_file is not None else None
    with rt.engine.connect() as conn:
        previous = current_coding(conn, cluster)
        if previous is not None and previous["sha256"] == sha256:
            return duplicate_result(previous)
        spans = turn_spans(conn, cluster)
        if path.suffix.lower() == ".qdpx":
            coding = qdpx_coding(data, sha256, path.name, exported_sources(conn, cluster), spans)
        elif path.suffix.lower() in (".csv", ".xlsx"):
            coding = csv_coding(conn, rt.secrets.key(TRANSCRIPT_KEY), cluster, data, sha256, path.name, spans)
        else:
            raise InputRejected("not a coded project: give a .qdpx (REFI-QDA) or a coding .csv/.xlsx",
                                file=path.name)
    with rt.engine.begin() as conn:
        added = store_coding(conn, cluster, coding, codebook, flow_run_id)
    return import_result(coding, added)


# --- project.qde ---------------------------------------------------------------------------


def parse_project(qde: bytes, file_name: str) -> Element:
    """Parse ``project.qde`` safely and validate it against the REFI-QDA XSD (one line on failure)."""
    try:
        root = SafeET.fromstring(qde, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise InputRejected(f"{PROJECT_FILE} refused: XML entity declarations are not allowed (a "
                            "REFI-QDA project has no DOCTYPE); export the project again from the QDA tool",
                            file=file_name) from None
    except ParseError as exc:
        line, column = exc.position
        raise InputRejected(f"{PROJECT_FILE} is not well-formed XML (line {line}, column {column}); "
                            "export the project again from the QDA tool", file=file_name) from None
    error = next(iter(refi_schema().iter_errors(root)), None)
    if error is not None:
        where = _NS_TAG.sub("", error.path or "/")
        attribute = _ATTRIBUTE.match(error.reason or "")
        detail = f" (attribute {attribute.group(1)})" if attribute else ""
        raise InputRejected(f"{PROJECT_FILE} does not follow the REFI-QDA schema at {where}{detail}; "
                            "export the project again from the QDA tool", file=file_name)
    return root


def _guid(value: str | None) -> str:
    return (value or "").strip().strip("{}").lower()


def project_codes(root: Element, file_name: str) -> dict[str, CodeRow]:
    """Every code of the project's codebook by GUID: top level = theme, below = subtheme."""
    codes: dict[str, CodeRow] = {}

    def walk(element: Element, path: tuple[str, ...]) -> None:
        for code in element.findall(_q("Code")):
            name = " ".join((code.get("name") or "").split())
            if not name:
                raise InputRejected(f"code {_guid(code.get('guid'))} has no name; name every code",
                                    file=file_name)
            here = (*path, name)
            codes[_guid(code.get("guid"))] = CodeRow(here[0], " / ".join(here[1:]), None, None, CODING)
            walk(code, here)

    codes_el = root.find(f"{_q('CodeBook')}/{_q('Codes')}")
    if codes_el is not None:
        walk(codes_el, ())
    return codes


@dataclass(frozen=True)
class _Selection:
    guid: str
    start: int
    end: int
    codes: tuple[CodeRow, ...]


def _source_text(source: Element, members: dict[str, bytes], session_id: str, file_name: str) -> str:
    """The plain text of a TextSource: inline ``PlainTextContent`` or its internal file."""
    inline = source.find(_q("PlainTextContent"))
    if inline is not None:
        return inline.text or ""
    location = source.get("plainTextPath") or ""
    body = members.get(f"sources/{location[len(INTERNAL):]}") if location.startswith(INTERNAL) else None
    if body is None:
        raise InputRejected(f"source {session_id} has no plain text inside the project; export the project "
                            "with its sources", file=file_name)
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise InputRejected(f"source {session_id} text is not UTF-8; code the exported project without "
                            "editing the transcripts", file=file_name) from None


def _position_map(plain: str, expected: str, session_id: str, file_name: str) -> Callable[[_Selection], _Selection]:
    """Check the source's text is the exported one; map its positions to the exported text's.

    A tool that wrote the text back with Windows line endings (CR LF) still holds the exported
    text: its positions are moved back by the CRs before them. Any other difference rejects.
    """
    if text_sha256(plain) == expected:
        return lambda selection: selection
    if "\r\n" in plain and text_sha256(plain.replace("\r\n", "\n")) == expected:
        crs = [i for i, char in enumerate(plain) if char == "\r"]

        def shift(position: int) -> int:
            return position - bisect.bisect_left(crs, position)

        return lambda s: _Selection(s.guid, shift(s.start), shift(s.end), s.codes)
    raise InputRejected(f"source {session_id} text differs from the exported text; code the exported "
                        "project without editing the transcripts", file=file_name)


def _selections(source: Element, session_id: str, length: int, codes: dict[str, CodeRow],
                file_name: str) -> Iterator[_Selection]:
    """The coded selections of a source, each checked to lie within its text."""
    for selection in source.findall(_q("PlainTextSelection")):
        guid = _guid(selection.get("guid"))
        start, end = int(selection.get("startPosition", "0")), int(selection.get("endPosition", "0"))
        if not 0 <= start <= end <= length:
            raise InputRejected(f"selection {guid} of source {session_id} lies outside its text (positions "
                                f"{start}-{end}, text of {length} characters)", file=file_name)
        refs = [_guid(ref.get("targetGUID")) for ref in selection.iterfind(f"{_q('Coding')}/{_q('CodeRef')}")]
        unknown = [ref for ref in refs if ref not in codes]
        if unknown:
            raise InputRejected(f"selection {guid} of source {session_id} is coded with code {unknown[0]}, "
                                "which is not in the project's codebook", file=file_name)
        if refs:
            yield _Selection(guid, start, end, tuple(dict.fromkeys(codes[ref] for ref in refs)))


def _segments(selection: _Selection, session_id: str, spans: list[TurnSpan]) -> tuple[list[Segment], int]:
    """One segment per (code, turn) the selection overlaps within the turn's words; and withdrawn drops."""
    segments: list[Segment] = []
    dropped = 0
    for span in spans:
        if span.export_start is None or span.export_end is None:
            continue
        start, end = max(selection.start, span.export_start), min(selection.end, span.export_end)
        if start >= end:
            continue
        if span.withdrawn:
            dropped += len(selection.codes)
            continue
        segments.extend(Segment(selection.guid, session_id, span.turn_no, span.participant_id, code.theme,
                                code.subtheme, start - span.export_start, end - span.export_start)
                        for code in selection.codes)
    return segments, dropped


def qdpx_coding(data: bytes, sha256: str, file_name: str, exported: dict[str, tuple[str, str]],
                spans: dict[str, list[TurnSpan]]) -> Coding:
    """Check a coded .qdpx against the exported texts and map its selections to segments."""
    members = read_qdpx(data, file_name)
    root = parse_project(members[PROJECT_FILE], file_name)
    codes = project_codes(root, file_name)
    by_name = {session: guid for guid, (session, _) in exported.items()}
    segments: list[Segment] = []
    selections = dropped = sessions = matched = 0
    sources = root.find(_q("Sources"))
    for source in [] if sources is None else sources.findall(_q("TextSource")):
        guid = _guid(source.get("guid"))
        if guid not in exported and source.get("name") in by_name:
            guid = by_name[source.get("name") or ""]  # a tool that gave the source a new GUID
        if guid not in exported:
            continue  # not a transcript of this project (e.g. a memo the researchers added)
        matched += 1
        session_id, expected = exported[guid]
        plain = _source_text(source, members, session_id, file_name)
        to_exported = _position_map(plain, expected, session_id, file_name)
        sessions += 1
        for selection in _selections(source, session_id, len(plain), codes, file_name):
            selections += 1
            found, lost = _segments(to_exported(selection), session_id, spans.get(session_id, []))
            segments.extend(found)
            dropped += lost
    if not matched:
        raise InputRejected("none of the project's sources is a transcript `coding export` wrote; import "
                            "the project exported by `cluster-eval coding export`, coded", file=file_name)
    unique = {(s.selection_id, s.session_id, s.turn_no, s.theme, s.subtheme): s for s in segments}
    return Coding(sha256, "qdpx", selections, list(unique.values()), list(codes.values()), sessions, dropped)
