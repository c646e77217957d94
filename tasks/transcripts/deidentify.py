"""De-identification of transcript words (shared/spec/qualitative-v1.md §3) and the review list.

``Deidentifier.redact`` replaces, in this order:

1. patterns: e-mail → ``[email]``, URL → ``[url]``, full date → ``[date]``, UK phone number →
   ``[phone]`` (phonenumbers; written with a leading 0 or +, so "+44 161 496 0178" is a phone
   even though "161 496 0178" has the shape of an NHS number), NHS number with a valid
   modulus-11 check digit → ``[nhs-number]``, UK postcode → ``[postcode]``. A replaced piece is
   never looked at again, so an e-mail address with a name inside becomes ``[email]`` whole.
2. names and deny-list terms, in one pass over the words, longest match first: a participant's
   full name, each word of it (first name, middle names, surname, the parts of a hyphenated name)
   and each run of its words → that participant's pseudonym; each other name, each word and run of
   words of a multi-word other name → ``[name]``; each deny-list term → ``[tag]``.

Matching is on whole words (``\\w+`` runs: "Jo" does not hit "Joanne"), case-insensitive and
accent-insensitive; a possessive ``'s`` stays ("Sarah's" → "Jade's"). Choices beyond the spec:

* A name that is also a very common English word ("Will", "May", "Hope", "Bill"; wordfreq Zipf
  frequency ≥ ``COMMON_NAME_ZIPF``) is replaced only where it is written with a capital first
  letter, so "I will" stays readable; "Will" and "WILL" are replaced.
* A name shared by participants with different pseudonyms becomes ``[name]`` (counted as
  ``name``); a participant's name wins over a deny-list term or another person's other name.
* Titles and name particles ("Mrs", "de", "van") and one-letter words are not replaced alone.
* Team labels are never replaced.

``Deidentifier.review`` lists the capitalised words left in a de-identified turn that are not at
the start of a sentence (after ``. ! ? …``, at the start of the turn or just after an opening
quote), not a common English word, pseudonym, tag, team label or allow-list term, each term once
per turn in order of first appearance, without a possessive ``'s``. "Common English word" = the
30,000 most frequent English words (wordfreq) minus the first names and surnames of Faker's
en_GB, en_US and en_IE person providers (so "Sarah" or "Kayden" are listed), plus days, months,
nationality words and a few children's-services words ("Early Help", "SENCO", "EHCP", "CAMHS").
Places and brands that are common words ("Leeds", "Tesco") are not listed (those that are also
surnames, "London", "York", are; rarer ones, "Stockport", "Lidl", are): local places that could
identify someone (streets, schools, the cluster) belong in the deny-list.

Nothing here puts transcript text or a name in an exception, a log or a ``repr``.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from wordfreq import top_n_list, zipf_frequency

from tasks.core.errors import ConfigError
from tasks.qualitative.model import Names

DEFAULT_TEAM_LABELS = ("Interviewer", "Facilitator", "Researcher")
COMMON_WORDS_TOP_N = 30_000
COMMON_NAME_ZIPF = 4.5  # a name this frequent as an English word is replaced only when capitalised
FAKER_NAME_PROVIDERS = ("en_GB", "en_US", "en_IE", "en_AU")
NAME_KINDS = ("name", "other_name")
PATTERN_KINDS = ("email", "url", "date", "phone", "nhs_number", "postcode")
PLACEHOLDER = {"email": "[email]", "url": "[url]", "nhs_number": "[nhs-number]", "date": "[date]",
               "phone": "[phone]", "postcode": "[postcode]", "other_name": "[name]"}
# Words never replaced on their own (titles, name particles).
_NOT_ALONE = frozenset("""mr mrs ms miss mx dr prof sir dame lady lord rev st jr jnr sr snr ii iii iv
    de la le du da di del della der den van von ten ter bin ibn al el ap mac mc o and y""".split())
_CALENDAR = ("monday tuesday wednesday thursday friday saturday sunday january february march april may"
             " june july august september october november december")
_NATIONALITIES = ("english british scottish welsh irish european american french german polish spanish"
                  " italian portuguese romanian indian pakistani chinese african caribbean asian muslim"
                  " christian jewish hindu sikh christmas easter")
# Children's-services words that are everyday speech in these interviews ("Early Help", "the SENCO").
_SERVICES = ("early ofsted ehcp ehc senco sendco camhs iapt jobcentre headteacher ofsted sen send gp nhs"
             " diwali eid ramadan hanukkah")
_TAG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_COMBINING = re.compile(r"[\u0300-\u036f]")


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class Person:
    """A participant whose names are replaced by their pseudonym (display_name)."""

    participant_id: str
    pseudonym: str
    names: Names


@dataclass(frozen=True, repr=False, eq=False)
class Redacted:
    """De-identified words and the number of replacements by kind (repr shows counts only)."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)

    def __repr__(self) -> str:
        return f"Redacted(counts={dict(sorted(self.counts.items()))})"

    __str__ = __repr__


