"""A stand-in for researchers coding in a QDA tool (DEMO ONLY, and the tests' own expectation).

``code_project`` takes the REFI-QDA project ``coding export`` wrote and returns it as NVivo,
ATLAS.ti or QualCoder would after a coding session: ``PlainTextSelection``s (code-point
positions) with ``Coding``/``CodeRef``s to subtheme codes (and one to a theme code per source),
a child code added while coding and used, and the coder as a ``User``. Everything else (cases,
variables, the source text files) is kept as it was. Seeded: the same project and seed give the
same bytes.

``expected_segments`` reads a coded project back WITHOUT the pipeline's code: line N of a
source's text is turn N (``SPEAKER: words``), so each selection's overlap with a line's words is
the segment ``coding import`` must store.
"""

from __future__ import annotations

import io
import random
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from lxml import etree  # type: ignore[import-untyped]

from tasks.demo.qualitative_bank import CODING_CUES

NS = "urn:QDA-XML:project:1.0"
PROJECT_FILE = "project.qde"
INTERNAL = "internal://"
CODER_NAME = "QDA coder (SIMULATED)"
ADDED_CODE = "Peer support"  # the child code "added while coding"
WITHDRAWN = "[withdrawn]"
CODED_AT = datetime(2021, 12, 1, 9, 0, tzinfo=UTC)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


class ExpectedSegment(NamedTuple):
    """One coded piece of one speaker turn: positions in code points within the turn's words."""

    session_id: str
    turn_no: int
    theme: str
    subtheme: str  # '' = coded to the theme itself
    speaker: str  # the line's speaker label: a participant_id or a research-team label
    start_cp: int
    end_cp: int


@dataclass(frozen=True)
class _Line:
    turn_no: int
    speaker: str
    start: int  # code point where the line starts in the source text
    words_start: int
    words_end: int

    @property
    def words(self) -> int:
        return self.words_end - self.words_start


def _lines(plain: str) -> list[_Line]:
    """Each line of an exported source: its speaker and where its words are (line N = turn N)."""
    lines, position = [], 0
    for turn_no, line in enumerate(plain.split("\n")[:-1] if plain.endswith("\n") else plain.split("\n"), 1):
        speaker, sep, _ = line.partition(": ")
        prefix = len(speaker) + len(sep) if sep else 0
        lines.append(_Line(turn_no, speaker if sep else "", position, position + prefix, position + len(line)))
        position += len(line) + 1
    return lines


def _codes(root: etree._Element) -> dict[str, tuple[str, str]]:
    """GUID -> (theme, subtheme) of every code: top level = theme, a child = subtheme."""
    found: dict[str, tuple[str, str]] = {}
    codes = root.find(f"{_q('CodeBook')}/{_q('Codes')}")
    for theme in [] if codes is None else codes.findall(_q("Code")):
        found[_norm(theme.get("guid"))] = (theme.get("name", ""), "")
        for child in theme.iter(_q("Code")):
            if child is not theme:
                names = [a.get("name", "") for a in child.iterancestors(_q("Code")) if a is not theme][::-1]
                found[_norm(child.get("guid"))] = (theme.get("name", ""), " / ".join([*names, child.get("name", "")]))
    return found


def _norm(guid: str | None) -> str:
    return (guid or "").strip().strip("{}").lower()


def _sources(root: etree._Element, members: dict[str, bytes]) -> Iterator[tuple[etree._Element, str]]:
    """Each TextSource with its plain text (inline or the internal file)."""
    sources = root.find(_q("Sources"))
    for source in [] if sources is None else sources.findall(_q("TextSource")):
        inline = source.find(_q("PlainTextContent"))
        if inline is not None:
            yield source, inline.text or ""
            continue
        path = (source.get("plainTextPath") or "").removeprefix(INTERNAL)
        yield source, members[f"sources/{path}"].decode("utf-8").removeprefix("\ufeff")


