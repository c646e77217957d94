"""Synthetic Cluster extracts and survey exports (extract-v1.md) for tests, demo and benchmarks.

Everything here is fake: names and streets come from small built-in lists, postcodes use the
made-up area ``NM`` (valid UK shape, no real area), e-mail addresses use the reserved domains of
RFC 2606 (``example.invalid/.org/.net``) and phone numbers the Ofcom drama range
``07700 900000``-``07700 900999``.

``generate_tables`` returns the five tables as clean canonical strings (what a clean CSV holds);
``render_members`` turns them into archive members (CSV per table or one workbook), optionally
with the messiness the spec allows; ``zip_members``/``aes_zip``/``age_encrypt`` package them and
``write_extract`` writes one encrypted extract (never any plaintext) to disk.

Marker mode (``markers=True``) replaces every direct identifier that must never reach the
analysis store by a unique string that cannot occur by chance, for privacy tests that grep bytes
on disk (``marker_strings`` lists them):

* ``lead_carer_name`` ``ZQXNAME000001``; ``child_name`` ``ZQXCHILD000001``;
* ``address_line_1`` ``ZQXADDR000001 Street``; ``email`` ``zqxmail000001@example.invalid``;
* ``postcode`` ``QZdd dLL``: outward code ``QZ`` + two digits, inward code digit + two letters
  from ``ABDEFGHJLNPQRSTUWXYZ`` (e.g. ``QZ00 0AA``), unique per family. It has the generic UK
  shape ``A[A]9[A9] 9AA`` but can never be real (no UK area starts with Q); capacity 400 000;
* ``case_notes`` ``ZQXNOTE000001``; ``goal_text`` ``ZQXGOAL000001``.

Numbers are zero-padded to at least 6 digits (more when the count needs it), so no marker is a
prefix of another. Phones, address_line_2, town and dates of birth stay ordinary fake values
(the drama range has only 1 000 numbers, so phones cannot be unique).

Rendering: clean CSVs hold the canonical strings (LF line ends, empty cell = missing). A clean
workbook holds integer columns as numbers and everything else (dates too) as text. ``messy=True``
adds only what the spec allows: header variants (``Family ID``, `` family_id ``, ``FAMILY_ID``),
code case/whitespace variants, UK ``DD/MM/YYYY`` dates mixed with ISO (in a workbook, some date
columns, always ``referral_date``, as native Excel dates), yes/no spellings (Y/N, Yes/No,
TRUE/FALSE, 1/0), an extra ``notes_internal`` column in families and episodes, CRLF line ends,
multi-line quoted case notes and cp1252-encodable non-ASCII text (``Zoë``, ``Siân``, ``O’Brien``,
``£``). Marker values are never altered. ``encoding`` applies to CSV members only.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyrage
import xlsxwriter

from schemas.codes import (
    CHILDREN,
    CLOSURE_OUTCOME,
    EPISODES,
    ETHNICITY_CODES,
    FAMILIES,
    GENDER,
    GOALS,
    LEAD_CARER_EMPLOYMENT,
    LEAD_WORKER_ROLE,
    ONWARD_REFERRAL,
    PREFERRED_CONTACT,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SCHOOL_PHASE,
    SCORE_QUESTIONS,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_REFERRALS,
    SPECIALIST_SERVICE,
    SURVEY_COLUMNS,
    SURVEY_MODE,
    TABLE_COLUMNS,
    TABLES,
    YES_NO_QUESTIONS,
)
from tasks.core.archive import aes_zip_bytes

__all__ = [
    "MARKER_COLUMNS",
    "age_encrypt",
    "aes_zip",
    "generate_survey_export",
    "generate_tables",
    "marker_strings",
    "new_age_identity",
    "render_members",
    "survey_export_csv",
    "write_extract",
    "zip_members",
]

Fmt = Literal["csv", "xlsx"]
Encoding = Literal["utf-8", "utf-8-sig", "cp1252"]
Encryption = Literal["aes-zip", "age-passphrase", "age-x25519"]

# Columns holding marker values in marker mode (table -> columns).
MARKER_COLUMNS: dict[str, tuple[str, ...]] = {
    FAMILIES: ("lead_carer_name", "address_line_1", "email", "postcode"),
    CHILDREN: ("child_name",),
    EPISODES: ("case_notes",),
    GOALS: ("goal_text",),
}
_MARKER_RE = (
    r"^(?:ZQX(?:NAME|CHILD|NOTE|GOAL)\d{6,}|ZQXADDR\d{6,} Street|zqxmail\d{6,}@example\.invalid"
    r"|QZ\d{2} \d[ABDEFGHJLNPQRSTUWXYZ]{2})$"
)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters allowed in the inward code's last two places
_MARKER_POSTCODE_CAPACITY = 100 * 10 * len(_INWARD_LETTERS) ** 2

# Column kinds, used only to render (the canonical tables are all strings).
_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    FAMILIES: (),
    CHILDREN: ("date_of_birth",),
    EPISODES: ("referral_date", "allocation_date", "closure_date"),
    GOALS: ("latest_review_date",),
    SPECIALIST_REFERRALS: ("start_date", "end_date"),
}
_INT_COLUMNS = frozenset(
    {"household_size", "adults_in_employment", "imd_decile", "goal_number", "baseline_score",
     "latest_score"}
)
_YES_NO_COLUMNS = frozenset(
    {"first_language_english", "free_school_meals", "do_not_contact", "sen_support"}
)
_CODE_COLUMNS: dict[str, tuple[str, ...]] = {
    FAMILIES: ("preferred_contact", "lead_carer_employment", "lead_carer_ethnicity"),
    CHILDREN: ("gender", "ethnicity", "school_phase"),
    EPISODES: ("referral_route", "primary_issue", "lead_worker_role", "closure_outcome",
               "onward_referral", "presenting_issues", "services"),
    GOALS: ("goal_area",),
    SPECIALIST_REFERRALS: ("service", "reason", "outcome"),
}
_EXTRA_COLUMN = "notes_internal"

# ---------------------------------------------------------------------------------------------
# Built-in fake-value lists.
_CARER_FIRST = (
    "Sarah", "Emma", "Lisa", "Michelle", "Kelly", "Gemma", "Aisha", "Fatima", "Amina", "Nadia",
    "Shabana", "Joanne", "Claire", "Danielle", "Stacey", "Agnieszka", "Marta", "Ioana", "Blessing",
    "Grace", "Chantelle", "Kerry", "Zoë", "Siân", "Renée", "Bridget", "Mary", "Nasreen",
    "Precious", "Mark", "Daniel", "Lee", "Imran", "Tariq", "Mohammed", "Paul", "Darren", "Tomasz",
    "Patrick", "Kwame",
)
_CHILD_FIRST = (
    "Oliver", "Jack", "Harry", "Noah", "Leo", "Muhammad", "Ibrahim", "Yusuf", "Kai", "Tyler",
    "Riley", "Jayden", "Olivia", "Amelia", "Isla", "Ava", "Mia", "Lily", "Freya", "Maryam", "Zara",
    "Aaliyah", "Ruby", "Chloé", "Zoë", "Esmé", "Oskar", "Filip", "Liliana", "Tobi", "Amara",
    "Summer", "Paddy", "Shannon", "Kacper", "Hafsa",
)
_SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Hughes", "Walsh",
    "Murphy", "O’Brien", "O’Neill", "Khan", "Hussain", "Begum", "Ahmed", "Akhtar", "Ali", "Patel",
    "Rahman", "Okafor", "Mensah", "Adeyemi", "Campbell", "Nowak", "Kowalski", "Popescu",
    "Lakatos", "Balogh", "Horváth", "Doherty", "McDonagh", "Ward", "Price", "Hall", "Clarke",
    "Baker", "Murray",
)
_STREETS = (
    "Albert Road", "Victoria Street", "Church Lane", "Station Road", "Queen Street",
    "Park Avenue", "Mill Lane", "Moss Lane East", "Hill Top Road", "Canal Street", "Rochdale Road",
    "Oldham Road", "Chapel Street", "Beech Grove", "Elm Terrace", "Wharf Close", "Foundry Walk",
)
_LOCALITIES = ("Northfield Estate", "Millbrook", "Eastgate", "Canal Side", "St Mark’s", "Hollins")
_TOWNS = ("Northmoor", "Eastbridge", "Millford")
_OUTWARD = ("NM1", "NM2", "NM3", "NM4", "NM8", "NM9", "NM11", "NM12")
_EMAIL_DOMAINS = ("example.invalid", "example.org", "example.net")
_NOTES = (
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
_GOAL_TEXT = {
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
# cp1252-encodable non-ASCII values used by messy rendering.
_ACCENTED_CARERS = ("Zoë Brontë", "Siân O’Brien", "Renée Müller", "José Núñez", "Chloé Dubois",
                    "Máire Ní Bhriain")
_ACCENTED_CHILDREN = ("Zoë O’Neill", "Esmé Horváth", "Siân Davies", "Noël Dupré")
_ACCENTED_LINE2 = ("Brontë Court", "Café Row", "St Mark’s", "Rosé House")
_MESSY_NOTES = ("Voucher £15 given.", "Follow-up booked – carer agreed.", "Seen at “the hub”.")

_ETHNICITY_WEIGHTS = {
    "WBRI": 44.0, "WIRI": 1.0, "WIRT": 2.0, "WOTH": 8.0, "WROM": 4.0, "MWBC": 4.0, "MWBA": 2.0,
    "MWAS": 2.0, "MOTH": 2.0, "AIND": 2.0, "APKN": 8.0, "ABAN": 3.0, "AOTH": 2.0, "BCRB": 3.0,
    "BAFR": 6.0, "BOTH": 1.0, "CHNE": 0.5, "OOTH": 2.0, "REFU": 1.5, "NOBT": 3.0,
}
# Probability that the lead carer's first language is not English, by ethnicity.
_NOT_ENGLISH = {"WBRI": 0.01, "WROM": 0.6, "WOTH": 0.55, "AOTH": 0.4, "BAFR": 0.3, "APKN": 0.25,
                "ABAN": 0.35, "CHNE": 0.5, "WIRT": 0.02, "BCRB": 0.02}
_ISSUE_WEIGHTS = {
    "child_mental_health": 0.30, "parental_mental_health": 0.22, "housing": 0.10,
    "overcrowding": 0.06, "parental_conflict": 0.14, "parenting": 0.20, "domestic_abuse": 0.10,
    "substance_misuse": 0.05, "school_attendance": 0.18, "financial_hardship": 0.12, "other": 0.05,
}

_EPOCH = date(1970, 1, 1)
_YEAR = 365.25


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _nulls(n: int) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.String, eager=True)


def _mask(s: pl.Series, valid: np.ndarray | None) -> pl.Series:
    if valid is None:
        return s
    return s.zip_with(pl.Series(valid, dtype=pl.Boolean), _nulls(len(s)))


def _gather(values: Sequence[str], idx: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    return _mask(pl.Series(list(values), dtype=pl.String).gather(idx), valid)


def _ints(values: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    return _mask(pl.Series(values.astype(np.int64)).cast(pl.String), valid)


def _dates(days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    return _mask(pl.Series(days.astype(np.int32)).cast(pl.Date).cast(pl.String), valid)


def _yes_no(flag: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    return _gather(("N", "Y"), flag.astype(np.int64), valid)


def _width(n: int) -> int:
    return max(6, len(str(n)))


def _ids(prefix: str, n: int, width: int | None = None) -> pl.Series:
    digits = pl.Series(np.arange(1, n + 1, dtype=np.int64)).cast(pl.String)
    return prefix + digits.str.zfill(width or _width(n))


def _concat(*parts: pl.Series | str, sep: str = "") -> pl.Series:
    return pl.select(pl.concat_str([pl.lit(p) for p in parts], separator=sep)).to_series()


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _frame(table: str, columns: Mapping[str, pl.Series]) -> pl.DataFrame:
    order = TABLE_COLUMNS[table]
    return pl.DataFrame([columns[c].rename(c).cast(pl.String) for c in order])


# ---------------------------------------------------------------------------------------------
def generate_tables(
    families: int,
    seed: int,
    *,
    window_start: date = date(2021, 1, 1),
    window_end: date = date(2021, 6, 30),
    markers: bool = False,
) -> dict[str, pl.DataFrame]:
    """Generate the five extract tables as clean canonical strings, deterministic for a seed."""
    if families < 1:
        raise ValueError("families must be at least 1")
    if window_end < window_start:
        raise ValueError("window_end must not be before window_start")
    if markers and families > _MARKER_POSTCODE_CAPACITY:
        raise ValueError(f"markers=True supports at most {_MARKER_POSTCODE_CAPACITY} families")
    rng = np.random.default_rng([seed, 20210101])
    n = families
    ws, we = _day(window_start), _day(window_end)
    extract_day = we + 183  # the extract is taken about six months after the window ends

    # --- episode timeline per family (first episode, optional re-referral after closure) ------
    period = _choice(rng, n, (0.07, 0.80, 0.13))  # before, around/in, after the window
    ref1 = np.select(
        [period == 0, period == 1],
        [rng.integers(ws - 420, ws - 120, n), rng.integers(ws - 120, we + 1, n)],
        rng.integers(we + 1, we + 93, n),
    )
    dur1 = np.clip(np.rint(rng.lognormal(np.log(110), 0.65, n)), 10, 900).astype(np.int64)
    close1 = ref1 + dur1
    open1 = close1 > extract_day
    ref2 = close1 + rng.integers(21, 300, n)
    has2 = (~open1) & (rng.random(n) < 0.35) & (ref2 <= extract_day - 7)
    dur2 = np.clip(np.rint(rng.lognormal(np.log(100), 0.6, n)), 10, 900).astype(np.int64)
    close2 = ref2 + dur2
    open2 = close2 > extract_day

    ep_fam = np.concatenate([np.arange(n), np.flatnonzero(has2)])
    ep_seq = np.concatenate([np.zeros(n, np.int64), np.ones(int(has2.sum()), np.int64)])
    order = np.lexsort((ep_seq, ep_fam))
    ep_fam, ep_seq = ep_fam[order], ep_seq[order]
    ep_ref = np.where(ep_seq == 0, ref1[ep_fam], ref2[ep_fam])
    ep_close = np.where(ep_seq == 0, close1[ep_fam], close2[ep_fam])
    ep_open = np.where(ep_seq == 0, open1[ep_fam], open2[ep_fam])
    n_ep = len(ep_fam)
    last_ref = np.where(has2, ref2, ref1)

    # --- families -----------------------------------------------------------------------------
    n_children = _choice(rng, n, (0.45, 0.35, 0.20)) + 1
    adults = 1 + (rng.random(n) < 0.45)
    household = np.clip(n_children + adults + rng.poisson(0.9, n), 1, 10)
    solo = rng.random(n) < 0.004  # recorded household of one (valid per spec, a data quirk)
    household = np.where(solo, 1, household)
    adults = np.where(solo, 1, adults)
    employed_adults = rng.binomial(adults, 0.35)
    lead_employed = (employed_adults > 0) & (rng.random(n) < 0.75)
    lead_emp = np.where(
        lead_employed,
        _choice(rng, n, (0.40, 0.45, 0.15)),  # full time, part time, self employed
        3 + _choice(rng, n, (0.45, 0.40, 0.15)),  # unemployed, not seeking work, unknown
    )
    eth_codes = ETHNICITY_CODES
    eth_weights = [_ETHNICITY_WEIGHTS[c] for c in eth_codes]
    carer_eth = _choice(rng, n, eth_weights)
    p_not_english = np.array([_NOT_ENGLISH.get(c, 0.1) for c in eth_codes])[carer_eth]
    first_lang_english = rng.random(n) >= p_not_english
    imd = _choice(rng, n, (0.38, 0.24, 0.14, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01, 0.01)) + 1
    preferred = _choice(rng, n, (0.40, 0.18, 0.42))  # email, post, phone
    has_email = (preferred == 0) | (rng.random(n) < 0.55)
    has_phone = (preferred == 2) | (rng.random(n) < 0.85)

    surname = rng.integers(0, len(_SURNAMES), n)
    carer_first = rng.integers(0, len(_CARER_FIRST), n)
    fam_ids = _ids("F", n)
    if markers:
        width = _width(n)
        carer_name = _ids("ZQXNAME", n, width)
        line1 = _ids("ZQXADDR", n, width) + " Street"
        email = _mask(_ids("zqxmail", n, width) + "@example.invalid", has_email)
        i = np.arange(n)
        postcode = _concat(
            "QZ",
            pl.Series(i // 4000).cast(pl.String).str.zfill(2),
            " ",
            pl.Series((i // 400) % 10).cast(pl.String),
            _gather(tuple(_INWARD_LETTERS), (i // 20) % 20),
            _gather(tuple(_INWARD_LETTERS), i % 20),
        )
    else:
        carer_name = _concat(_gather(_CARER_FIRST, carer_first), _gather(_SURNAMES, surname),
                             sep=" ")
        line1 = _concat(pl.Series(rng.integers(1, 250, n)).cast(pl.String),
                        _gather(_STREETS, rng.integers(0, len(_STREETS), n)), sep=" ")
        email = _mask(
            _concat(
                _gather([_ascii_slug(x) for x in _CARER_FIRST], carer_first), ".",
                _gather([_ascii_slug(x) for x in _SURNAMES], surname),
                pl.Series(rng.integers(1, 100, n)).cast(pl.String), "@",
                _gather(_EMAIL_DOMAINS, _choice(rng, n, (0.6, 0.2, 0.2))),
            ),
            has_email,
        )
        letters = tuple(_INWARD_LETTERS)
        postcode = _concat(
            _gather(_OUTWARD, rng.integers(0, len(_OUTWARD), n)), " ",
            pl.Series(rng.integers(0, 10, n)).cast(pl.String),
            _gather(letters, rng.integers(0, 20, n)), _gather(letters, rng.integers(0, 20, n)),
        )
    phone = _mask("07700 900" + pl.Series(rng.integers(0, 1000, n)).cast(pl.String).str.zfill(3),
                  has_phone)
    families_df = _frame(FAMILIES, {
        "family_id": fam_ids,
        "lead_carer_name": carer_name,
        "address_line_1": line1,
        "address_line_2": _gather(_LOCALITIES, rng.integers(0, len(_LOCALITIES), n),
                                  rng.random(n) < 0.2),
        "town": _gather(_TOWNS, _choice(rng, n, (0.7, 0.2, 0.1))),
        "postcode": postcode,
        "email": email,
        "phone": phone,
        "preferred_contact": _gather(PREFERRED_CONTACT, preferred),
        "household_size": _ints(household),
        "adults_in_employment": _ints(employed_adults),
        "lead_carer_employment": _gather(LEAD_CARER_EMPLOYMENT, lead_emp),
        "lead_carer_ethnicity": _gather(eth_codes, carer_eth),
        "first_language_english": _yes_no(first_lang_english, rng.random(n) >= 0.05),
        "free_school_meals": _yes_no(rng.random(n) < 0.6),
        "imd_decile": _ints(imd, rng.random(n) >= 0.04),
        "do_not_contact": _yes_no(rng.random(n) < 0.03),
    })

    # --- children -----------------------------------------------------------------------------
    ch_fam = np.repeat(np.arange(n), n_children)
    m = len(ch_fam)
    age_days = rng.integers(int(4 * _YEAR), int(15.5 * _YEAR), m)
    dob = ref1[ch_fam] - age_days
    dob = np.maximum(dob, last_ref[ch_fam] - int(18 * _YEAR) + 30)  # still under 18 at re-referral
    age_years = (ref1[ch_fam] - dob) / _YEAR
    same_eth = rng.random(m) < 0.85
    child_eth = np.where(same_eth, carer_eth[ch_fam],
                         _choice(rng, m, eth_weights))
    if markers:
        child_name = _ids("ZQXCHILD", m)
    else:
        own_surname = np.where(rng.random(m) < 0.85, surname[ch_fam],
                               rng.integers(0, len(_SURNAMES), m))
        child_name = _concat(_gather(_CHILD_FIRST, rng.integers(0, len(_CHILD_FIRST), m)),
                             _gather(_SURNAMES, own_surname), sep=" ")
    children_df = _frame(CHILDREN, {
        "child_id": _ids("C", m),
        "family_id": fam_ids.gather(ch_fam),
        "child_name": child_name,
        "date_of_birth": _dates(dob),
        "gender": _gather(GENDER, _choice(rng, m, (0.5, 0.48, 0.005, 0.015))),
        "ethnicity": _gather(eth_codes, child_eth),
        "school_phase": _gather(SCHOOL_PHASE, (age_years >= 11).astype(np.int64)),
        "sen_support": _yes_no(rng.random(m) < 0.18, rng.random(m) >= 0.05),
    })

    # --- episodes -----------------------------------------------------------------------------
    weights = np.array([_ISSUE_WEIGHTS[c] for c in PRESENTING_ISSUES])
    n_issues = _choice(rng, n_ep, (0.30, 0.35, 0.22, 0.13)) + 1
    keys = rng.random((n_ep, len(PRESENTING_ISSUES))) ** (1.0 / weights)  # weighted sampling
    issue_order = np.argsort(-keys, axis=1)
    issue_rank = np.argsort(issue_order, axis=1)
    chosen = issue_rank < n_issues[:, None]
    bits = 1 << np.arange(len(PRESENTING_ISSUES))
    issue_mask = (chosen * bits).sum(axis=1)
    issue_lists = [";".join(c for j, c in enumerate(PRESENTING_ISSUES) if k >> j & 1)
                   for k in range(1 << len(PRESENTING_ISSUES))]
    primary = issue_order[:, 0]

    def has_issue(code: str) -> np.ndarray:
        return chosen[:, PRESENTING_ISSUES.index(code)]

    u = rng.random((n_ep, 4))
    svc = np.stack([
        u[:, 0] < 0.85,
        u[:, 1] < np.where(has_issue("child_mental_health"), 0.6, 0.08),
        u[:, 2] < np.where(has_issue("parental_mental_health"), 0.55, 0.05),
        u[:, 3] < np.where(has_issue("school_attendance"), 0.7, 0.03),
    ], axis=1)
    svc[~svc.any(axis=1), 0] = True
    svc_mask = (svc * (1 << np.arange(len(SERVICES)))).sum(axis=1)
    svc_lists = [";".join(c for j, c in enumerate(SERVICES) if k >> j & 1)
                 for k in range(1 << len(SERVICES))]
    role = _choice(rng, n_ep, (0.38, 0.36, 0.10, 0.09, 0.07))
    attendance_led = (primary == PRESENTING_ISSUES.index("school_attendance")) & svc[:, 3]
    role = np.where(attendance_led & (rng.random(n_ep) < 0.5), 4, role)

    ep_end = np.where(ep_open, extract_day, ep_close)  # last day the episode is known open
    alloc = ep_ref + np.minimum(rng.geometric(0.15, n_ep) - 1, ep_end - ep_ref)
    alloc_valid = (rng.random(n_ep) >= 0.05) & ~(ep_open & (extract_day - ep_ref < 7))
    outcome = _choice(rng, n_ep, (0.34, 0.24, 0.08, 0.13, 0.06, 0.07, 0.08))
    stepped_up = outcome == CLOSURE_OUTCOME.index("stepped_up_to_social_care")
    onward = np.where(stepped_up, ONWARD_REFERRAL.index("childrens_social_care"),
                      _choice(rng, n_ep, (0.60, 0.04, 0.12, 0.08, 0.07, 0.05, 0.04)))
    if markers:
        notes = _ids("ZQXNOTE", n_ep)
    else:
        two = rng.random(n_ep) < 0.5
        first_note = _gather(_NOTES, rng.integers(0, len(_NOTES), n_ep))
        second_note = _gather(_NOTES, rng.integers(0, len(_NOTES), n_ep), two)
        notes = pl.select(
            pl.when(pl.lit(pl.Series(two))).then(pl.concat_str(
                [pl.lit(first_note), pl.lit(second_note)], separator=" "))
            .otherwise(pl.lit(first_note))
        ).to_series()
    closed = ~ep_open
    ep_ids = _ids("E", n_ep)
    episodes_df = _frame(EPISODES, {
        "episode_id": ep_ids,
        "family_id": fam_ids.gather(ep_fam),
        "referral_date": _dates(ep_ref),
        "referral_route": _gather(REFERRAL_ROUTE,
                                  _choice(rng, n_ep, (0.42, 0.22, 0.16, 0.12, 0.08))),
        "allocation_date": _dates(alloc, alloc_valid),
        "presenting_issues": _gather(issue_lists, issue_mask),
        "primary_issue": _gather(PRESENTING_ISSUES, primary),
        "services": _gather(svc_lists, svc_mask),
        "lead_worker_role": _gather(LEAD_WORKER_ROLE, role),
        "closure_date": _dates(ep_close, closed),
        "closure_outcome": _gather(CLOSURE_OUTCOME, outcome, closed),
        "onward_referral": _gather(ONWARD_REFERRAL, onward, closed),
        "case_notes": notes,
    })

    # --- goals --------------------------------------------------------------------------------
    n_goals = _choice(rng, n_ep, (0.25, 0.40, 0.35)) + 1
    g_ep = np.repeat(np.arange(n_ep), n_goals)
    g = len(g_ep)
    starts = np.repeat(np.cumsum(n_goals) - n_goals, n_goals)
    goal_number = np.arange(g) - starts + 1
    area = issue_order[g_ep, (goal_number - 1) % n_issues[g_ep]]
    baseline = np.clip(np.rint(rng.normal(3.2, 1.6, g)), 0, 10).astype(np.int64)
    gain_by_outcome = np.array([4.0, 2.2, 0.2, 0.6, 1.2, 0.4, 1.5])
    gain = np.where(ep_open[g_ep], 1.6, gain_by_outcome[outcome[g_ep]])
    latest = np.clip(np.rint(baseline + rng.normal(gain, 1.6)), 0, 10).astype(np.int64)
    span = ep_end[g_ep] - ep_ref[g_ep]
    reviewed = (span >= 21) & (rng.random(g) >= 0.1)
    review = ep_ref[g_ep] + np.floor(np.sqrt(rng.random(g)) * (span + 1)).astype(np.int64)
    review = np.minimum(review, ep_end[g_ep])
    goal_text = (_ids("ZQXGOAL", g) if markers
                 else _gather([_GOAL_TEXT[c] for c in PRESENTING_ISSUES], area))
    goals_df = _frame(GOALS, {
        "episode_id": ep_ids.gather(g_ep),
        "goal_number": _ints(goal_number),
        "goal_area": _gather(PRESENTING_ISSUES, area),
        "baseline_score": _ints(baseline),
        "latest_score": _ints(latest, reviewed),
        "latest_review_date": _dates(review, reviewed),
        "goal_text": goal_text,
    })

    # --- specialist referrals -----------------------------------------------------------------
    s_ep = np.flatnonzero(rng.random(n_ep) < 0.10)
    k = len(s_ep)
    s_start = ep_ref[s_ep] + np.minimum(rng.integers(7, 91, k), ep_end[s_ep] - ep_ref[s_ep])
    s_end = s_start + rng.integers(14, 121, k)
    s_end = np.where(ep_open[s_ep], s_end, np.minimum(s_end, ep_close[s_ep]))
    s_ongoing = s_end > extract_day
    s_outcome = np.where(
        stepped_up[s_ep] & (rng.random(k) < 0.5),
        SPECIALIST_OUTCOME.index("stepped_up_to_social_care"),
        _choice(rng, k, (0.60, 0.18, 0.22)),  # returned, stepped up, closed
    )
    s_outcome = np.where(s_ongoing, SPECIALIST_OUTCOME.index("ongoing"), s_outcome)
    s_reason = np.where(rng.random(k) < 0.6, primary[s_ep],
                        issue_order[s_ep, rng.integers(0, 4, k) % n_issues[s_ep]])
    referrals_df = _frame(SPECIALIST_REFERRALS, {
        "referral_id": _ids("R", k),
        "episode_id": ep_ids.gather(s_ep),
        "service": _gather(SPECIALIST_SERVICE, _choice(rng, k, (0.55, 0.45))),
        "reason": _gather(PRESENTING_ISSUES, s_reason),
        "start_date": _dates(s_start),
        "end_date": _dates(s_end, ~s_ongoing),
        "outcome": _gather(SPECIALIST_OUTCOME, s_outcome),
    })
    return {
        FAMILIES: families_df,
        CHILDREN: children_df,
        EPISODES: episodes_df,
        GOALS: goals_df,
        SPECIALIST_REFERRALS: referrals_df,
    }


def marker_strings(tables: Mapping[str, pl.DataFrame]) -> list[str]:
    """Return every marker value present in marker-bearing columns (empty for ordinary tables)."""
    found: list[str] = []
    for table, columns in MARKER_COLUMNS.items():
        df = tables.get(table)
        if df is None:
            continue
        for column in columns:
            if column in df.columns:
                values = df.get_column(column).drop_nulls()
                found.extend(values.filter(values.str.contains(_MARKER_RE)).to_list())
    return found


# ---------------------------------------------------------------------------------------------
# Rendering.
def _header_variant(name: str, style: int) -> str:
    if style == 1:  # "Family ID"
        return " ".join(w.upper() if w == "id" else w.capitalize() for w in name.split("_"))
    if style == 2:
        return f" {name} "
    if style == 3:
        return name.upper()
    return name


def _messy_frame(table: str, df: pl.DataFrame, rng: np.random.Generator,
                 native_dates: frozenset[str]) -> pl.DataFrame:
    """Apply the messiness the spec allows to one clean table (values and headers)."""
    n = df.height
    exprs: list[pl.Expr] = []
    for column in df.columns:
        col = pl.col(column)
        if column in _CODE_COLUMNS[table]:
            v = pl.lit(pl.Series(_choice(rng, n, (0.6, 0.15, 0.1, 0.1, 0.05))))
            exprs.append(
                pl.when(v == 1).then(col.str.to_uppercase())
                .when(v == 2).then(col.str.to_titlecase())
                .when(v == 3).then(pl.concat_str([pl.lit(" "), col, pl.lit(" ")]))
                .when(v == 4).then(col + " ")
                .otherwise(col).alias(column)
            )
        elif column in _YES_NO_COLUMNS:
            styles = (("Y", "N"), ("Yes", "No"), ("TRUE", "FALSE"), ("1", "0"), ("yes", "no"))
            main = int(rng.integers(0, len(styles)))
            pick = np.where(rng.random(n) < 0.8, main, rng.integers(0, len(styles), n))
            yes = pl.lit(_gather([s[0] for s in styles], pick))
            no = pl.lit(_gather([s[1] for s in styles], pick))
            exprs.append(pl.when(col == "Y").then(yes).when(col == "N").then(no)
                         .otherwise(col).alias(column))
        elif column in _DATE_COLUMNS[table] and column not in native_dates:
            uk_share = float(rng.choice([0.0, 0.5, 1.0]))
            uk = pl.lit(pl.Series(rng.random(n) < uk_share, dtype=pl.Boolean))
            exprs.append(pl.when(uk).then(col.str.to_date("%Y-%m-%d").dt.strftime("%d/%m/%Y"))
                         .otherwise(col).alias(column))
        elif column in ("lead_carer_name", "child_name"):
            pool = _ACCENTED_CARERS if column == "lead_carer_name" else _ACCENTED_CHILDREN
            swap = pl.lit(pl.Series(rng.random(n) < 0.08, dtype=pl.Boolean))
            fancy = pl.lit(_gather(pool, rng.integers(0, len(pool), n)))
            exprs.append(pl.when(swap & ~col.str.contains(_MARKER_RE)).then(fancy)
                         .otherwise(col).alias(column))
        elif column == "address_line_2":
            swap = pl.lit(pl.Series(rng.random(n) < 0.1, dtype=pl.Boolean))
            fancy = pl.lit(_gather(_ACCENTED_LINE2, rng.integers(0, len(_ACCENTED_LINE2), n)))
            exprs.append(pl.when(swap).then(fancy).otherwise(col).alias(column))
        elif column == "case_notes":
            add = pl.lit(pl.Series(rng.random(n) < 0.15, dtype=pl.Boolean))
            extra = pl.lit(_gather(_MESSY_NOTES, rng.integers(0, len(_MESSY_NOTES), n)))
            exprs.append(pl.when(add).then(pl.concat_str([col, pl.lit("\r\n"), extra]))
                         .otherwise(col).alias(column))
        else:
            exprs.append(col)
    out = df.select(exprs) if n else df
    if table in (FAMILIES, EPISODES):
        extra_notes = _gather(("checked", "awaiting consent", "dup? see CRM", "n/a"),
                              rng.integers(0, 4, n), rng.random(n) < 0.3)
        out = out.with_columns(extra_notes.alias(_EXTRA_COLUMN))
    styles = rng.choice(4, size=out.width, p=(0.4, 0.3, 0.15, 0.15))
    return out.rename({c: _header_variant(c, int(s)) for c, s in zip(out.columns, styles,
                                                                      strict=True)})


def _xlsx_bytes(sheets: Mapping[str, tuple[pl.DataFrame, Sequence[str]]]) -> bytes:
    buf = io.BytesIO()
    workbook = xlsxwriter.Workbook(buf, {
        "in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
        "strings_to_urls": False,
    })
    workbook.set_properties({"created": datetime(2022, 1, 1)})
    date_format = workbook.add_format({"num_format": "dd/mm/yyyy"})
    for name, (frame, kinds) in sheets.items():
        sheet = workbook.add_worksheet(name)
        for ci, (column, kind) in enumerate(zip(frame.columns, kinds, strict=True)):
            sheet.write_string(0, ci, column)
            for ri, value in enumerate(frame.get_column(column).to_list(), start=1):
                if value is None:
                    continue
                if kind == "int":
                    sheet.write_number(ri, ci, int(value))
                elif kind == "date":
                    sheet.write_datetime(ri, ci, date.fromisoformat(value), date_format)
                else:
                    sheet.write_string(ri, ci, value)
    workbook.close()
    return buf.getvalue()


def render_members(
    tables: Mapping[str, pl.DataFrame],
    *,
    fmt: Fmt = "csv",
    messy: bool = False,
    encoding: Encoding = "utf-8",
    seed: int = 0,
) -> dict[str, bytes]:
    """Render tables as archive members: ``<table>.csv`` each, or one ``extract.xlsx``."""
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown format {fmt!r}")
    if encoding not in ("utf-8", "utf-8-sig", "cp1252"):
        raise ValueError(f"unknown encoding {encoding!r}")
    members: dict[str, bytes] = {}
    sheets: dict[str, tuple[pl.DataFrame, list[str]]] = {}
    for ti, table in enumerate(TABLES):
        df = tables[table]
        rng = np.random.default_rng([seed, ti, 7])
        native: frozenset[str] = frozenset()
        if messy and fmt == "xlsx":
            dates = _DATE_COLUMNS[table]
            native = frozenset(c for c in dates if c == "referral_date" or rng.random() < 0.5)
        frame = _messy_frame(table, df, rng, native) if messy else df
        if fmt == "csv":
            text = frame.write_csv(line_terminator="\r\n" if messy else "\n")
            data = text.encode("cp1252" if encoding == "cp1252" else "utf-8")
            members[f"{table}.csv"] = (b"\xef\xbb\xbf" + data) if encoding == "utf-8-sig" else data
        else:
            kinds = [
                "int" if c in _INT_COLUMNS else "date" if c in native else "text"
                for c in df.columns
            ]
            kinds += ["text"] * (frame.width - len(kinds))
            sheets[table] = (frame, kinds)
    if fmt == "xlsx":
        members["extract.xlsx"] = _xlsx_bytes(sheets)
    return members


# ---------------------------------------------------------------------------------------------
# Packaging.
_ZIP_TIME = (2022, 1, 1, 0, 0, 0)


def zip_members(members: Mapping[str, bytes]) -> bytes:
    """Pack members into a plain deflated ZIP archive in memory (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buf.getvalue()


def aes_zip(members: Mapping[str, bytes], passphrase: str) -> bytes:
    """Pack members into a WinZip AES-256 encrypted ZIP archive in memory."""
    if not passphrase:
        raise ValueError("an AES ZIP needs a non-empty passphrase")
    return aes_zip_bytes(members, passphrase)


def age_encrypt(plaintext: bytes, *, passphrase: str | None = None,
                recipient: str | None = None) -> bytes:
    """Encrypt bytes with age, to a passphrase (scrypt) or an X25519 recipient (``age1...``)."""
    if (passphrase is None) == (recipient is None):
        raise ValueError("give exactly one of passphrase or recipient")
    if recipient is not None:
        return pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(recipient)])
    if not passphrase:
        raise ValueError("an age passphrase must not be empty")
    return pyrage.passphrase.encrypt(plaintext, passphrase)