# --------------------------------------------------------------------------- deny- and allow-lists


def read_deny_list(path: Path | None) -> dict[str, str]:
    """The deny-list (``term,tag`` rows) as {term: tag}; the file must be private (mode 0600).

    Read where it is and never copied. A header row ``term,tag``, blank lines and lines starting
    with ``#`` are skipped; a term listed twice keeps its first tag. Errors name the line, never
    a term.
    """
    if path is None:
        return {}
    data = _read_private(path, "deny-list")
    terms: dict[str, str] = {}
    rows = csv.reader(io.StringIO(data))
    for line, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if line == 1 and [c.lower() for c in cells] == ["term", "tag"]:
            continue
        if len(cells) != 2 or not cells[0]:
            raise ConfigError(f"the deny-list {path}, line {line}: expected two columns, term and tag")
        tag = cells[1].strip("[]").strip().lower().replace(" ", "-")
        if not _TAG.fullmatch(tag):
            raise ConfigError(f"the deny-list {path}, line {line}: the tag must be letters, digits, '-' or '_'")
        if not _WORD.search(cells[0]):
            raise ConfigError(f"the deny-list {path}, line {line}: the term has no letters or digits")
        terms.setdefault(cells[0], tag)
    return terms


def read_allow_list(path: Path | None) -> frozenset[str]:
    """Terms the review list leaves out (one per line; ``#`` comments), case-folded."""
    if path is None:
        return frozenset()
    try:
        data = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"the allow-list {path} does not exist") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"the allow-list {path} cannot be read as UTF-8 text") from None
    return frozenset(_norm(line) for line in data.splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))


