"""What ``analyse`` reads of the qualitative strand, and the excerpts and code order it charts.

The register (no personal data), the codes, the coded segments and the stored de-identified
turns (decrypted in memory with the transcript key), plus the survey answers of participants
who gave a survey token. See :mod:`tasks.analysis.framework` for the decisions on order and
content.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from tasks.core.db import query
from tasks.qualitative.model import (
    FAMILY,
    PRACTITIONER,
    Participant,
    Segment,
    Turn,
    load_participants,
    load_turns,
)

THEME_COLUMN = "(theme)"
MAX_QUOTES = 2
ELLIPSIS = "…"
#: Strands in the order they are shown, with their nouns (one, several).
STRANDS: tuple[tuple[str, str, str], ...] = (
    (FAMILY, "family participant", "family participants"),
    (PRACTITIONER, "practitioner", "practitioners"),
)
#: Survey answers shown in triangulation.csv (columns of the responses table).
SURVEY_COLUMNS = ("q1_life_satisfaction", "q2_worthwhile", "q3_happy_yesterday",
                  "q4_anxious_yesterday", "q5_child_wellbeing", "q6_parenting_confidence",
                  "q7_help_with_difficulties", "q8_worker_relationship", "q9_negative_effects",
                  "q10_interview_opt_in")
BOOLEAN_ANSWERS = frozenset({"q9_negative_effects", "q10_interview_opt_in"})
#: How a withdrawn participant named in someone else's words is shown in every output.
WITHDRAWN_NAME = "[name]"
ANALYSED, NO_SEGMENTS, NO_KEY = "analysed", "no_coded_segments", "no_transcript_key"


@dataclass(frozen=True)
class Code:
    """A code of the codebook or one added while coding (subtheme '' is the theme itself)."""

    theme: str
    subtheme: str
    research_question: str | None
    description: str | None
    origin: str


@dataclass(frozen=True)
class QualitativeData:
    """What ``analyse`` reads of the qualitative strand (the text lives only in memory)."""

    status: str
    participants: tuple[Participant, ...] = ()
    turns: Mapping[tuple[str, int], Turn] = field(default_factory=dict)
    codes: tuple[Code, ...] = ()
    segments: tuple[Segment, ...] = ()
    approved_sessions: frozenset[str] = frozenset()
    #: survey token -> {"stratum": ..., q1..q10 as text}
    survey: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    codebook_order: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return (f"QualitativeData({self.status}: {len(self.participants)} participants, "
                f"{len(self.turns)} turns, {len(self.segments)} segments)")

    __str__ = __repr__


def read_codebook_order(path: Path | None) -> tuple[tuple[str, str], ...]:
    """(theme, subtheme) in the order of the codebook CSV; empty when there is none to read."""
    if path is None:
        return ()
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return tuple((str(row.get("theme") or "").strip(), str(row.get("subtheme") or "").strip())
                         for row in csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()


def _answer(column: str, value: Any) -> str:
    """A survey answer as text: booleans Y/N, numbers as they are, missing empty."""
    if value is None:
        return ""
    if column in BOOLEAN_ANSWERS:
        return "Y" if bool(value) else "N"
    return str(value)


def _survey(conn: Connection, cluster: str, tokens: set[str]) -> dict[str, dict[str, str]]:
    """Stratum and answers of the households whose tokens participants gave."""
    found: dict[str, dict[str, str]] = {}
    for row in conn.execute(query("analysis_qual_survey"), {"cluster": cluster}).mappings():
        if row["token"] not in tokens:
            continue
        withdrawn = row["withdrawn_at"] is not None  # a survey withdrawal blanks the answers
        answers = {c: "" if withdrawn else _answer(c, row[c]) for c in SURVEY_COLUMNS}
        found[row["token"]] = {"stratum": str(row["stratum"]), **answers}
    return found


def load_qualitative(conn: Connection, cluster: str, key: bytes | None,
                     codebook_order: Sequence[tuple[str, str]] = ()) -> QualitativeData:
    """Read register, codes, segments, turns (decrypted with ``key``) and linked survey answers.

    Without coded segments, or without the transcript key, the strand is not analysed yet.
    """
    segments = tuple(Segment(r.selection_id, r.session_id, int(r.turn_no), r.participant_id,
                             r.theme, r.subtheme, int(r.start_cp), int(r.end_cp))
                     for r in conn.execute(query("analysis_qual_segments"), {"cluster": cluster}))
    if not segments:
        return QualitativeData(NO_SEGMENTS)
    if key is None:
        return QualitativeData(NO_KEY)
    participants = tuple(load_participants(conn, cluster))
    codes = tuple(Code(r.theme, r.subtheme, r.research_question, r.description, r.origin)
                  for r in conn.execute(query("analysis_qual_codes"), {"cluster": cluster}))
    approved = frozenset(r.session_id for r in conn.execute(query("analysis_qual_approved_sessions"),
                                                             {"cluster": cluster}))
    turns = {(t.session_id, t.turn_no): t for t in load_turns(conn, key, cluster)}
    tokens = {p.survey_token for p in participants if p.survey_token and not p.withdrawn}
    return QualitativeData(ANALYSED, participants, turns, codes, segments, approved,
                           _survey(conn, cluster, tokens), tuple(codebook_order))


# --------------------------------------------------------------------------- excerpts


@dataclass(frozen=True)
class Excerpt:
    """A participant's part of one coded selection: its pieces joined, and where it is."""

    participant_id: str
    theme: str
    subtheme: str
    session_id: str
    first_turn: int
    last_turn: int
    selection_id: str
    text: str

    def __repr__(self) -> str:
        return f"Excerpt({self.session_id} L{self.first_turn}-{self.last_turn}, <text>)"

    __str__ = __repr__

    @property
    def reference(self) -> str:
        """``[FI-01 L12–15]`` (en dash), or ``[FI-01 L12]`` for one line."""
        lines = (f"L{self.first_turn}" if self.first_turn == self.last_turn
                 else f"L{self.first_turn}–{self.last_turn}")
        return f"[{self.session_id} {lines}]"

    @property
    def charted(self) -> str:
        """The excerpt as a matrix cell shows it: text then reference."""
        return f"{self.text} {self.reference}"