def _read(qdpx: bytes) -> tuple[list[zipfile.ZipInfo], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(qdpx)) as archive:
        infos = archive.infolist()
        return infos, {info.filename: archive.read(info) for info in infos}


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(minutes: int) -> str:
    return (CODED_AT + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cut_points(plain: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """Where a coder's drag starts and ends within [lo, hi): sentence starts and ends, else word edges."""
    starts = [i for i in range(lo, hi) if i == lo or plain[i - 2:i] in (". ", "? ", "! ")]
    ends = [i for i in range(lo + 1, hi + 1) if plain[i - 1] in ".?!"]
    if not ends:
        ends = [i for i in range(lo + 1, hi + 1) if i == hi or plain[i] == " "]
    return starts, ends


def _start(plain: str, lo: int, hi: int, rng: random.Random) -> int:
    return rng.choice(_cut_points(plain, lo, hi)[0])


def _end(plain: str, lo: int, hi: int, rng: random.Random, after: int) -> int:
    ends = [i for i in _cut_points(plain, lo, hi)[1] if i > after]
    return rng.choice(ends[:3]) if ends else hi  # one to three sentences


def _spans(plain: str, rng: random.Random) -> list[tuple[int, int]]:
    """Selections a coder would make: a phrase, a whole turn, a drag over two turns, a paragraph with
    its speaker label; each kind at least once when the source has four turns, then at random."""
    lines = [line for line in _lines(plain) if line.words > 0]
    chosen = sorted(rng.sample(range(len(lines)), max(min(len(lines), 4), round(len(lines) * 0.6))))
    kinds = ["phrase", "whole", "drag", "label"]
    rng.shuffle(kinds)
    kinds += rng.choices(("phrase", "whole", "drag", "label"), weights=(6, 2, 1, 1), k=len(chosen))
    spans: list[tuple[int, int]] = []
    for index, kind in zip(chosen, kinds, strict=False):
        line = lines[index]
        if kind == "drag" and index + 1 < len(lines):  # from this turn into the next
            following = lines[index + 1]
            start = _start(plain, line.words_start, line.words_end, rng)
            spans.append((start, _end(plain, following.words_start, following.words_end, rng, start)))
        elif kind == "whole":
            spans.append((line.words_start, line.words_end))
        elif kind == "label":  # the whole paragraph, speaker label included
            spans.append((line.start, line.words_end))
        else:  # a phrase within the turn
            start = _start(plain, line.words_start, line.words_end, rng)
            spans.append((start, _end(plain, start, line.words_end, rng, start)))
    return spans


def _pick_code(selected: str, subthemes: list[str], codes: dict[str, tuple[str, str]],
               rng: random.Random) -> str:
    """A subtheme whose cues the selected words contain (as a researcher would), else any subtheme."""
    lower = selected.lower()
    fitting = [g for g in subthemes if any(cue in lower for cue in CODING_CUES.get(codes[g][1], ()))]
    return rng.choice(fitting or subthemes)


def _user(root: etree._Element, rng: random.Random) -> str:
    """The coder's User GUID, adding the user (and the Users element) when missing."""
    users = root.find(_q("Users"))
    if users is None:
        users = etree.Element(_q("Users"))
        root.insert(0, users)
    for user in users.findall(_q("User")):
        if user.get("name") == CODER_NAME:
            return user.get("guid", "")
    guid = _guid(rng)
    etree.SubElement(users, _q("User"), guid=guid, name=CODER_NAME)
    return guid


def _add_child_code(root: etree._Element, rng: random.Random) -> str:
    """A new child code under one theme, as if added while coding; its GUID.

    A project exported after an earlier coding already holds that code: it is used again, as a
    researcher would, rather than added twice.
    """
    themes = root.findall(f"{_q('CodeBook')}/{_q('Codes')}/{_q('Code')}")
    for theme in themes:
        for code in theme.findall(_q("Code")):
            if code.get("name") == ADDED_CODE:
                return str(code.get("guid"))
    theme = themes[rng.randrange(len(themes))]
    guid = _guid(rng)
    etree.SubElement(theme, _q("Code"), guid=guid, name=ADDED_CODE, isCodable="true", color="#33aa77")
    return guid


def _insert_selection(source: etree._Element, selection: etree._Element) -> None:
    """Put a selection after the source's Description/PlainTextContent/selections (XSD order)."""
    after = [i for i, child in enumerate(source)
             if child.tag in (_q("Description"), _q("PlainTextContent"), _q("PlainTextSelection"))]
    source.insert(after[-1] + 1 if after else 0, selection)


def code_project(qdpx: bytes, seed: int) -> bytes:
    """The exported project as a QDA tool returns it after coding (deterministic for a seed)."""
    infos, members = _read(qdpx)
    root = etree.fromstring(members[PROJECT_FILE], _PARSER)
    rng = random.Random(f"qdpx-coder:{seed}")
    user = _user(root, rng)
    codes = _codes(root)
    subthemes = sorted((guid for guid, (_, sub) in codes.items() if sub), key=lambda g: codes[g])
    themes = sorted((guid for guid, (_, sub) in codes.items() if not sub), key=lambda g: codes[g])
    added = _add_child_code(root, rng)
    clock = 0
    for source_no, (source, plain) in enumerate(_sources(root, members)):
        spans = _spans(plain, random.Random(f"qdpx-coder:{seed}:{source.get('name')}"))
        for span_no, (start, end) in enumerate(spans):
            clock += 1
            selection = etree.Element(_q("PlainTextSelection"), guid=_guid(rng), name=f"Selection {clock}",
                                      startPosition=str(start), endPosition=str(end), creatingUser=user,
                                      creationDateTime=_stamp(clock))
            targets = [_pick_code(plain[start:end], subthemes, codes, rng)]
            if span_no == 0 and themes:
                targets = [rng.choice(themes)]  # coded to the theme itself
            elif span_no == 1 and source_no == 0:
                targets = [added]
            elif (span_no == 2 or rng.random() < 0.15) and len(subthemes) > 1:
                targets.append(rng.choice([g for g in subthemes if g != targets[0]]))  # two codes
            for target in targets:
                coding = etree.SubElement(selection, _q("Coding"), guid=_guid(rng), creatingUser=user,
                                          creationDateTime=_stamp(clock))
                etree.SubElement(coding, _q("CodeRef"), targetGUID=target)
            _insert_selection(source, selection)
        source.set("modifyingUser", user)
        source.set("modifiedDateTime", _stamp(clock))
    root.set("modifyingUserGUID", user)
    root.set("modifiedDateTime", _stamp(clock))
    members[PROJECT_FILE] = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in infos:
            archive.writestr(info, members[info.filename])
    return out.getvalue()


def expected_segments(qdpx: bytes) -> list[ExpectedSegment]:
    """The segments a coded project must give: each selection's overlap with each line's words."""
    _, members = _read(qdpx)
    root = etree.fromstring(members[PROJECT_FILE], _PARSER)
    codes = _codes(root)
    found: dict[tuple[str, str, int, str, str], ExpectedSegment] = {}
    for source, plain in _sources(root, members):
        session = source.get("name", "")
        lines = _lines(plain)
        for selection in source.findall(_q("PlainTextSelection")):
            start, end = int(selection.get("startPosition", "0")), int(selection.get("endPosition", "0"))
            refs = [_norm(ref.get("targetGUID")) for ref in selection.iter(_q("CodeRef"))]
            for line in lines:
                lo, hi = max(start, line.words_start), min(end, line.words_end)
                if lo >= hi or plain[line.words_start:line.words_end] == WITHDRAWN:
                    continue
                for ref in refs:
                    theme, subtheme = codes[ref]
                    key = (_norm(selection.get("guid")), session, line.turn_no, theme, subtheme)
                    found[key] = ExpectedSegment(session, line.turn_no, theme, subtheme, line.speaker,
                                                 lo - line.words_start, hi - line.words_start)
    return sorted(found.values())
