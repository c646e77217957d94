"""What the report says of the qualitative strand: how widely, in words, and quotes by pseudonym.

Never a count of participants; quotes only from participants who consented to quotes and have
not withdrawn. The cut-offs of the words are in :func:`extent` and the module docstring of
:mod:`tasks.analysis.framework`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tasks.analysis.framework_data import (
    ANALYSED,
    ELLIPSIS,
    MAX_QUOTES,
    STRANDS,
    Excerpt,
    QualitativeData,
    Theme,
)
from tasks.qualitative.model import Participant


@dataclass(frozen=True)
class Quote:
    """A quotation for the report, by pseudonym (consent to quotes checked)."""

    text: str
    pseudonym: str
    strand: str

    def __repr__(self) -> str:
        return "Quote(<text>)"

    __str__ = __repr__

    @property
    def attribution(self) -> str:
        """``Jade (family participant)``."""
        noun = next((one for code, one, _ in STRANDS if code == self.strand), "participant")
        return f"{self.pseudonym} ({noun})"


@dataclass(frozen=True)
class SubthemeSaid:
    """How widely one subtheme was raised (in words) and what was quoted."""

    theme: str
    subtheme: str
    sentence: str
    quotes: tuple[Quote, ...] = ()


@dataclass(frozen=True)
class ThemeSaid:
    """A theme of a research question: its subthemes raised, or a line saying none was."""

    theme: str
    items: tuple[SubthemeSaid, ...]
    none_raised: str = ""


@dataclass(frozen=True)
class QuestionSaid:
    """The "What families and practitioners said" part of one research question's section."""

    key: str
    themes: tuple[ThemeSaid, ...]


@dataclass(frozen=True)
class QualitativeReport:
    """The publication text of the strand, per research question (None = not analysed yet)."""

    status: str
    questions: Mapping[str, QuestionSaid] = field(default_factory=dict)

    @property
    def analysed(self) -> bool:
        return self.status == ANALYSED


def extent(raised: int, took_part: int) -> str | None:
    """How widely, in words: one, all, most (>60%), about half (40-60%), some (<40%); None for none."""
    if raised <= 0 or took_part <= 0:
        return None
    if raised == 1:
        return "one"
    share = raised / took_part
    if share >= 1:
        return "all"
    if share > 0.6:
        return "most"
    if share >= 0.4:
        return "about half"
    return "some"


def _who(word: str, one: str, several: str) -> str:
    """``most family participants``, ``about half of the practitioners``, ``one practitioner``."""
    return {"one": f"one {one}", "all": f"all {several}", "most": f"most {several}",
            "about half": f"about half of the {several}"}.get(word, f"{word} {several}")


def _subject(theme: str, subtheme: str, description: str | None) -> str:
    """What was talked about: the subtheme's name (first letter lowered unless an acronym)."""
    name = subtheme or theme
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        name = name[0].lower() + name[1:]
    detail = (description or "").strip().rstrip(".")
    return f"{name} ({detail})" if detail else name


def sentence(words: Mapping[str, str], theme: str, subtheme: str, description: str | None) -> str:
    """``Most family participants and some practitioners talked about waiting (…).``"""
    parts = [_who(words[code], one, several) for code, one, several in STRANDS if code in words]
    who = " and ".join(parts)
    return f"{who[0].upper()}{who[1:]} talked about {_subject(theme, subtheme, description)}."


def _word_count(text: str) -> int:
    return sum(1 for word in text.split() if word != ELLIPSIS)


def cut(text: str, limit: int) -> str:
    """The first ``limit`` words of a quote followed by `` …``, or the quote when it fits."""
    if _word_count(text) <= limit:
        return text
    kept: list[str] = []
    counted = 0
    for word in text.split():
        if word != ELLIPSIS:
            if counted == limit:
                break
            counted += 1
        kept.append(word)
    while kept and kept[-1] == ELLIPSIS:
        kept.pop()
    return " ".join(kept) + f" {ELLIPSIS}"


