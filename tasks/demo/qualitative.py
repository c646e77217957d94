"""A SYNTHETIC qualitative corpus for the demo and the tests (DEMO ONLY; never real data).

``make_corpus(seed)`` gives a participants register (qualitative-v1.md §1), transcripts of two
family group interviews and two practitioner focus groups in all three delivered formats (docx,
txt, WebVTT as Teams and Zoom write it), a deny-list and a codebook. The transcripts carry
PLANTED identifiers (names, other names, deny-list terms, e-mails, UK phone numbers, postcodes,
full dates, NHS numbers with a valid check digit, URLs), each recorded in ``planted`` so tests
can check that de-identification removed every one. Names come from Faker (en_GB, seeded);
phone numbers are in Ofcom's drama ranges and NHS numbers in the 999 test range, so none is
anybody's. The same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from faker import Faker
from wordfreq import zipf_frequency

from schemas.codes import LEAD_WORKER_ROLE
from tasks.core.archive import aes_zip_bytes
from tasks.core.home import Home, write_private
from tasks.demo import qualitative_bank as bank
from tasks.demo.transcript_formats import docx_bytes, txt_bytes, vtt_bytes
from tasks.qualitative.model import FAMILY, PRACTITIONER

REGISTER_COLUMNS = ("participant_id", "strand", "session_id", "session_date", "role", "survey_token",
                    "full_name", "other_names", "chosen_pseudonym", "consent_form_version",
                    "info_sheet_version", "consent_date", "consent_recording", "consent_quotes",
                    "withdrawn_date")
CODEBOOK_COLUMNS = ("theme", "subtheme", "research_question", "description")
PLANTED_KINDS = ("name", "other_name", "deny", "email", "phone", "postcode", "date", "nhs_number", "url")
PRACTITIONER_ROLES = (*LEAD_WORKER_ROLE, "manager", "other")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


@dataclass(frozen=True)
class Planted:
    """One identifier written into a raw transcript (``text`` exactly as it appears there)."""

    session_id: str
    kind: str
    text: str


@dataclass
class SyntheticCorpus:
    """Register rows, transcripts (member name -> bytes), deny-list, codebook and what was planted."""

    register_rows: list[dict[str, str]]
    transcripts: dict[str, bytes]
    deny_list: list[tuple[str, str]]
    codebook_rows: list[dict[str, str]]
    planted: list[Planted]
    words: int
    speakers: dict[str, list[str]] = field(default_factory=dict)  # session -> speaker label per turn

    def __repr__(self) -> str:
        return (f"SyntheticCorpus({len(self.register_rows)} participants, {len(self.transcripts)} "
                f"transcripts, {self.words} words, {len(self.planted)} planted)")


@dataclass(frozen=True)
class _Session:
    session_id: str
    strand: str
    fmt: str  # docx | txt | vtt-teams | vtt-zoom
    size: int
    team_label: str
    session_date: date


SESSIONS = (
    _Session("FI-01", FAMILY, "docx", 4, "Interviewer", date(2021, 10, 12)),
    _Session("FI-02", FAMILY, "txt", 3, "Interviewer", date(2021, 10, 19)),
    _Session("FG-1", PRACTITIONER, "vtt-teams", 6, "Facilitator", date(2021, 11, 3)),
    _Session("FG-2", PRACTITIONER, "vtt-zoom", 7, "Facilitator", date(2021, 11, 10)),
)
QUOTES_REFUSED = frozenset({"F03", "P09"})  # consent_quotes = N
LABEL_STYLE = {  # how each participant is labelled in the transcript (the rest: full name)
    "F02": "id", "F03": "first", "F05": "first", "F06": "id",
    "P08": "first", "P09": "id", "P10": "first", "P12": "id", "P13": "first",
}


@dataclass
class _Person:
    participant_id: str
    session: _Session
    role: str
    first: str
    surname: str
    pseudonym: str
    nickname: str = ""
    children: tuple[str, ...] = ()
    child_relation: str = "son"
    partner: str = ""  # first name; the partner shares the surname

    @property
    def full(self) -> str:
        return f"{self.first} {self.surname}"

    @property
    def label(self) -> str:
        style = LABEL_STYLE.get(self.participant_id, "full")
        return {"id": self.participant_id, "first": self.first}.get(style, self.full)

    @property
    def other_names(self) -> list[str]:
        names = [self.nickname] if self.nickname else []
        names += list(self.children)
        if self.partner:
            names.append(f"{self.partner} {self.surname}")
        return names


class _Names:
    """Seeded synthetic names, unique in the corpus and never an ordinary word of the transcripts."""

    def __init__(self, seed: int, reserved: set[str]) -> None:
        self._fake = Faker("en_GB")
        self._fake.seed_instance(seed)
        self._used = {word.lower() for word in reserved}

    def _take(self, draw: Callable[[], str]) -> str:
        for _ in range(1000):
            name = draw()
            low = name.lower()
            if (name.isascii() and name.isalpha() and len(name) >= 3 and low not in self._used
                    and zipf_frequency(low, "en") < 4.8):
                self._used.add(low)
                return str(name)
        raise RuntimeError("no unused synthetic name left")  # pragma: no cover

    def female(self) -> str:
        return self._take(self._fake.first_name_female)

    def male(self) -> str:
        return self._take(self._fake.first_name_male)

    def surname(self) -> str:
        return self._take(self._fake.last_name)

    def nickname(self, first: str, rng: random.Random) -> str:
        def draw() -> str:
            return first[:rng.choice((2, 3))] + rng.choice(("ie", "sy", "o", "z", "ggs", "na"))
        return self._take(draw)


def _vocabulary() -> set[str]:
    """Every word of the sentence banks (a name must never be one of them)."""
    texts: list[str] = []
    for topics in (bank.FAMILY_TOPICS, bank.PRACTITIONER_TOPICS):
        for _, questions, answers in topics:
            texts += [*questions, *answers]
    texts += [*bank.FAMILY_PLANTS, *bank.PRACTITIONER_PLANTS, bank.TEAM_NAMES_NEXT]
    words = {w.strip(".,?'{}").lower() for t in texts for w in t.replace("_", " ").split()}
    return words | {"interviewer", "facilitator", "researcher", "practitioner", "term", "tag"}


def _people(rng: random.Random, names: _Names) -> list[_Person]:
    people: list[_Person] = []
    family_pseudonyms = iter(rng.sample(bank.FAMILY_PSEUDONYMS, 7))
    practitioner_pseudonyms = iter(rng.sample(bank.PRACTITIONER_PSEUDONYMS, 7))
    number = {FAMILY: 0, PRACTITIONER: 0}
    for session in SESSIONS:
        for _ in range(session.size):
            number[session.strand] += 1
            if session.strand == FAMILY:
                pid = f"F{number[FAMILY]:02d}"
                role = rng.choice(bank.FAMILY_ROLES)
                person = _Person(pid, session, role, names.female(), names.surname(), next(family_pseudonyms))
                person.nickname = names.nickname(person.first, rng) if rng.random() < 0.5 else ""
                person.child_relation = rng.choice(("son", "daughter"))
                first_child = names.male() if person.child_relation == "son" else names.female()
                person.children = (first_child, *[names.male() if rng.random() < 0.5 else names.female()
                                                  for _ in range(rng.choice((0, 1)))])
                person.partner = names.male() if rng.random() < 0.6 else ""
            else:
                pid = f"P{number[PRACTITIONER]:02d}"
                role = PRACTITIONER_ROLES[(number[PRACTITIONER] - 1) % len(PRACTITIONER_ROLES)]
                first = names.female() if rng.random() < 0.7 else names.male()
                pseudonym = next(practitioner_pseudonyms) if number[PRACTITIONER] % 2 else ""
                person = _Person(pid, session, role, first, names.surname(), pseudonym)
                person.nickname = names.nickname(first, rng) if number[PRACTITIONER] % 3 == 0 else ""
            people.append(person)
    # Every session needs someone with a nickname to say the nickname sentence.
    for session in SESSIONS:
        members = [p for p in people if p.session == session]
        if not any(p.nickname for p in members):
            members[0].nickname = names.nickname(members[0].first, rng)
    return people


def _register_row(person: _Person, tokens: dict[str, str]) -> dict[str, str]:
    session = person.session
    consent = session.session_date - timedelta(days=7 if session.strand == FAMILY else 14)
    family = session.strand == FAMILY
    return {
        "participant_id": person.participant_id, "strand": session.strand, "session_id": session.session_id,
        "session_date": session.session_date.isoformat(), "role": person.role,
        "survey_token": tokens.get(person.participant_id, ""), "full_name": person.full,
        "other_names": ";".join(person.other_names), "chosen_pseudonym": person.pseudonym,
        "consent_form_version": "FI-consent-v1.2" if family else "FG-consent-v1.0",
        "info_sheet_version": "FI-info-v1.1" if family else "FG-info-v1.0",
        "consent_date": consent.isoformat(), "consent_recording": "Y",
        "consent_quotes": "N" if person.participant_id in QUOTES_REFUSED else "Y", "withdrawn_date": "",
    }


def _nhs_check_digit(first_nine: Sequence[int]) -> int:
    """The modulus-11 check digit of an NHS number (10 = no valid number with these digits)."""
    check = 11 - sum(d * w for d, w in zip(first_nine, range(10, 1, -1), strict=True)) % 11
    return 0 if check == 11 else check


def nhs_number(rng: random.Random) -> str:
    """A 10-digit NHS number in the 999 test range with a valid modulus-11 check digit."""
    while True:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        check = _nhs_check_digit(digits)
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def nhs_check_digit_ok(number: str) -> bool:
    """Whether a 10-digit NHS number (spaces allowed) has a valid modulus-11 check digit."""
    digits = [int(c) for c in number if c.isdigit()]
    return len(digits) == 10 and _nhs_check_digit(digits[:9]) == digits[9]


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


class _Slots:
    """Fills the slots of planted sentences with seeded identifiers and records each one."""

    def __init__(self, rng: random.Random, session: _Session, deny: dict[str, list[str]],
                 planted: list[Planted]) -> None:
        self.rng, self.session, self.deny, self.planted = rng, session, deny, planted

    def plant(self, kind: str, value: str) -> str:
        self.planted.append(Planted(self.session.session_id, kind, value))
        return value

    def phone(self) -> str:
        styles = ("0161 496 0{n:03d}", "(0113) 496 0{n:03d}", "+44 161 496 0{n:03d}",
                  "020 7946 0{n:03d}", "07700 900{n:03d}")
        style = styles[sum(p.kind == "phone" for p in self.planted) % len(styles)]  # every style in turn
        return style.format(n=self.rng.randrange(1000))

    def postcode(self) -> str:
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        return (f"{self.rng.choice(bank.POSTCODE_AREAS)}{self.rng.randrange(1, 20)} "
                f"{self.rng.randrange(10)}{self.rng.choice(letters)}{self.rng.choice(letters)}")

    def date(self, style: str) -> str:
        start = date(2008, 1, 1) if style == "slash" else date(2019, 9, 1)  # a birthday, else a meeting
        day = start + timedelta(days=self.rng.randrange(3000 if style == "slash" else 700))
        if style == "slash":
            return day.strftime("%d/%m/%Y")
        if style == "long":
            return f"{day.day} {MONTHS[day.month - 1]} {day.year}"
        return f"{_ordinal(day.day)} of {MONTHS[day.month - 1]}"

    def nhs(self) -> str:
        number = nhs_number(self.rng)
        return f"{number[:3]} {number[3:6]} {number[6:]}" if self.session.strand == FAMILY else number

    def fill(self, template: str, speaker: _Person, other: _Person) -> str:
        values: dict[str, str] = {}
        if "{other_first}" in template:
            values["other_first"] = self.plant("name", other.first)
        if "{other_first_poss}" in template:
            values["other_first_poss"] = self.plant("name", f"{other.first}'s")
        if "{other_full}" in template:
            values["other_full"] = self.plant("name", other.full)
        if "{other_surname}" in template:
            values["other_surname"] = self.plant("name", other.surname)
        if "{child_own}" in template:
            values["child_own"] = self.plant("other_name", speaker.children[0])
        if "{child_own_poss}" in template:
            values["child_own_poss"] = self.plant("other_name", f"{speaker.children[-1]}'s")
        values["child_relation"] = speaker.child_relation
        if "{nickname_own}" in template:
            values["nickname_own"] = self.plant("other_name", speaker.nickname)
        if "{partner_own}" in template:
            values["partner_own"] = self.plant("other_name", speaker.partner)
        for slot in ("school", "street", "cluster", "prac_full", "prac_first"):
            if "{" + slot + "}" in template:
                values[slot] = self.plant("deny", self.rng.choice(self.deny[slot]))
        generated = {"email": lambda: self._email(speaker), "phone": self.phone, "postcode": self.postcode,
                     "date_slash": lambda: self.date("slash"), "date_long": lambda: self.date("long"),
                     "date_ordinal": lambda: self.date("ordinal"), "nhs": self.nhs,
                     "url": lambda: self.rng.choice(bank.URLS)}
        kinds = {"email": "email", "phone": "phone", "postcode": "postcode", "nhs": "nhs_number", "url": "url"}
        for slot, make in generated.items():
            if "{" + slot + "}" in template:
                values[slot] = self.plant(kinds.get(slot, "date"), make())
        return template.format(**values)

    def _email(self, speaker: _Person) -> str:
        if self.session.strand == PRACTITIONER:
            return self.rng.choice(("earlyhelp.duty@example.org", "familyhub.referrals@example.gov.uk"))
        return f"{speaker.first.lower()}.{speaker.surname.lower()}{self.rng.randrange(10, 99)}@example.com"


def _usable(template: str, speaker: _Person) -> bool:
    """Whether a planted sentence can be said by this speaker (own child, nickname, partner)."""
    needs = {"{child_own": bool(speaker.children), "{nickname_own}": bool(speaker.nickname),
             "{partner_own}": bool(speaker.partner)}
    return all(ok for slot, ok in needs.items() if slot in template)


def _conversation(rng: random.Random, session: _Session, members: list[_Person], slots: _Slots
                  ) -> list[tuple[str, str]]:
    """(speaker label, words) per turn: topics in order, a question then two to four answers each."""
    topics = bank.FAMILY_TOPICS if session.strand == FAMILY else bank.PRACTITIONER_TOPICS
    plants = list(bank.FAMILY_PLANTS if session.strand == FAMILY else bank.PRACTITIONER_PLANTS)
    rng.shuffle(plants)
    turns: list[tuple[_Person | None, list[str]]] = []
    for topic_no, (_, questions, answers) in enumerate(topics):
        turns.append((None, [rng.choice(questions)]))
        speakers = rng.sample(members, min(len(members), rng.choice((2, 3, 4))))
        pool: list[str] = []
        for speaker_no, speaker in enumerate(speakers):
            if len(pool) < 3:  # each answer said once per topic until the bank runs out
                pool += rng.sample(answers, len(answers))
            turns.append((speaker, [pool.pop() for _ in range(rng.choice((1, 2, 2, 3)))]))
            if topic_no in (1, 4) and speaker_no == 0:  # the team names someone once in a while
                other = rng.choice([m for m in members if m is not speaker])
                turns.append((None, [slots.fill(bank.TEAM_NAMES_NEXT, other, speaker)]))
    answer_turns = [(speaker, sentences) for speaker, sentences in turns if speaker is not None]
    load = [0] * len(answer_turns)  # planted sentences per turn: spread them out
    for template in plants:
        candidates = [i for i, (speaker, _) in enumerate(answer_turns) if _usable(template, speaker)]
        if not candidates:
            continue
        least = min(load[i] for i in candidates)
        chosen = rng.choice([i for i in candidates if load[i] == least])
        load[chosen] += 1
        speaker, sentences = answer_turns[chosen]
        other = rng.choice([m for m in members if m is not speaker])
        sentences.insert(rng.randrange(len(sentences) + 1), slots.fill(template, speaker, other))
    return [(speaker.label if speaker else session.team_label, " ".join(sentences))
            for speaker, sentences in turns]


def _deny_terms(rng: random.Random, names: _Names) -> dict[str, list[str]]:
    practitioners = [(names.female(), names.surname()) for _ in range(2)]
    return {"school": rng.sample(bank.SCHOOLS, 2), "street": rng.sample(bank.STREETS, 2),
            "cluster": [rng.choice(bank.CLUSTERS)],
            "prac_full": [f"{first} {surname}" for first, surname in practitioners],
            "prac_first": [first for first, _ in practitioners]}


def codebook_rows() -> list[dict[str, str]]:
    """The demo study's codebook: one row per subtheme (theme, subtheme, research_question, description)."""
    return [{"theme": theme, "subtheme": subtheme, "research_question": rq, "description": description}
            for theme, rq, subthemes in bank.CODEBOOK for subtheme, description in subthemes]