def new_age_identity() -> tuple[str, str]:
    """Create an X25519 age identity: (secret ``AGE-SECRET-KEY-1...``, public ``age1...``)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def write_extract(
    path: Path,
    *,
    families: int = 200,
    seed: int = 1,
    fmt: Fmt = "csv",
    encryption: Encryption = "aes-zip",
    passphrase: str | None = None,
    recipient: str | None = None,
    messy: bool = False,
    encoding: Encoding = "utf-8",
    markers: bool = False,
    sidecar: bool = False,
) -> Path:
    """Write one encrypted synthetic extract (plus optional ``.sha256``); no plaintext on disk."""
    path = Path(path)
    tables = generate_tables(families, seed, markers=markers)
    members = render_members(tables, fmt=fmt, messy=messy, encoding=encoding, seed=seed)
    if encryption == "aes-zip":
        if passphrase is None:
            raise ValueError("encryption 'aes-zip' needs a passphrase")
        data = aes_zip(members, passphrase)
    elif encryption == "age-passphrase":
        if passphrase is None:
            raise ValueError("encryption 'age-passphrase' needs a passphrase")
        data = age_encrypt(zip_members(members), passphrase=passphrase)
    elif encryption == "age-x25519":
        if recipient is None:
            raise ValueError("encryption 'age-x25519' needs a recipient")
        data = age_encrypt(zip_members(members), recipient=recipient)
    else:
        raise ValueError(f"unknown encryption {encryption!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    if sidecar:
        digest = hashlib.sha256(data).hexdigest()
        _atomic_write(path.with_name(path.name + ".sha256"),
                      f"{digest}  {path.name}\n".encode("ascii"))
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Survey response export.
_SCORE_PARAMS = {  # mean, sd, loading on a shared wellbeing factor
    "q1_life_satisfaction": (6.5, 2.1, 0.6),
    "q2_worthwhile": (7.0, 2.0, 0.55),
    "q3_happy_yesterday": (6.5, 2.4, 0.6),
    "q4_anxious_yesterday": (3.8, 2.8, -0.5),
    "q5_child_wellbeing": (7.2, 1.9, 0.4),
    "q6_parenting_confidence": (6.9, 2.0, 0.45),
    "q7_help_with_difficulties": (6.6, 2.4, 0.35),
    "q8_worker_relationship": (8.1, 1.8, 0.3),
}


def generate_survey_export(
    tokens: Sequence[str],
    *,
    seed: int,
    response_rate: float = 0.5,
    submitted_on: date = date(2022, 2, 1),
) -> pl.DataFrame:
    """Generate survey returns (export v1 layout) for a seeded subset of the issued tokens."""
    if not 0.0 <= response_rate <= 1.0:
        raise ValueError("response_rate must be between 0 and 1")
    rng = np.random.default_rng([seed, 2022])
    pool = list(tokens)
    k = round(len(pool) * response_rate)
    picked = rng.choice(len(pool), size=k, replace=False) if k else np.zeros(0, np.int64)
    start = datetime(submitted_on.year, submitted_on.month, submitted_on.day)
    seconds = rng.integers(0, 28, k) * 86400 + rng.integers(8 * 3600, 22 * 3600, k)
    sort = np.argsort(seconds, kind="stable")
    picked, seconds = picked[sort], seconds[sort]
    submitted = [(start + timedelta(seconds=int(s))).isoformat() for s in seconds]
    mode = _choice(rng, k, (0.70, 0.25, 0.05))
    factor = rng.normal(0.0, 1.0, k)
    columns: dict[str, pl.Series] = {
        "token": pl.Series([pool[i] for i in picked], dtype=pl.String),
        "submitted_at": pl.Series(submitted, dtype=pl.String),
        "mode": _gather(SURVEY_MODE, mode),
    }
    for question in SCORE_QUESTIONS:
        mean, sd, loading = _SCORE_PARAMS[question]
        noise = rng.normal(0.0, 1.0, k)
        raw = mean + sd * (loading * factor + np.sqrt(1 - loading**2) * noise)
        score = np.clip(np.rint(raw), 0, 10).astype(np.int64)
        missing = rng.random(k) < np.where(mode == 1, 0.06, 0.02)
        columns[question] = pl.Series(score, dtype=pl.Int64).zip_with(
            pl.Series(~missing, dtype=pl.Boolean), pl.repeat(None, k, dtype=pl.Int64, eager=True)
        )
    q9, q10 = YES_NO_QUESTIONS
    columns[q9] = _yes_no(rng.random(k) < 0.08, rng.random(k) >= 0.05)
    columns[q10] = _yes_no(rng.random(k) < 0.35, rng.random(k) >= 0.08)
    return pl.DataFrame([columns[c].rename(c) for c in SURVEY_COLUMNS])


def survey_export_csv(df: pl.DataFrame) -> bytes:
    """Render a survey export frame as UTF-8 CSV bytes (empty cell = missing)."""
    return df.write_csv().encode("utf-8")