def _show_pseudonyms(text: str, names: Mapping[str, str]) -> str:
    """A participant_id spoken in the text shown as that participant's pseudonym."""
    if not names:
        return text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                         + r")(?![\w-])")
    return pattern.sub(lambda m: names[m.group(1)], text)


def choose_quotes(excerpts: Sequence[Excerpt], people: Mapping[str, Participant], limit: int,
                  names: Mapping[str, str], most: int = MAX_QUOTES) -> tuple[Quote, ...]:
    """Up to ``most`` quotes, one per consenting participant: whole ones within the limit first."""
    chosen: list[tuple[int, Quote]] = []
    quoted: set[str] = set()
    for within in (True, False):
        for index, excerpt in enumerate(excerpts):
            person = people.get(excerpt.participant_id)
            if (len(chosen) == most or person is None or not person.consent_quotes
                    or person.withdrawn or person.participant_id in quoted):
                continue
            text = _show_pseudonyms(excerpt.text, names)
            if (_word_count(text) <= limit) != within:
                continue
            chosen.append((index, Quote(cut(text, limit), person.display_name, person.strand)))
            quoted.add(person.participant_id)
    return tuple(quote for _, quote in sorted(chosen, key=lambda item: item[0]))


def _took_part(data: QualitativeData, active: Iterable[Participant]) -> dict[str, set[str]]:
    """Per strand, participants (not withdrawn) who spoke in an approved transcript."""
    spoke = {t.participant_id for t in data.turns.values()
             if t.participant_id and not t.withdrawn and t.session_id in data.approved_sessions}
    base: dict[str, set[str]] = defaultdict(set)
    for person in active:
        if person.participant_id in spoke:
            base[person.strand].add(person.participant_id)
    return base


def qualitative_report(data: QualitativeData, themes: Sequence[Theme], excerpts: Sequence[Excerpt],
            active: Sequence[Participant], max_quote_words: int) -> QualitativeReport:
    """The words and quotes of each research question whose themes the codebook names."""
    people = {p.participant_id: p for p in active}
    names = {p.participant_id: p.display_name for p in active}
    base = _took_part(data, active)
    raised: dict[tuple[str, str], list[Excerpt]] = defaultdict(list)
    for excerpt in excerpts:
        raised[(excerpt.theme, excerpt.subtheme)].append(excerpt)
    for excerpt in excerpts:  # someone who raised it took part, whatever the session state
        base[people[excerpt.participant_id].strand].add(excerpt.participant_id)
    codes = {(c.theme, c.subtheme): c for c in data.codes}
    theme_rq = {c.theme: c.research_question for c in data.codes if not c.subtheme and c.research_question}
    for c in data.codes:
        if c.research_question:
            theme_rq.setdefault(c.theme, c.research_question)
    questions: dict[str, list[ThemeSaid]] = defaultdict(list)
    for theme in themes:
        by_rq: dict[str, list[SubthemeSaid]] = defaultdict(list)
        for subtheme in theme.subthemes:
            code = codes.get((theme.name, subtheme))
            rq = (code.research_question if code and code.research_question else None) or theme_rq.get(theme.name)
            if rq is None:
                continue
            by_rq.setdefault(rq, [])
            found = raised.get((theme.name, subtheme), [])
            words = {}
            for strand, _, _ in STRANDS:
                who = {e.participant_id for e in found if people[e.participant_id].strand == strand}
                word = extent(len(who), len(base.get(strand, ())))
                if word:
                    words[strand] = word
            if not words:
                continue
            by_rq[rq].append(SubthemeSaid(theme.name, subtheme,
                                          sentence(words, theme.name, subtheme, code.description if code else None),
                                          choose_quotes(found, people, max_quote_words, names)))
        if not theme.subthemes and theme_rq.get(theme.name):
            by_rq.setdefault(str(theme_rq[theme.name]), [])
        for rq, items in by_rq.items():
            questions[rq].append(ThemeSaid(theme.name, tuple(items),
                                           "" if items else "No participant talked about this theme."))
    return QualitativeReport(ANALYSED, {rq: QuestionSaid(rq, tuple(said)) for rq, said in questions.items()})