def make_corpus(seed: int = 2021, survey_tokens: Sequence[str] = ()) -> SyntheticCorpus:
    """The synthetic register, transcripts, deny-list and codebook for a seed (same seed, same bytes).

    ``survey_tokens`` are given, in order, to the family participants (F01, F02, ...).
    """
    rng = random.Random(seed)
    reserved = _vocabulary() | set(bank.FAMILY_PSEUDONYMS) | set(bank.PRACTITIONER_PSEUDONYMS)
    reserved |= {w for term in (*bank.SCHOOLS, *bank.STREETS, *bank.CLUSTERS) for w in term.split()}
    names = _Names(seed, reserved)
    people = _people(rng, names)
    deny = _deny_terms(rng, names)
    families = [p.participant_id for p in people if p.session.strand == FAMILY]
    tokens = dict(zip(families, survey_tokens, strict=False))
    planted: list[Planted] = []
    transcripts: dict[str, bytes] = {}
    speakers: dict[str, list[str]] = {}
    words = 0
    for session in SESSIONS:
        members = [p for p in people if p.session == session]
        turns = _conversation(rng, session, members, _Slots(rng, session, deny, planted))
        words += sum(len(w.split()) for _, w in turns)
        speakers[session.session_id] = [label for label, _ in turns]
        if session.fmt == "docx":
            transcripts[f"{session.session_id}.docx"] = docx_bytes(turns)
        elif session.fmt == "txt":
            transcripts[f"{session.session_id}.txt"] = txt_bytes(turns)
        else:
            transcripts[f"{session.session_id}.vtt"] = vtt_bytes(turns, rng, teams=session.fmt == "vtt-teams")
    deny_list = [(term, tag) for tag in ("school", "street", "cluster") for term in deny[tag]]
    deny_list += [(term, "practitioner") for term in (*deny["prac_full"], *deny["prac_first"])]
    return SyntheticCorpus(register_rows=[_register_row(p, tokens) for p in people], transcripts=transcripts,
                           deny_list=deny_list, codebook_rows=codebook_rows(), planted=planted, words=words,
                           speakers=speakers)