def _read_private(path: Path, what: str) -> str:
    """Text of a secret file after checking only its owner may read it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        raise ConfigError(f"the {what} {path} does not exist") from None
    if mode & 0o077:
        raise ConfigError(f"the {what} {path} is readable by others (mode {mode:04o}): run `chmod 600 {path}`")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"the {what} {path} cannot be read as UTF-8 text") from None


# --------------------------------------------------------------------------- normalisation


def _norm(text: str) -> str:
    """Matching form: accents dropped, case-folded, one space between words, one kind of apostrophe."""
    folded = _COMBINING.sub("", unicodedata.normalize("NFKD", text)).casefold()
    return _SPACE.sub(" ", folded.replace("\u2019", "'").replace("\u2018", "'")).strip()


def _edge_trim(term: str) -> str:
    """A term without leading/trailing punctuation (matching starts and ends on a word)."""
    words = list(_WORD.finditer(term))
    return term[words[0].start():words[-1].end()] if words else ""


@functools.cache
def common_words() -> frozenset[str]:
    """Common English words for the review list: wordfreq's top words minus Faker's names."""
    names: set[str] = set()
    for locale in FAKER_NAME_PROVIDERS:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attribute in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary",
                          "last_names"):
            names.update(_norm(name) for name in getattr(provider, attribute, ()))
    words = set(top_n_list("en", COMMON_WORDS_TOP_N)) - names
    words.update(_CALENDAR.split())
    words.update(_NATIONALITIES.split())
    words.update(_SERVICES.split())
    return frozenset(words)


# --------------------------------------------------------------------------- patterns

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    r"(?<![\w@/.-])(?:(?:https?://|www\.)[^\s<>\"'\[\]]+"
    r"|(?:[a-z0-9-]+\.)+(?:com|org|net|info|io|uk|gov|edu)\b(?:/[^\s<>\"'\[\]]*)?)",
    re.IGNORECASE)
_URL_TRAIL = ".,;:!?)'\""
_NHS = re.compile(r"(?<![\w+])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?!\w)")
_MONTH = (r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
          r"|(?:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)(?:\.(?=\s*\d))?)")
_DAY = r"(?:3[01]|[12]\d|0?[1-9])"
_SUFFIX = r"(?:st|nd|rd|th)"
_ORDINAL_WORD = (r"(?:(?:twenty|thirty)[- ]?)?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)"
                 r"|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth"
                 r"|eighteenth|nineteenth|twentieth|thirtieth")
_YEAR = r"(?:,?\s+(?:\d{4}|'\d{2})(?!\w))"
_DATE_WORDS = re.compile(
    rf"(?<!\w)(?:"
    rf"{_DAY}{_SUFFIX}?(?:\s+of)?\s+{_MONTH}(?!\w){_YEAR}?"                # 12 March 2014, 12th of March
    rf"|(?:{_ORDINAL_WORD})\s+of\s+{_MONTH}(?!\w){_YEAR}?"                  # the twelfth of March
    rf"|{_MONTH}\s+{_DAY}{_SUFFIX}?(?!\w){_YEAR}?"                          # March 12th 2014, March 12
    rf"|{_MONTH}\s+the\s+(?:{_DAY}{_SUFFIX}|{_ORDINAL_WORD})(?!\w){_YEAR}?"  # March the 12th
    rf")", re.IGNORECASE)
_DATE_NUMERIC = re.compile(r"(?<![\w/.-])(?:(\d{1,2})[/.-](\d{1,2})[/.-](?:\d{4}|\d{2})|\d{4}-\d{2}-\d{2})"
                           r"(?![\w/-]|\.\d)")
_POSTCODE = re.compile(r"(?<!\w)(?:gir\s?0aa|[a-z]{1,2}\d[a-z\d]?\s?\d[abd-hjlnp-uw-z]{2})(?!\w)", re.IGNORECASE)

Span = tuple[int, int]


def nhs_number_valid(digits: str) -> bool:
    """True when a 10-digit NHS number's last digit is its modulus-11 check digit."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def _find_emails(text: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        yield m.span()


def _find_urls(text: str) -> Iterator[Span]:
    for m in _URL.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in _URL_TRAIL:
            end -= 1
        yield start, end


def _find_nhs_numbers(text: str) -> Iterator[Span]:
    for m in _NHS.finditer(text):
        if nhs_number_valid("".join(m.groups())):
            yield m.span()


def _find_dates(text: str) -> Iterator[Span]:
    spans = [m.span() for m in _DATE_WORDS.finditer(text)]
    for m in _DATE_NUMERIC.finditer(text):
        day, month = m.group(1), m.group(2)
        if day is None or (1 <= int(day) <= 31 and 1 <= int(month) <= 31 and min(int(day), int(month)) <= 12):
            spans.append(m.span())
    return iter(_disjoint(spans))


def _find_phones(text: str) -> Iterator[Span]:
    if sum(c.isdigit() for c in text) < 7:
        return
    for match in phonenumbers.PhoneNumberMatcher(text, "GB", leniency=phonenumbers.Leniency.POSSIBLE):
        raw = match.raw_string.lstrip("(")
        if raw.startswith(("0", "+")):  # a UK number is written with 0 or +44; bare digit runs are not phones
            yield match.start, match.end


def _find_postcodes(text: str) -> Iterator[Span]:
    for m in _POSTCODE.finditer(text):
        yield m.span()


