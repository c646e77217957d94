"""The three delivered transcript formats of the SYNTHETIC corpus: docx, txt, WebVTT (DEMO ONLY).

Each takes (speaker label, words) per turn. Long turns are cut at a sentence end into a
continuation paragraph or line without a label (docx, txt) or a second cue of the same speaker
(Zoom-style WebVTT), as real transcripts do. The docx is re-packed with fixed timestamps so the
same turns give the same bytes.
"""

from __future__ import annotations

import io
import random
import uuid
import zipfile

import docx


def _split(words: str) -> tuple[str, str]:
    """A long turn cut at a sentence end (continuation paragraph, line or cue); '' when short."""
    cut = words.find(". ", len(words) // 2)
    if len(words) < 160 or cut < 0:
        return words, ""
    return words[:cut + 1], words[cut + 2:]


def _fixed_zip(data: bytes) -> bytes:
    """Re-pack a ZIP with fixed timestamps so the same content gives the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2021, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def docx_bytes(turns: list[tuple[str, str]]) -> bytes:
    document = docx.Document()
    document.core_properties.author = "Transcriber"
    for label, words in turns:
        head, tail = _split(words)
        document.add_paragraph(f"{label}: {head}")
        if tail:
            document.add_paragraph(tail)
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_zip(buffer.getvalue())


def txt_bytes(turns: list[tuple[str, str]]) -> bytes:
    lines: list[str] = []
    team_turns = 0
    for label, words in turns:
        head, tail = _split(words)
        team_turns += label == "Interviewer"
        shown = label.upper() if team_turns == 2 and label == "Interviewer" else label  # labels ignore case
        lines += [f"{shown}: {head}"] + ([tail] if tail else []) + [""]
    return "\n".join(lines).encode("utf-8")


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"


def vtt_bytes(turns: list[tuple[str, str]], rng: random.Random, teams: bool) -> bytes:
    lines, clock, cue_no = ["WEBVTT", ""], 2.0, 0
    meeting = uuid.UUID(int=rng.getrandbits(128), version=4)
    for label, words in turns:
        pieces = [words] if teams else [p for p in _split(words) if p]
        for piece in pieces:
            cue_no += 1
            duration = max(1.5, len(piece.split()) / 2.6)
            lines.append(f"{meeting}/{cue_no + 10}-0" if teams else str(cue_no))
            lines.append(f"{_timestamp(clock)} --> {_timestamp(clock + duration)}")
            lines.append(f"<v {label}>{piece}</v>" if teams else f"<v {label}>{piece}")
            lines.append("")
            clock += duration + rng.uniform(0.2, 1.5)
    return "\n".join(lines).encode("utf-8")