def with_recording_refused(corpus: SyntheticCorpus, participant_id: str = "F01") -> SyntheticCorpus:
    """A BAD variant: the same corpus with consent_recording = N for a participant who speaks."""
    rows = [dict(row, consent_recording="N") if row["participant_id"] == participant_id else dict(row)
            for row in corpus.register_rows]
    return replace(corpus, register_rows=rows)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def register_csv(corpus: SyntheticCorpus) -> bytes:
    """participants.csv of the register (spec column order, ISO dates, Y/N)."""
    return _csv(REGISTER_COLUMNS, [[row[c] for c in REGISTER_COLUMNS] for row in corpus.register_rows])


def deny_list_csv(corpus: SyntheticCorpus) -> bytes:
    """The deny-list file: a ``term,tag`` header, then one row per term."""
    return _csv(("term", "tag"), corpus.deny_list)


def codebook_csv(corpus: SyntheticCorpus) -> bytes:
    """The codebook file: theme, subtheme, research_question, description."""
    return _csv(CODEBOOK_COLUMNS, [[row[c] for c in CODEBOOK_COLUMNS] for row in corpus.codebook_rows])


def encrypted_delivery(members: dict[str, bytes], passphrase: str) -> bytes:
    """An AES-256 ZIP holding the members, as a delivery to ``participants``/``transcripts import``."""
    return aes_zip_bytes(members, passphrase)


