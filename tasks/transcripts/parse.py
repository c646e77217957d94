"""Read a delivered transcript (.docx, .txt, .vtt) into raw speaker turns (qualitative-v1.md §2).

A turn is a paragraph (docx) or line (txt) ``Speaker label: words``; blank paragraphs or lines
are skipped and one without a label continues the turn before it. In WebVTT (Teams, Zoom) a turn
is a cue's ``<v Speaker label>`` voice span (a cue with two voices gives two turns); the
``source_line`` of a VTT turn is the cue's position in the file (1-based). Words are normalised
to one line. Labels are only read here; ``tasks.transcripts.intake`` matches them to people.

Nothing here writes to disk, and no error message quotes the transcript: a refusal names the
file the user gave, the session and a line or cue number only.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import docx
import webvtt
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from tasks.core.errors import InputRejected

FORMATS = ("docx", "txt", "vtt")
# "Label: words": a label is 1-4 words of letters, digits, hyphens, apostrophes or dots. A line
# that only looks like one ("So I said: no") is still read as a label and then matches nobody,
# which rejects the transcript at that line: safer than attributing words to the wrong speaker.
_LABELLED = re.compile(r"^\s*([^\W_][\w.'’-]*(?:[ \t]+[\w.'’-]+){0,3})[ \t]*:[ \t]*(.*)$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]*)>")
_TAG = re.compile(r"<[^>]*>")
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&nbsp;": " ", "&lrm;": "", "&rlm;": ""}


@dataclass(frozen=True)
class RawTurn:
    """One speaker turn as delivered: its line/paragraph/cue, the label as written and the words."""

    source_line: int
    label: str
    words: str

    def __repr__(self) -> str:
        return f"RawTurn(line {self.source_line}, <label>, <text>)"

    __str__ = __repr__


def one_line(words: str) -> str:
    """Words with every run of white space (line breaks included) as one space."""
    return " ".join(words.split())


def transcript_format(member: str) -> str | None:
    """The format of an archive member by its extension (docx, txt, vtt), else None."""
    suffix = member.rsplit(".", 1)[-1].lower() if "." in member else ""
    return suffix if suffix in FORMATS else None


def parse_transcript(data: bytes, fmt: str, session_id: str, file_name: str) -> list[RawTurn]:
    """The raw turns of one transcript, or InputRejected naming the file and session (never text)."""
    if fmt == "docx":
        turns = labelled_turns(_docx_paragraphs(data, session_id, file_name), session_id, file_name)
    elif fmt == "txt":
        turns = labelled_turns(_text_lines(data, session_id, file_name), session_id, file_name)
    elif fmt == "vtt":
        turns = vtt_turns(data, session_id, file_name)
    else:
        raise InputRejected(f"transcript {session_id} is not a .docx, .txt or .vtt file", file=file_name)
    if not turns:
        raise InputRejected(f"transcript {session_id} has no speaker turns ('Speaker: words')",
                            file=file_name)
    return turns


def labelled_turns(lines: list[str], session_id: str, file_name: str) -> list[RawTurn]:
    """Turns of numbered lines or paragraphs ``Label: words`` (line numbers 1-based, blanks counted)."""
    turns: list[RawTurn] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _LABELLED.match(line)
        if match:
            turns.append(RawTurn(number, one_line(match.group(1)), one_line(match.group(2) or "")))
        elif turns:
            last = turns[-1]
            turns[-1] = RawTurn(last.source_line, last.label, one_line(f"{last.words} {line}"))
        else:
            raise InputRejected(f"transcript {session_id}, line {number}: the first turn has no "
                                "speaker label; start each turn with 'Speaker: '", file=file_name)
    return [turn for turn in turns if turn.words]


def _refuse_xml_declarations(data: bytes, session_id: str, file_name: str) -> None:
    """Refuse a .docx whose XML parts declare a DTD or entities (expansion or external entities).

    Word never writes a DOCTYPE; every XML part is parsed first with defusedxml, which refuses
    them, before python-docx reads the document.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        for info in package.infolist():
            if info.filename.endswith((".xml", ".rels")):
                try:
                    defused_fromstring(package.read(info), forbid_dtd=True)
                except DefusedXmlException:
                    raise InputRejected(
                        f"transcript {session_id} refused: its Word XML declares a DTD or entities "
                        "(entity expansion or external entities are not allowed); re-save it from Word "
                        "as .docx", file=file_name) from None


def _docx_paragraphs(data: bytes, session_id: str, file_name: str) -> list[str]:
    """The body paragraphs of a Word document, in order (tables and headers are not read)."""
    try:
        _refuse_xml_declarations(data, session_id, file_name)
        document = docx.Document(io.BytesIO(data))
        return [paragraph.text for paragraph in document.paragraphs]
    except InputRejected:
        raise
    except Exception:  # zipfile, python-docx and lxml raise many types; their messages may quote content
        raise InputRejected(f"transcript {session_id} is not a valid .docx document; re-save it "
                            "from Word as .docx", file=file_name) from None


def _decode(data: bytes, session_id: str, file_name: str, kind: str) -> str:
    """UTF-8 text (a BOM is tolerated), line endings as ``\\n``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputRejected(f"transcript {session_id} is not UTF-8 text; save the {kind} file as "
                            "UTF-8", file=file_name) from None
    if "\x00" in text:
        raise InputRejected(f"transcript {session_id} is not a text file", file=file_name)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_lines(data: bytes, session_id: str, file_name: str) -> list[str]:
    return _decode(data, session_id, file_name, ".txt").split("\n")


def _cue_words(raw: str) -> str:
    text = _TAG.sub("", raw)
    for entity, plain in _ENTITIES.items():
        text = text.replace(entity, plain)
    return one_line(text)


def vtt_turns(data: bytes, session_id: str, file_name: str) -> list[RawTurn]:
    """One turn per voice span of each cue; a cue without a voice tag rejects the transcript."""
    text = _decode(data, session_id, file_name, ".vtt")
    try:
        cues = webvtt.from_buffer(io.StringIO(text)).captions
    except Exception:  # webvtt-py raises several types; their messages may quote the file
        raise InputRejected(f"transcript {session_id} is not a valid WebVTT file", file=file_name) from None
    turns: list[RawTurn] = []
    for number, cue in enumerate(cues, start=1):
        raw = cue.raw_text
        voices = list(_VOICE.finditer(raw))
        if not voices or _cue_words(raw[:voices[0].start()]):
            raise InputRejected(f"transcript {session_id}, cue {number}: the cue has no speaker voice "
                                "tag <v Speaker>; export the captions with speaker names", file=file_name)
        for index, voice in enumerate(voices):
            end = voices[index + 1].start() if index + 1 < len(voices) else len(raw)
            words = _cue_words(raw[voice.end():end])
            label = one_line(voice.group(1))
            if not label:
                raise InputRejected(f"transcript {session_id}, cue {number}: a voice tag has no "
                                    "speaker label", file=file_name)
            if words:
                turns.append(RawTurn(number, label, words))
    return turns
