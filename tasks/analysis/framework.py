"""The qualitative strand in ``analyse``: Framework matrices, counts, triangulation, report text.

Framework analysis (qualitative-v1.md §5) charts coded excerpts in a matrix per theme: a row
per participant (pseudonym, strand, role), a column per subtheme, each cell the participant's
excerpts in transcript order, each ending with its reference ``[FI-01 L12–15]``. Everything
is built from the stored, de-identified transcript turns (decrypted in memory with the
transcript key) and the coded segments of the latest ``coding import``. Participants who have
withdrawn are left out of everything: rows, counts, triangulation, report words and quotes.

Decisions (documented here because the report and tests rely on them):

* Matrix columns: the theme's subthemes in codebook order (the rows of
  ``qualitative.codebook``), then codes added while coding (alphabetical), then the theme
  itself as ``(theme)`` when text was coded at theme level. Cell excerpts are separated by a
  line break; the pieces of one selection that span several turns are joined with `` … ``.
  Excerpt text is the stored words sliced by code point, stripped of surrounding spaces; a
  withdrawn participant named in someone else's words (pseudonym or participant_id) is shown as
  ``[name]`` there and in quotes.
* ``segments`` in ``framework_counts.csv`` counts coded segments (one per selection and turn)
  in turns of participants who have not withdrawn; the research team's turns are not counted.
* How widely a subtheme was raised is said in words per strand, as a share of that strand's
  participants (not withdrawn) who spoke in an approved transcript: ``one`` = exactly one
  participant; otherwise ``all`` = every one; ``most`` = more than 60%; ``about half`` = 40% to
  60%; ``some`` = fewer than 40%. A strand where nobody raised it is not mentioned. The report
  never gives a count of participants.
* Quotes: only participants with ``consent_quotes = Y``, by pseudonym; at most
  ``MAX_QUOTES`` per subtheme and one per participant; whole excerpts within
  ``qualitative.max_quote_words`` first (transcript order), then longer ones cut at the limit
  with `` …``. In quotes a participant_id spoken in the text is shown as that participant's
  pseudonym (the matrices keep the stored text exactly as coded).
"""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.analysis.framework_data import (
    ANALYSED,
    NO_KEY,
    NO_SEGMENTS,
    STRANDS,
    SURVEY_COLUMNS,
    THEME_COLUMN,
    Code,
    Excerpt,
    QualitativeData,
    Segment,
    Theme,
    column_name,
    excerpts_of,
    load_qualitative,
    read_codebook_order,
    slug,
    theme_order,
)
from tasks.analysis.framework_said import (
    QualitativeReport,
    QuestionSaid,
    Quote,
    SubthemeSaid,
    ThemeSaid,
    choose_quotes,
    cut,
    extent,
    qualitative_report,
    sentence,
)
from tasks.qualitative.model import FAMILY, PRACTITIONER, Participant

__all__ = [
    "ANALYSED", "NO_KEY", "NO_SEGMENTS", "SURVEY_COLUMNS", "THEME_COLUMN", "Code", "Excerpt",
    "Framework", "Matrix", "QualitativeData", "QualitativeReport", "QuestionSaid", "Quote",
    "Segment", "SubthemeSaid", "Theme", "ThemeSaid", "build_framework", "choose_quotes",
    "column_name", "cut", "excerpts_of", "extent", "load_qualitative", "read_codebook_order",
    "sentence", "slug", "theme_order",
]

@dataclass(frozen=True)
class Matrix:
    """One theme's Framework matrix: header and rows of text (restricted output)."""

    theme: Theme
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __repr__(self) -> str:
        return f"Matrix({len(self.rows)} rows x {len(self.header)} columns)"

    __str__ = __repr__


@dataclass(frozen=True)
class Framework:
    """Everything ``analyse`` writes of the strand (restricted) and says of it (publication)."""

    status: str
    matrices: tuple[Matrix, ...] = ()
    counts_header: tuple[str, ...] = ("theme", "subtheme", "family_participants",
                                      "practitioners", "segments")
    counts: tuple[tuple[str, str, int, int, int], ...] = ()
    triangulation_header: tuple[str, ...] = ()
    triangulation: tuple[tuple[str, ...], ...] = ()
    report: QualitativeReport = field(default_factory=lambda: QualitativeReport(NO_SEGMENTS))
    participants: int = 0
    coded_segments: int = 0

    def __repr__(self) -> str:
        return (f"Framework({self.status}: {len(self.matrices)} themes, {self.coded_segments} "
                "segments)")

    __str__ = __repr__

    @property
    def analysed(self) -> bool:
        return self.status == ANALYSED

    def summary(self) -> dict[str, Any]:
        """Counts only (artifact, command result): status, themes, coded segments, participants."""
        return {"status": self.status, "themes": len(self.matrices),
                "coded_segments": self.coded_segments, "participants": self.participants}


def _matrix(theme: Theme, rows: Sequence[Participant], cells: Mapping[tuple[str, str, str], list[str]]) -> Matrix:
    header = ("pseudonym", "strand", "role", *(column_name(s) for s in theme.subthemes))
    body = tuple((p.display_name, p.strand, p.role,
                  *("\n".join(cells.get((p.participant_id, theme.name, s), [])) for s in theme.subthemes))
                 for p in rows)
    return Matrix(theme, header, body)


def build_framework(data: QualitativeData, max_quote_words: int) -> Framework:
    """Matrices, counts, triangulation and report text of an analysed strand (else its status)."""
    if data.status != ANALYSED:
        return Framework(data.status, report=QualitativeReport(data.status))
    active = sorted((p for p in data.participants if not p.withdrawn),
                    key=lambda p: ([s for s, _, _ in STRANDS].index(p.strand)
                                   if p.strand in (FAMILY, PRACTITIONER) else 2, p.participant_id))
    strand_of = {p.participant_id: p.strand for p in active}
    themes = theme_order(data)
    excerpts = excerpts_of(data)
    cells: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for excerpt in excerpts:
        cells[(excerpt.participant_id, excerpt.theme, excerpt.subtheme)].append(excerpt.charted)
    matrices = tuple(_matrix(theme, active, cells) for theme in themes)
    counted = [s for s in data.segments if s.participant_id in strand_of
               and (s.session_id, s.turn_no) in data.turns
               and not data.turns[(s.session_id, s.turn_no)].withdrawn]
    counts = []
    for theme in themes:
        for subtheme in theme.subthemes:
            mine = [s for s in counted if s.theme == theme.name and s.subtheme == subtheme]
            people = {s.participant_id for s in mine}
            counts.append((theme.name, column_name(subtheme),
                           sum(1 for p in people if strand_of[str(p)] == FAMILY),
                           sum(1 for p in people if strand_of[str(p)] == PRACTITIONER), len(mine)))
    in_theme = {(s.participant_id, s.theme) for s in counted}
    header = ("pseudonym", "stratum", *SURVEY_COLUMNS, *(t.name for t in themes))
    triangulation = []
    for person in active:
        if person.strand != FAMILY or not person.survey_token:
            continue
        answers = data.survey.get(person.survey_token, {})
        triangulation.append((person.display_name, answers.get("stratum", ""),
                              *(answers.get(c, "") for c in SURVEY_COLUMNS),
                              *("Y" if (person.participant_id, t.name) in in_theme else "N" for t in themes)))
    return Framework(ANALYSED, matrices, counts=tuple(counts), triangulation_header=header,
                     triangulation=tuple(triangulation),
                     report=qualitative_report(data, themes, excerpts, active, max_quote_words),
                     participants=len(active), coded_segments=len(counted))
