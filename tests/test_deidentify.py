"""De-identification rules (qualitative-v1.md §3): exact outputs, the review list, the deny-list file, recall."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st
from wordfreq import zipf_frequency

from tasks.core.errors import ConfigError
from tasks.qualitative.model import Names
from tasks.transcripts.deidentify import (
    COMMON_NAME_ZIPF,
    Deidentifier,
    Person,
    Redacted,
    common_words,
    nhs_number_valid,
    read_allow_list,
    read_deny_list,
)

PEOPLE = [
    Person("F01", "Jade", Names("Sarah Jane Smith", ("Kayden", "Nana Rose", "Will"))),
    Person("F02", "Otter", Names("Maria de la Cruz", ("Jo",))),
    Person("P01", "Practitioner 1", Names("Karen O'Brien-Hughes", ())),
]
DENY = {"Green Lane Primary": "school", "Green Lane": "street", "Leeds": "cluster", "St. Mary's": "school",
        "Zoë Ward": "practitioner"}


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return Deidentifier(PEOPLE, DENY, ["CAMHS", "Sure Start"])


REDACTIONS = [
    # participants' names: full, first, surname, middle, first + surname, possessive, any case
    ("Sarah Jane Smith came.", "Jade came.", {"name": 1}),
    ("Sarah's son and Smith's car", "Jade's son and Jade's car", {"name": 2}),
    ("sarah and SARAH and SMITH'S", "Jade and Jade and Jade'S", {"name": 3}),
    ("Sarah Smith said so", "Jade said so", {"name": 1}),
    ("Jane rang", "Jade rang", {"name": 1}),
    ("Maria de la Cruz met Mrs Cruz; de la Cruz; crème de la crème", "Otter met Mrs Otter; Otter; crème de la crème",
     {"name": 3}),
    ("Karen O'Brien-Hughes, O'Brien and Hughes", "Practitioner 1, Practitioner 1 and Practitioner 1", {"name": 3}),
    # whole words only
    ("Joanne was jolly with Joe", "Joanne was jolly with Joe", {}),
    ("Jo and jo, JO's mum", "[name] and [name], [name]'s mum", {"other_name": 3}),
    ("Sarahs and Smithy", "Sarahs and Smithy", {}),
    # other names: whole multi-word name once, each word alone
    ("Nana Rose and Kayden's school", "[name] and [name]'s school", {"other_name": 2}),
    ("Nana came, Rose stayed", "[name] came, [name] stayed", {"other_name": 2}),
    # a name that is a very common word is replaced only when capitalised
    ("I will tell Will, WILL and the rose", "I will tell [name], [name] and the rose", {"other_name": 2}),
    # deny-list: multi-word, longest first, possessive, punctuation inside, accents either way
    ("Green Lane Primary is on Green Lane in LEEDS", "[school] is on [street] in [cluster]",
     {"deny:school": 1, "deny:street": 1, "deny:cluster": 1}),
    ("St. Mary's and Leeds's and green lane", "[school] and [cluster]'s and [street]",
     {"deny:school": 1, "deny:cluster": 1, "deny:street": 1}),
    ("Zoe Ward and Zoë Ward", "[practitioner] and [practitioner]", {"deny:practitioner": 2}),
    ("Leedsy Greenlane", "Leedsy Greenlane", {}),
    # team labels are never replaced
    ("the Interviewer asked", "the Interviewer asked", {}),
    # e-mail and URL before names
    ("mail sarah.smith@example.org or Jo@x.co.uk", "mail [email] or [email]", {"email": 2}),
    ("see https://www.example.org/sarah?x=1, www.smith.com. and nhs.uk/leeds", "see [url], [url]. and [url]",
     {"url": 3}),
    # UK phone numbers
    ("07700 900123, +44 7700 900123, 0113 496 0000, (0113) 4960000, 07700900123 and 0044 113 496 0000.",
     "[phone], [phone], [phone], [phone], [phone] and [phone].", {"phone": 6}),
    ("+44 161 496 0178 is a phone", "[phone] is a phone", {"phone": 1}),
    ("in 2014 2015 we paid 25,000", "in 2014 2015 we paid 25,000", {}),
    # UK postcodes, with and without the space, any case
    ("LS1 4AP, ls14ap, SW1A 1AA, M1 1AE, B33 8TH, CR2 6XH, DN55 1PT, GIR 0AA.",
     "[postcode], [postcode], [postcode], [postcode], [postcode], [postcode], [postcode], [postcode].",
     {"postcode": 8}),
    ("a B52 bomber and LS1 4", "a B52 bomber and LS1 4", {}),
    # full dates
    ("12/03/2014, 12-03-2014, 1.3.14 and 2014-03-12", "[date], [date], [date] and [date]", {"date": 4}),
    ("12 March 2014, 12th of March, March 12th 2014, 12th March, March the 3rd, the twelfth of May.",
     "[date], [date], [date], [date], [date], the [date].", {"date": 6}),
    ("Mon 1st Jan. 2019 and Sept 30", "Mon [date] and [date]", {"date": 2}),
    # not full dates: bare month, year, weekday, month + year, a count after a month
    ("In March 2014 on a Monday in May, 2014, the 12th, in May the 3 of us", "In March 2014 on a Monday in May, "
     "2014, the 12th, in May the 3 of us", {}),
    ("32/13/2014 and 12/03", "32/13/2014 and 12/03", {}),
    # NHS numbers with a valid check digit, with or without spaces or dashes
    ("943 476 5919, 943-476-5919 and 9434765919", "[nhs-number], [nhs-number] and [nhs-number]", {"nhs_number": 3}),
    ("943 476 5910 and 94347659190", "943 476 5910 and 94347659190", {}),
]


@pytest.mark.parametrize(("words", "expected", "counts"), REDACTIONS)
def test_redact_rules(deid: Deidentifier, words: str, expected: str, counts: dict[str, int]) -> None:
    result = deid.redact(words)
    assert result.text == expected
    assert result.counts == Counter(counts)


def test_email_with_a_name_inside_is_one_email(deid: Deidentifier) -> None:
    result = deid.redact("Kayden.Smith@leeds.example.org")
    assert (result.text, result.counts) == ("[email]", Counter({"email": 1}))


def test_shared_name_and_precedence() -> None:
    people = [Person("F01", "Jade", Names("Sam Green", ())), Person("F02", "Otter", Names("Sam Black", ("Green",))),
              Person("F03", "Heron", Names("Alex Brown", ("Alex Junior",)))]
    deid = Deidentifier(people, {"Black": "street"})
    # "Sam" is two participants' name: neither pseudonym; "Green" is F01's surname and F02's other name
    # (the participant wins); "Black" is a surname and a deny term (the participant wins); "Junior" alone
    # is an other name's word.
    result = deid.redact("Sam Green, Sam, Green, Black, Junior and Alex Junior")
    assert result.text == "Jade, [name], Jade, Otter, [name] and [name]"
    assert result.counts == Counter({"name": 4, "other_name": 2})


def test_team_labels_are_never_replaced() -> None:
    deid = Deidentifier([Person("F01", "Jade", Names("Faith Facilitator", ()))], {"Researcher": "role"},
                        team_labels=("Facilitator", "Researcher"))
    assert deid.redact("Faith Facilitator, Facilitator, Researcher").text == "Jade, Facilitator, Researcher"


def test_nhs_check_digit() -> None:
    assert nhs_number_valid("9434765919")
    assert not nhs_number_valid("9434765910")
    assert not nhs_number_valid("943476591")
    # a number whose check digit would be 10 is never valid
    assert [d for d in range(10) if nhs_number_valid(f"000000006{d}")] == []


REVIEWS = [
    # sentence and turn starts skipped; an unknown name listed once per turn, without its 's
    ("Bartholomew came. Kayden came. Then Fred met Fred's dog and Tuesday", ["Fred"]),
    # tags, pseudonyms, team labels, allow-list terms and common words skipped; all-caps listed unless common
    ("We saw Jade and [name] at [school] with the Interviewer, Practitioner 1, CAMHS, Sure Start, the NHS, "
     "the Council, the SENCO, Early Help, PDQX, Stockport and Leeds in March", ["PDQX", "Stockport"]),
    ("I'm sure I'll ask Kayden's teacher, Miss Holloway, about Jo-Anne", ["Kayden", "Holloway", "Jo-Anne"]),
    # after an opening quote is a start; after a closing quote and a sentence end too
    ('she said "Brilliant, really" and “Okay” then \'Fine\' and (Kayden) too.', ["Kayden"]),
    ('"That is it." Kayden and so [date] Priya left', ["Priya"]),
    ("[name] Kayden", ["Kayden"]),
    ("we saw Mr. Holloway and Dr. Patel. Mrs. Okafor came", ["Holloway", "Patel", "Okafor"]),
    ("... Kayden", []),
]


@pytest.mark.parametrize(("words", "expected"), REVIEWS)
def test_review_list(deid: Deidentifier, words: str, expected: list[str]) -> None:
    assert deid.review(words) == expected


def test_review_common_words_keep_names_out() -> None:
    common = common_words()
    assert {"monday", "march", "may", "leeds", "tesco", "nhs", "english", "the", "i"} <= common
    assert not {"sarah", "kayden", "fred", "smith", "london"} & common  # London is a surname too


def test_redacted_and_deidentifier_show_no_text(deid: Deidentifier) -> None:
    result = deid.redact("Sarah Smith rang 07700 900123")
    assert repr(result) == "Redacted(counts={'name': 1, 'phone': 1})" == str(result)
    assert "Sarah" not in repr(deid) and "Smith" not in repr(PEOPLE[0])
    assert isinstance(result, Redacted) and result.text == "Jade rang [phone]"


# --------------------------------------------------------------------------- deny- and allow-list files


def test_deny_list_file(tmp_path: Path) -> None:
    path = tmp_path / "deny.csv"
    path.write_text("term,tag\nGreen Lane Primary,school\n\n# a comment\n\"Smith, Jones & Co\",[Firm]\n"
                    "Leeds,cluster,\ngreen lane primary,street\n", encoding="utf-8")
    path.chmod(0o600)
    assert read_deny_list(path) == {"Green Lane Primary": "school", "Smith, Jones & Co": "firm", "Leeds": "cluster",
                                    "green lane primary": "street"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deny.csv"]  # read in place, nothing copied
    assert read_deny_list(None) == {}


def test_deny_list_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "deny.csv"
    path.write_text("Secretname,school\n", encoding="utf-8")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as caught:
        read_deny_list(path)
    message = str(caught.value)
    assert message == f"the deny-list {path} is readable by others (mode 0644): run `chmod 600 {path}`"
    assert "Secretname" not in message
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_deny_list(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_deny_list(tmp_path / "missing.csv")


@pytest.mark.parametrize(("body", "line", "reason"), [
    ("Secretname\n", 1, "expected two columns, term and tag"),
    ("term,tag\nSecretname,school,extra\n", 2, "expected two columns, term and tag"),
    ("Secretname,sch ool!\n", 1, "the tag must be letters, digits, '-' or '_'"),
    ("Secretname,school\n--,school\n", 2, "the term has no letters or digits"),
])
def test_deny_list_bad_rows(tmp_path: Path, body: str, line: int, reason: str) -> None:
    path = tmp_path / "deny.csv"
    path.write_text(body, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        read_deny_list(path)
    assert str(caught.value) == f"the deny-list {path}, line {line}: {reason}"


def test_allow_list_file(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text("# acronyms\nCAMHS\n\n  Sure Start \nZoë\n", encoding="utf-8")
    assert read_allow_list(path) == frozenset({"camhs", "sure start", "zoe"})
    assert read_allow_list(None) == frozenset()
    with pytest.raises(ConfigError, match="does not exist"):
        read_allow_list(tmp_path / "missing.txt")


# --------------------------------------------------------------------------- property and scale

_FAKE = Faker("en_GB")
_FAKE.seed_instance(11)
REGISTER = [Person(f"F{i:02d}", f"Pseudo{chr(65 + i)}",
                   Names(f"{_FAKE.first_name()} {_FAKE.last_name()}", (_FAKE.first_name(), _FAKE.first_name())))
            for i in range(12)]
REGISTER_DEID = Deidentifier(REGISTER, {})
FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"()-\n", max_size=30)


def _spoken_forms(name: str) -> list[str]:
    """How a register name may be written: as given, and in any case unless it is a common word."""
    common = any(zipf_frequency(word, "en") >= COMMON_NAME_ZIPF for word in name.split()) and " " not in name
    return [name] if common else [name, name.lower(), name.upper()]


NAMES = sorted({form for p in REGISTER for name in (p.names.full_name, *p.names.full_name.split(), *p.names.other_names)
                for form in _spoken_forms(name)})


@settings(max_examples=300, deadline=None)
@given(before=FILLER, name=st.sampled_from(NAMES), joint=st.sampled_from([" ", "'s ", ", ", ". ", "-", "\n"]),
       after=FILLER)
def test_planted_register_name_is_always_replaced(before: str, name: str, joint: str, after: str) -> None:
    text = REGISTER_DEID.redact(f"{before} {name}{joint}{after}").text
    assert not re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text, re.IGNORECASE)


def test_ten_thousand_words_with_five_thousand_deny_terms_in_well_under_a_second() -> None:
    rng = random.Random(5)
    vocabulary = ["the", "school", "said", "Sarah", "we", "went", "to", "Green", "Lane", "Primary", "and", "it",
                  "was", "fine.", "Call", "07700", "900123", "on", "12th", "March", "Kayden's", "mum", "helped"]
    words = " ".join(rng.choice(vocabulary) for _ in range(10_000))
    deny = {f"Place{n} Road End": "street" for n in range(5_000)} | DENY
    deid = Deidentifier(PEOPLE, deny)
    start = time.perf_counter()
    result = deid.redact(words)
    deid.review(result.text)
    assert time.perf_counter() - start < 1.0
    assert "Sarah" not in result.text and result.counts["deny:school"] > 0


# --------------------------------------------------------------------------- the synthetic corpus


def _benchmark() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "deidentify.py"
    spec = importlib.util.spec_from_file_location("benchmark_deidentify", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_recall_on_the_synthetic_corpus_is_complete() -> None:
    pytest.importorskip("tasks.demo.qualitative")
    from tasks.demo.qualitative import make_corpus

    figures = _benchmark().measure(make_corpus(2021))
    recall = {kind: (row["found"], row["planted"]) for kind, row in figures["kinds"].items()}
    assert all(planted > 0 for _, planted in recall.values()), recall
    assert {kind: found for kind, (found, _) in recall.items()} == {kind: planted for kind, (_, planted) in
                                                                     recall.items()}
    assert figures["words"] > 2000 and figures["review_per_1000_words"] < 5.0