@dataclass(frozen=True)
class DemoCorpusFiles:
    """Where the demo put its synthetic qualitative deliveries and study files (paths and counts only)."""

    register: Path  # encrypted delivery holding participants.csv
    transcripts: Path  # encrypted delivery holding the transcripts
    codebook: Path
    deny_list: Path  # 0600, read in place by de-identification
    sessions: tuple[str, ...]
    participants: int
    families_with_token: int
    planted: int


def write_demo_corpus(home: Home, passphrase: str, seed: int, survey_tokens: Sequence[str]) -> DemoCorpusFiles:
    """Write the synthetic register and transcripts as encrypted deliveries into HOME/inbox/qualitative
    (a sub-folder: the inbox pick-up takes only extracts at the top level) and the codebook and
    deny-list into HOME/demo (all 0600).

    A delivery already written for this seed is kept as it is, so running the demo again imports
    the same bytes (a duplicate, nothing changes) instead of re-delivering approved transcripts.
    """
    corpus = make_corpus(seed, survey_tokens)
    inbox, study = home.inbox / "qualitative", home.root / "demo"
    files = {inbox / f"SIMULATED-demo-participants-{seed}.zip":
             lambda: encrypted_delivery({"participants.csv": register_csv(corpus)}, passphrase),
             inbox / f"SIMULATED-demo-transcripts-{seed}.zip":
             lambda: encrypted_delivery(corpus.transcripts, passphrase)}
    for path, make in files.items():
        if not path.exists():
            write_private(path, make())
    register, transcripts = files
    codebook, deny_list = study / "codebook.csv", study / "deny-list.csv"
    write_private(codebook, codebook_csv(corpus))
    write_private(deny_list, deny_list_csv(corpus))
    return DemoCorpusFiles(register, transcripts, codebook, deny_list,
                           tuple(name.rsplit(".", 1)[0] for name in sorted(corpus.transcripts)),
                           len(corpus.register_rows), sum(1 for r in corpus.register_rows if r["survey_token"]),
                           len(corpus.planted))
