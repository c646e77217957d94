"""Fake values and vectorised column builders of the synthetic generators (demo and tests only).

Names and streets come from small built-in lists, postcodes use the made-up area ``NM`` (valid UK
shape, no real area), e-mail addresses use the reserved domains of RFC 2606
(``example.invalid/.org/.net``). The builders turn numpy draws into text columns the way a
clean CSV holds them (empty = missing).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl

CARER_FIRST = (
    "Sarah", "Emma", "Lisa", "Michelle", "Kelly", "Gemma", "Aisha", "Fatima", "Amina", "Nadia",
    "Shabana", "Joanne", "Claire", "Danielle", "Stacey", "Agnieszka", "Marta", "Ioana", "Blessing",
    "Grace", "Chantelle", "Kerry", "Zoë", "Siân", "Renée", "Bridget", "Mary", "Nasreen",
    "Precious", "Mark", "Daniel", "Lee", "Imran", "Tariq", "Mohammed", "Paul", "Darren", "Tomasz",
    "Patrick", "Kwame",
)
CHILD_FIRST = (
    "Oliver", "Jack", "Harry", "Noah", "Leo", "Muhammad", "Ibrahim", "Yusuf", "Kai", "Tyler",
    "Riley", "Jayden", "Olivia", "Amelia", "Isla", "Ava", "Mia", "Lily", "Freya", "Maryam", "Zara",
    "Aaliyah", "Ruby", "Chloé", "Zoë", "Esmé", "Oskar", "Filip", "Liliana", "Tobi", "Amara",
    "Summer", "Paddy", "Shannon", "Kacper", "Hafsa",
)
SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Hughes", "Walsh",
    "Murphy", "O’Brien", "O’Neill", "Khan", "Hussain", "Begum", "Ahmed", "Akhtar", "Ali", "Patel",
    "Rahman", "Okafor", "Mensah", "Adeyemi", "Campbell", "Nowak", "Kowalski", "Popescu",
    "Lakatos", "Balogh", "Horváth", "Doherty", "McDonagh", "Ward", "Price", "Hall", "Clarke",
    "Baker", "Murray",
)
STREETS = (
    "Albert Road", "Victoria Street", "Church Lane", "Station Road", "Queen Street",
    "Park Avenue", "Mill Lane", "Moss Lane East", "Hill Top Road", "Canal Street", "Rochdale Road",
    "Oldham Road", "Chapel Street", "Beech Grove", "Elm Terrace", "Wharf Close", "Foundry Walk",
)
LOCALITIES = ("Northfield Estate", "Millbrook", "Eastgate", "Canal Side", "St Mark’s", "Hollins")
TOWNS = ("Northmoor", "Eastbridge", "Millford")
OUTWARD = ("NM1", "NM2", "NM3", "NM4", "NM8", "NM9", "NM11", "NM12")
EMAIL_DOMAINS = ("example.invalid", "example.org", "example.net")
NOTES = (
    "Mum reports low mood and difficulty getting the children to school.",
    "Home visit completed; family engaged well.",
    "School raised concerns about attendance and lateness.",
    "Rent arrears discussed, referral to money advice offered.",
    "Child presenting as anxious, worried about friendships.",
    "Parents arguing frequently, children witnessing conflict.",
    "Dad struggling with sleep and motivation.",
    "Family of six living in a two-bedroom flat.",
    "Food bank voucher (£20) provided.",
    "Worker attended TAF meeting at school.",
    "Child refusing to attend school most mornings.",
    "Carer would like support with routines and boundaries.",
    "Agreed family plan with three goals.",
    "Follow-up call booked for next week.",
    "No further concerns reported at review.",
)
GOAL_TEXT = {
    "child_mental_health": "Child feels calmer and can name ways to manage worries.",
    "parental_mental_health": "Carer feels able to cope day to day and is linked to support.",
    "housing": "Family has a secure tenancy and rent arrears are on a plan.",
    "overcrowding": "Housing application updated to reflect the family's needs.",
    "parental_conflict": "Parents argue less in front of the children.",
    "parenting": "Consistent bedtime and morning routines in place.",
    "domestic_abuse": "Safety plan agreed and carer knows where to get help.",
    "substance_misuse": "Carer engaging with the drug and alcohol service.",
    "school_attendance": "Attendance above 90% for a full half term.",
    "financial_hardship": "Family receiving all benefits they are entitled to.",
    "other": "Family feels more confident asking for help.",
}
ETHNICITY_WEIGHTS = {
    "WBRI": 44.0, "WIRI": 1.0, "WIRT": 2.0, "WOTH": 8.0, "WROM": 4.0, "MWBC": 4.0, "MWBA": 2.0,
    "MWAS": 2.0, "MOTH": 2.0, "AIND": 2.0, "APKN": 8.0, "ABAN": 3.0, "AOTH": 2.0, "BCRB": 3.0,
    "BAFR": 6.0, "BOTH": 1.0, "CHNE": 0.5, "OOTH": 2.0, "REFU": 1.5, "NOBT": 3.0,
}
# Probability that the lead carer's first language is not English, by ethnicity.
NOT_ENGLISH = {"WBRI": 0.01, "WROM": 0.6, "WOTH": 0.55, "AOTH": 0.4, "BAFR": 0.3, "APKN": 0.25,
               "ABAN": 0.35, "CHNE": 0.5, "WIRT": 0.02, "BCRB": 0.02}
ISSUE_WEIGHTS = {
    "child_mental_health": 0.30, "parental_mental_health": 0.22, "housing": 0.10,
    "overcrowding": 0.06, "parental_conflict": 0.14, "parenting": 0.20, "domestic_abuse": 0.10,
    "substance_misuse": 0.05, "school_attendance": 0.18, "financial_hardship": 0.12, "other": 0.05,
}

EPOCH = date(1970, 1, 1)
YEAR = 365.25  # days


def day(d: date) -> int:
    """Days since 1970-01-01 of a date."""
    return (d - EPOCH).days


def choice(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    """n draws of an index into ``weights`` (weights need not sum to 1)."""
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def nulls(n: int) -> pl.Series:
    """A string column of n missing values."""
    return pl.repeat(None, n, dtype=pl.String, eager=True)


def mask(s: pl.Series, valid: np.ndarray | None) -> pl.Series:
    """The column with values where ``valid`` is false made missing (None keeps all)."""
    if valid is None:
        return s
    return s.zip_with(pl.Series(valid, dtype=pl.Boolean), nulls(len(s)))


def gather(values: Sequence[str], idx: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """The values at the given indices, as text, optionally masked."""
    return mask(pl.Series(list(values), dtype=pl.String).gather(idx), valid)


def ints(values: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Whole numbers as text, optionally masked."""
    return mask(pl.Series(values.astype(np.int64)).cast(pl.String), valid)


def dates(days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Day numbers as ISO dates (text), optionally masked."""
    return mask(pl.Series(days.astype(np.int32)).cast(pl.Date).cast(pl.String), valid)


def yes_no(flag: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Flags as ``Y``/``N``, optionally masked."""
    return gather(("N", "Y"), flag.astype(np.int64), valid)


def id_width(n: int) -> int:
    """Digits of a zero-padded id for n rows: at least 6, so no id is a prefix of another."""
    return max(6, len(str(n)))


def ids(prefix: str, n: int, width: int | None = None) -> pl.Series:
    """Ids ``<prefix>000001`` .. for n rows."""
    digits = pl.Series(np.arange(1, n + 1, dtype=np.int64)).cast(pl.String)
    return prefix + digits.str.zfill(width or id_width(n))


def concat(*parts: pl.Series | str, sep: str = "") -> pl.Series:
    """Columns and literal strings joined row by row."""
    return pl.select(pl.concat_str([pl.lit(p) for p in parts], separator=sep)).to_series()


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits of a text (for e-mail addresses)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in plain.lower() if ch.isalnum())