def withdrawn_mask(participants: Sequence[Participant]) -> re.Pattern[str] | None:
    """Whole words naming a withdrawn participant (pseudonym, display name, participant_id)."""
    words = {w for p in participants if p.withdrawn
             for w in (p.pseudonym, p.display_name, p.participant_id) if w}
    if not words:
        return None
    alternatives = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
    return re.compile(r"(?<![\w-])(?:" + alternatives + r")(?![\w-])")


def excerpts_of(data: QualitativeData) -> list[Excerpt]:
    """Every participant excerpt (withdrawn participants and the team left out), in transcript order.

    A withdrawn participant named in someone else's words is shown as ``[name]``.
    """
    active = {p.participant_id for p in data.participants if not p.withdrawn}
    mask = withdrawn_mask(data.participants)
    pieces: dict[tuple[str, str, str, str], list[Segment]] = defaultdict(list)
    for segment in data.segments:
        turn = data.turns.get((segment.session_id, segment.turn_no))
        if (segment.participant_id not in active or turn is None or turn.withdrawn
                or turn.participant_id != segment.participant_id):
            continue
        pieces[(segment.participant_id, segment.theme, segment.subtheme,
                segment.selection_id)].append(segment)
    found: list[tuple[tuple[str, int, int, str], Excerpt]] = []
    for (participant, theme, subtheme, selection), parts in pieces.items():
        parts.sort(key=lambda s: (s.session_id, s.turn_no, s.start_cp))
        texts = [data.turns[(s.session_id, s.turn_no)].words[s.start_cp:s.end_cp].strip()
                 for s in parts]
        joined = f" {ELLIPSIS} ".join(t for t in texts if t)
        if mask is not None:
            joined = mask.sub(WITHDRAWN_NAME, joined)
        if not joined:
            continue
        first = parts[0]
        found.append(((first.session_id, first.turn_no, first.start_cp, selection),
                      Excerpt(participant, theme, subtheme, first.session_id, first.turn_no,
                              parts[-1].turn_no, selection, joined)))
    return [excerpt for _, excerpt in sorted(found, key=lambda item: item[0])]


# --------------------------------------------------------------------------- code order


@dataclass(frozen=True)
class Theme:
    """A theme and its matrix columns (subthemes in order; '' = the theme itself)."""

    name: str
    subthemes: tuple[str, ...]
    slug: str


def slug(text: str) -> str:
    """A file-name part: lower case letters and digits joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "theme"


def theme_order(data: QualitativeData) -> list[Theme]:
    """Themes and subthemes: codebook order, then codes added while coding, then the theme level."""
    codes = {(c.theme, c.subtheme): c for c in data.codes}
    for s in data.segments:  # a code only a segment names still gets its column
        codes.setdefault((s.theme, s.subtheme), Code(s.theme, s.subtheme, None, None, "coding"))
    position = {pair: index for index, pair in enumerate(data.codebook_order)}
    late = len(position)

    def rank(pair: tuple[str, str]) -> tuple[int, int, str]:
        code = codes[pair]
        if pair in position:
            return (0, position[pair], "")
        return (1 if code.origin == "codebook" else 2, late, pair[1])

    themes: dict[str, list[str]] = {}
    theme_rank: dict[str, tuple[int, int, str]] = {}
    for pair in sorted(codes, key=lambda p: rank(p) + (p[0],)):
        theme, subtheme = pair
        r = rank(pair)
        theme_rank[theme] = min(theme_rank.get(theme, r), (r[0], r[1], theme))
        themes.setdefault(theme, [])
        if subtheme:
            themes[theme].append(subtheme)
    used_theme_level = {(s.theme) for s in data.segments if not s.subtheme}
    ordered = sorted(themes, key=lambda t: theme_rank[t])
    slugs: dict[str, int] = {}
    result = []
    for theme in ordered:
        columns = themes[theme] + ([""] if theme in used_theme_level else [])
        base = slug(theme)
        slugs[base] = slugs.get(base, 0) + 1
        result.append(Theme(theme, tuple(columns), base if slugs[base] == 1 else f"{base}-{slugs[base]}"))
    return result


def column_name(subtheme: str) -> str:
    """The matrix column (and counts row) of a subtheme; the theme level is ``(theme)``."""
    return subtheme or THEME_COLUMN