def _disjoint(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans, earliest then longest first."""
    kept: list[Span] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if not kept or start >= kept[-1][1]:
            kept.append((start, end))
    return kept


_FINDERS: tuple[tuple[str, Callable[[str], Iterator[Span]]], ...] = (
    ("email", _find_emails), ("url", _find_urls), ("date", _find_dates), ("phone", _find_phones),
    ("nhs_number", _find_nhs_numbers), ("postcode", _find_postcodes))

# A text in pieces: (text, protected). Protected pieces are placeholders already written.
Pieces = list[tuple[str, bool]]


def _replace_pattern(pieces: Pieces, kind: str, finder: Callable[[str], Iterator[Span]],
                     counts: Counter[str]) -> Pieces:
    out: Pieces = []
    for piece, protected in pieces:
        if protected:
            out.append((piece, True))
            continue
        position = 0
        for start, end in _disjoint(finder(piece)):
            if start < position or start == end:
                continue
            out.append((piece[position:start], False))
            out.append((PLACEHOLDER[kind], True))
            counts[kind] += 1
            position = end
        out.append((piece[position:], False))
    return [(p, protected) for p, protected in out if p]


# --------------------------------------------------------------------------- names and deny terms


@dataclass(frozen=True)
class _Entry:
    replacement: str
    kind: str
    rank: int  # lower wins when two sources give the same key
    capital_only: bool = False


def _runs(name: str) -> Iterator[str]:
    """The name, each run of two or more of its words, and each word and hyphen part allowed alone."""
    words = name.split()
    yield name
    if len(words) > 2:
        yield f"{words[0]} {words[-1]}"  # first name and surname without the middle names
    for size in range(2, len(words)):
        for start in range(len(words) - size + 1):
            run = words[start:start + size]
            if any(_norm(word) not in _NOT_ALONE for word in run):
                yield " ".join(run)
    for word in words:
        for part in (word, *(word.split("-") if "-" in word else ())):
            if len(_norm(part)) > 1 and _norm(part) not in _NOT_ALONE:
                yield part


class _Table:
    """Normalised key → replacement, looked up by runs of words (longest first)."""

    def __init__(self, team_labels: Iterable[str]) -> None:
        self.entries: dict[str, _Entry] = {}
        self.skip = {_norm(label) for label in team_labels}
        self.first_words: set[str] = set()
        self.lengths: list[int] = []

    def add(self, term: str, entry: _Entry) -> None:
        key = _norm(_edge_trim(term))
        if not key or key in self.skip:
            return
        current = self.entries.get(key)
        if current is not None and current.rank < entry.rank:
            return
        if current is not None and current.rank == entry.rank and current.replacement != entry.replacement:
            if entry.kind == "name":  # two participants share this name: neither pseudonym is safe to use
                entry = _Entry("[name]", "name", entry.rank, current.capital_only or entry.capital_only)
            else:
                return
        if len(_WORD.findall(key)) == 1 and entry.kind in NAME_KINDS and zipf_frequency(key, "en") >= COMMON_NAME_ZIPF:
            entry = _Entry(entry.replacement, entry.kind, entry.rank, True)
        self.entries[key] = entry

    def freeze(self) -> None:
        self.first_words = {_WORD.findall(key)[0] for key in self.entries}
        self.lengths = sorted({len(_WORD.findall(key)) for key in self.entries}, reverse=True)

    def replace(self, text: str, counts: Counter[str]) -> str:
        """Replace every key found in ``text`` (whole words, longest first)."""
        if not self.entries:
            return text
        tokens = list(_WORD.finditer(text))
        words = [_norm(t.group()) for t in tokens]
        out: list[str] = []
        position, i = 0, 0
        while i < len(tokens):
            hit = self._match(text, tokens, words, i) if words[i] in self.first_words else None
            if hit is None:
                i += 1
                continue
            size, entry = hit
            out.append(text[position:tokens[i].start()])
            out.append(entry.replacement)
            counts[entry.kind] += 1
            position = tokens[i + size - 1].end()
            i += size
        out.append(text[position:])
        return "".join(out)

    def _match(self, text: str, tokens: list[re.Match[str]], words: list[str], i: int) -> tuple[int, _Entry] | None:
        for size in self.lengths:
            if i + size > len(tokens):
                continue
            key = words[i]
            for j in range(i + 1, i + size):
                key += _gap(text[tokens[j - 1].end():tokens[j].start()]) + words[j]
            entry = self.entries.get(key)
            if entry is not None and (not entry.capital_only or text[tokens[i].start()].isupper()):
                return size, entry
        return None


def _gap(between: str) -> str:
    """The normalised text between two words of a run (any white space is one space)."""
    return " " if between.isspace() else _SPACE.sub(" ", between.replace("\u2019", "'").replace("\u2018", "'"))


# --------------------------------------------------------------------------- the de-identifier


class Deidentifier:
    """Replaces names, deny-list terms and identifying patterns; lists what may still identify."""

    def __init__(self, people: Iterable[Person], deny: Mapping[str, str], allow: Iterable[str] = (),
                 team_labels: Iterable[str] = DEFAULT_TEAM_LABELS) -> None:
        labels = tuple(team_labels)
        self._people = tuple(people)
        self._table = _Table(labels)
        for person in self._people:
            for run in _runs(person.names.full_name):
                self._table.add(run, _Entry(person.pseudonym, "name", 0))
        for term, tag in deny.items():
            tag = tag.strip().strip("[]").lower()
            self._table.add(term, _Entry(f"[{tag}]", f"deny:{tag}", 1))
        for person in self._people:
            for other in person.names.other_names:
                for run in _runs(other):
                    self._table.add(run, _Entry(PLACEHOLDER["other_name"], "other_name", 2))
        self._table.freeze()
        self._allow = frozenset(_norm(word) for term in allow for word in _WORD.findall(term)) | frozenset(
            _norm(term) for term in allow)
        self._skip_words = frozenset(_norm(w) for text in (*labels, *(p.pseudonym for p in self._people))
                                     for w in _WORD.findall(text))

    def __repr__(self) -> str:
        return f"Deidentifier({len(self._people)} people, {len(self._table.entries)} terms)"

    __str__ = __repr__

    def redact(self, words: str) -> Redacted:
        """The de-identified words and the number of replacements of each kind."""
        counts: Counter[str] = Counter()
        pieces: Pieces = [(unicodedata.normalize("NFC", words), False)]
        for kind, finder in _FINDERS:
            pieces = _replace_pattern(pieces, kind, finder, counts)
        text = "".join(piece if protected else self._table.replace(piece, counts) for piece, protected in pieces)
        return Redacted(text, counts)

    def review(self, redacted_words: str) -> list[str]:
        """Capitalised words left that may identify someone, once per call, in order of appearance."""
        # A placeholder counts as a word (for sentence starts) but is never listed.
        text = _PLACEHOLDER_RE.sub(lambda m: "0" * len(m.group()), redacted_words)
        common = common_words()
        seen: set[str] = set()
        terms: list[str] = []
        for m in _REVIEW_WORD.finditer(text):
            term = _POSSESSIVE.sub("", m.group())
            if not term[:1].isupper() or _sentence_start(text, m.start()):
                continue
            key = _norm(term)
            if key in seen or self._ordinary(key, common):
                continue
            seen.add(key)
            terms.append(term)
        return terms

    def _ordinary(self, key: str, common: frozenset[str]) -> bool:
        """A word that needs no review: common, allowed, a pseudonym or team-label word."""
        bare = _CONTRACTION.sub("", key)
        if bare in common or key in common or key in self._allow or key in self._skip_words:
            return True
        parts = re.split(r"[-']", bare)
        return len(parts) > 1 and all(p in common or p in self._allow or not p for p in parts)


_PLACEHOLDER_RE = re.compile(r"\[[a-z0-9_-]+\]")
_REVIEW_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$", re.IGNORECASE)
_CONTRACTION = re.compile(r"'(?:s|m|ll|re|ve|d)$|n't$")
_TITLES = frozenset("mr mrs ms mx dr prof rev st".split())
_OPENING_QUOTES = "\u201c\u2018"
_AMBIGUOUS_QUOTES = "\"'"
_CLOSING = "\"'\u201d\u2019)]"
_SENTENCE_END = ".!?\u2026"


def _sentence_start(text: str, start: int) -> bool:
    """True at the start of the turn, of a sentence, or of a quotation."""
    if not _WORD.search(text, 0, start):
        return True
    before = text[max(0, start - 40):start].rstrip()
    if not before:
        return False
    last = before[-1]
    if last in _OPENING_QUOTES:
        return True
    if last in _AMBIGUOUS_QUOTES and (len(before) == 1 or before[-2].isspace() or before[-2] in ":,(—–-"):
        return True
    before = before.rstrip(_CLOSING)
    previous = before[:-1].split()[-1:] if before.endswith(".") else []
    if previous and _norm(previous[0]) in _TITLES:
        return False  # "Mr. Holloway": a title's full stop ends no sentence
    return before[-1:] in tuple(_SENTENCE_END)
