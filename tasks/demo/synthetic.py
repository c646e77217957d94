"""Synthetic Cluster extract tables (extract-v1.md) for tests, demo and benchmarks.

Everything here is fake (values from ``tasks.demo.values``); phone numbers use the Ofcom drama
range ``07700 900000``-``07700 900999``. ``generate_tables`` returns the five tables as clean
canonical strings (what a clean CSV holds), deterministic for a seed; one generator per table
draws from the same random stream in a fixed order. ``tasks.demo.render`` turns them into
archive members and encrypted extracts, ``tasks.demo.survey_export`` makes survey returns.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

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
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_REFERRALS,
    SPECIALIST_SERVICE,
)
from schemas.columns import AGE_LIMITS, TABLE_COLUMNS
from tasks.demo.values import (
    CARER_FIRST,
    CHILD_FIRST,
    EMAIL_DOMAINS,
    ETHNICITY_WEIGHTS,
    GOAL_TEXT,
    ISSUE_WEIGHTS,
    LOCALITIES,
    NOT_ENGLISH,
    NOTES,
    OUTWARD,
    STREETS,
    SURNAMES,
    TOWNS,
    YEAR,
    ascii_slug,
    choice,
    concat,
    dates,
    day,
    gather,
    id_width,
    ids,
    ints,
    mask,
    yes_no,
)

__all__ = ["MARKER_COLUMNS", "MARKER_RE", "generate_tables", "marker_strings"]

# Columns holding marker values in marker mode (table -> columns).
MARKER_COLUMNS: dict[str, tuple[str, ...]] = {
    FAMILIES: ("lead_carer_name", "address_line_1", "email", "postcode"),
    CHILDREN: ("child_name",),
    EPISODES: ("case_notes",),
    GOALS: ("goal_text",),
}
MARKER_RE = (
    r"^(?:ZQX(?:NAME|CHILD|NOTE|GOAL)\d{6,}|ZQXADDR\d{6,} Street|zqxmail\d{6,}@example\.invalid"
    r"|QZ\d{2} \d[ABDEFGHJLNPQRSTUWXYZ]{2})$"
)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters allowed in the inward code's last two places
_MARKER_POSTCODE_CAPACITY = 100 * 10 * len(_INWARD_LETTERS) ** 2
_ETHNICITY_WEIGHTS = [ETHNICITY_WEIGHTS[c] for c in ETHNICITY_CODES]


def _frame(table: str, columns: Mapping[str, pl.Series]) -> pl.DataFrame:
    order = TABLE_COLUMNS[table]
    return pl.DataFrame([columns[c].rename(c).cast(pl.String) for c in order])


@dataclass(frozen=True)
class _Timeline:
    """Each family's episodes as day numbers: the first and an optional re-referral after closure."""

    extract_day: int
    ref1: np.ndarray  # per family: first referral
    last_ref: np.ndarray  # per family: latest referral
    ep_fam: np.ndarray  # per episode (families in order, first episode first): family index
    ep_ref: np.ndarray
    ep_close: np.ndarray
    ep_open: np.ndarray
    ep_end: np.ndarray  # last day the episode is known open

    @property
    def families(self) -> int:
        return len(self.ref1)

    @property
    def episodes(self) -> int:
        return len(self.ep_fam)


@dataclass(frozen=True)
class _Families:
    """The families table and what the children's generator draws on."""

    frame: pl.DataFrame
    ids: pl.Series
    n_children: np.ndarray
    surname: np.ndarray
    carer_eth: np.ndarray


@dataclass(frozen=True)
class _Episodes:
    """The episodes table and what the goals and specialist referrals draw on."""

    frame: pl.DataFrame
    ids: pl.Series
    issue_order: np.ndarray
    n_issues: np.ndarray
    primary: np.ndarray
    outcome: np.ndarray
    stepped_up: np.ndarray


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
    timeline = _timeline(rng, families, day(window_start), day(window_end))
    family_rows = _families(rng, timeline, markers)
    children = _children(rng, timeline, family_rows, markers)
    episodes = _episodes(rng, timeline, family_rows.ids, markers)
    goals = _goals(rng, timeline, episodes, markers)
    referrals = _specialist_referrals(rng, timeline, episodes)
    return {
        FAMILIES: family_rows.frame,
        CHILDREN: children,
        EPISODES: episodes.frame,
        GOALS: goals,
        SPECIALIST_REFERRALS: referrals,
    }


def _timeline(rng: np.random.Generator, n: int, ws: int, we: int) -> _Timeline:
    """Episode dates per family: first episode, optional re-referral after closure."""
    extract_day = we + 183  # the extract is taken about six months after the window ends
    period = choice(rng, n, (0.07, 0.80, 0.13))  # before, around/in, after the window
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
    ep_close = np.where(ep_seq == 0, close1[ep_fam], close2[ep_fam])
    ep_open = np.where(ep_seq == 0, open1[ep_fam], open2[ep_fam])
    return _Timeline(
        extract_day=extract_day,
        ref1=ref1,
        last_ref=np.where(has2, ref2, ref1),
        ep_fam=ep_fam,
        ep_ref=np.where(ep_seq == 0, ref1[ep_fam], ref2[ep_fam]),
        ep_close=ep_close,
        ep_open=ep_open,
        ep_end=np.where(ep_open, extract_day, ep_close),
    )


# --- families ---------------------------------------------------------------------------------
def _families(rng: np.random.Generator, timeline: _Timeline, markers: bool) -> _Families:
    """The families table: household, employment, ethnicity, deprivation and contact details."""
    n = timeline.families
    n_children = choice(rng, n, (0.45, 0.35, 0.20)) + 1
    adults = 1 + (rng.random(n) < 0.45)
    household = np.clip(n_children + adults + rng.poisson(0.9, n), 1, 10)
    solo = rng.random(n) < 0.004  # recorded household of one (valid per spec, a data quirk)
    household = np.where(solo, 1, household)
    adults = np.where(solo, 1, adults)
    employed_adults = rng.binomial(adults, 0.35)
    lead_employed = (employed_adults > 0) & (rng.random(n) < 0.75)
    lead_emp = np.where(
        lead_employed,
        choice(rng, n, (0.40, 0.45, 0.15)),  # full time, part time, self employed
        3 + choice(rng, n, (0.45, 0.40, 0.15)),  # unemployed, not seeking work, unknown
    )
    carer_eth = choice(rng, n, _ETHNICITY_WEIGHTS)
    p_not_english = np.array([NOT_ENGLISH.get(c, 0.1) for c in ETHNICITY_CODES])[carer_eth]
    first_lang_english = rng.random(n) >= p_not_english
    imd = choice(rng, n, (0.38, 0.24, 0.14, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01, 0.01)) + 1
    preferred = choice(rng, n, (0.40, 0.18, 0.42))  # email, post, phone
    contacts, surname = _family_contacts(rng, n, preferred, markers)
    family_ids = ids("F", n)
    frame = _frame(FAMILIES, {
        "family_id": family_ids,
        **contacts,
        "preferred_contact": gather(PREFERRED_CONTACT, preferred),
        "household_size": ints(household),
        "adults_in_employment": ints(employed_adults),
        "lead_carer_employment": gather(LEAD_CARER_EMPLOYMENT, lead_emp),
        "lead_carer_ethnicity": gather(ETHNICITY_CODES, carer_eth),
        "first_language_english": yes_no(first_lang_english, rng.random(n) >= 0.05),
        "free_school_meals": yes_no(rng.random(n) < 0.6),
        "imd_decile": ints(imd, rng.random(n) >= 0.04),
        "do_not_contact": yes_no(rng.random(n) < 0.03),
    })
    return _Families(frame=frame, ids=family_ids, n_children=n_children, surname=surname,
                     carer_eth=carer_eth)


def _family_contacts(rng: np.random.Generator, n: int, preferred: np.ndarray, markers: bool
                     ) -> tuple[dict[str, pl.Series], np.ndarray]:
    """The contact columns of the families (markers or fake values) and each carer's surname."""
    has_email = (preferred == 0) | (rng.random(n) < 0.55)
    has_phone = (preferred == 2) | (rng.random(n) < 0.85)
    surname = rng.integers(0, len(SURNAMES), n)
    carer_first = rng.integers(0, len(CARER_FIRST), n)
    if markers:
        contacts = _marker_contacts(n, has_email)
    else:
        contacts = _fake_contacts(rng, n, has_email, surname, carer_first)
    contacts["phone"] = mask(
        "07700 900" + pl.Series(rng.integers(0, 1000, n)).cast(pl.String).str.zfill(3), has_phone)
    contacts["address_line_2"] = gather(LOCALITIES, rng.integers(0, len(LOCALITIES), n),
                                        rng.random(n) < 0.2)
    contacts["town"] = gather(TOWNS, choice(rng, n, (0.7, 0.2, 0.1)))
    return contacts, surname


def _marker_contacts(n: int, has_email: np.ndarray) -> dict[str, pl.Series]:
    """Marker name, address line 1, e-mail and postcode of each family (no random draws)."""
    width = id_width(n)
    i = np.arange(n)
    return {
        "lead_carer_name": ids("ZQXNAME", n, width),
        "address_line_1": ids("ZQXADDR", n, width) + " Street",
        "email": mask(ids("zqxmail", n, width) + "@example.invalid", has_email),
        "postcode": concat(
            "QZ",
            pl.Series(i // 4000).cast(pl.String).str.zfill(2),
            " ",
            pl.Series((i // 400) % 10).cast(pl.String),
            gather(tuple(_INWARD_LETTERS), (i // 20) % 20),
            gather(tuple(_INWARD_LETTERS), i % 20),
        ),
    }


def _fake_contacts(rng: np.random.Generator, n: int, has_email: np.ndarray, surname: np.ndarray,
                   carer_first: np.ndarray) -> dict[str, pl.Series]:
    """Fake name, address line 1, e-mail and postcode of each family."""
    carer_name = concat(gather(CARER_FIRST, carer_first), gather(SURNAMES, surname), sep=" ")
    line1 = concat(pl.Series(rng.integers(1, 250, n)).cast(pl.String),
                   gather(STREETS, rng.integers(0, len(STREETS), n)), sep=" ")
    email = mask(
        concat(
            gather([ascii_slug(x) for x in CARER_FIRST], carer_first), ".",
            gather([ascii_slug(x) for x in SURNAMES], surname),
            pl.Series(rng.integers(1, 100, n)).cast(pl.String), "@",
            gather(EMAIL_DOMAINS, choice(rng, n, (0.6, 0.2, 0.2))),
        ),
        has_email,
    )
    letters = tuple(_INWARD_LETTERS)
    postcode = concat(
        gather(OUTWARD, rng.integers(0, len(OUTWARD), n)), " ",
        pl.Series(rng.integers(0, 10, n)).cast(pl.String),
        gather(letters, rng.integers(0, 20, n)), gather(letters, rng.integers(0, 20, n)),
    )
    return {"lead_carer_name": carer_name, "address_line_1": line1, "email": email,
            "postcode": postcode}


# --- children ---------------------------------------------------------------------------------
def _children(rng: np.random.Generator, timeline: _Timeline, families: _Families,
              markers: bool) -> pl.DataFrame:
    """The children table: ages within AGE_LIMITS at every referral of their family."""
    ch_fam = np.repeat(np.arange(timeline.families), families.n_children)
    m = len(ch_fam)
    age_days = rng.integers(int(4 * YEAR), int(15.5 * YEAR), m)
    dob = timeline.ref1[ch_fam] - age_days
    # Still under the upper age limit at a re-referral.
    dob = np.maximum(dob, timeline.last_ref[ch_fam] - int(AGE_LIMITS[1] * YEAR) + 30)
    age_years = (timeline.ref1[ch_fam] - dob) / YEAR
    same_eth = rng.random(m) < 0.85
    child_eth = np.where(same_eth, families.carer_eth[ch_fam],
                         choice(rng, m, _ETHNICITY_WEIGHTS))
    if markers:
        child_name = ids("ZQXCHILD", m)
    else:
        own_surname = np.where(rng.random(m) < 0.85, families.surname[ch_fam],
                               rng.integers(0, len(SURNAMES), m))
        child_name = concat(gather(CHILD_FIRST, rng.integers(0, len(CHILD_FIRST), m)),
                            gather(SURNAMES, own_surname), sep=" ")
    return _frame(CHILDREN, {
        "child_id": ids("C", m),
        "family_id": families.ids.gather(ch_fam),
        "child_name": child_name,
        "date_of_birth": dates(dob),
        "gender": gather(GENDER, choice(rng, m, (0.5, 0.48, 0.005, 0.015))),
        "ethnicity": gather(ETHNICITY_CODES, child_eth),
        "school_phase": gather(SCHOOL_PHASE, (age_years >= 11).astype(np.int64)),
        "sen_support": yes_no(rng.random(m) < 0.18, rng.random(m) >= 0.05),
    })


# --- episodes ---------------------------------------------------------------------------------
def _code_lists(codes: tuple[str, ...]) -> list[str]:
    """Every subset of the codes as a ';'-joined list, indexed by its bit mask."""
    return [";".join(c for j, c in enumerate(codes) if k >> j & 1) for k in range(1 << len(codes))]


def _presenting_issues(rng: np.random.Generator, n_ep: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-4 weighted issues per episode: (issues by rank, number chosen, chosen flags)."""
    weights = np.array([ISSUE_WEIGHTS[c] for c in PRESENTING_ISSUES])
    n_issues = choice(rng, n_ep, (0.30, 0.35, 0.22, 0.13)) + 1
    keys = rng.random((n_ep, len(PRESENTING_ISSUES))) ** (1.0 / weights)  # weighted sampling
    issue_order = np.argsort(-keys, axis=1)
    issue_rank = np.argsort(issue_order, axis=1)
    chosen = issue_rank < n_issues[:, None]
    return issue_order, n_issues, chosen


def _services(rng: np.random.Generator, n_ep: int, chosen: np.ndarray) -> np.ndarray:
    """Services per episode (flags in SERVICES order), more likely where an issue calls for them."""

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
    return svc


def _case_notes(rng: np.random.Generator, n_ep: int, markers: bool) -> pl.Series:
    """Free-text case notes (one or two fake sentences), or markers."""
    if markers:
        return ids("ZQXNOTE", n_ep)
    two = rng.random(n_ep) < 0.5
    first_note = gather(NOTES, rng.integers(0, len(NOTES), n_ep))
    second_note = gather(NOTES, rng.integers(0, len(NOTES), n_ep), two)
    return pl.select(
        pl.when(pl.lit(pl.Series(two))).then(pl.concat_str(
            [pl.lit(first_note), pl.lit(second_note)], separator=" "))
        .otherwise(pl.lit(first_note))
    ).to_series()


def _episodes(rng: np.random.Generator, timeline: _Timeline, family_ids: pl.Series,
              markers: bool) -> _Episodes:
    """The episodes table: issues, services, worker, allocation, closure and onward referral."""
    n_ep, ep_ref, ep_open = timeline.episodes, timeline.ep_ref, timeline.ep_open
    issue_order, n_issues, chosen = _presenting_issues(rng, n_ep)
    issue_mask = (chosen * (1 << np.arange(len(PRESENTING_ISSUES)))).sum(axis=1)
    primary = issue_order[:, 0]
    svc = _services(rng, n_ep, chosen)
    svc_mask = (svc * (1 << np.arange(len(SERVICES)))).sum(axis=1)
    role = choice(rng, n_ep, (0.38, 0.36, 0.10, 0.09, 0.07))
    attendance_led = (primary == PRESENTING_ISSUES.index("school_attendance")) & svc[:, 3]
    role = np.where(attendance_led & (rng.random(n_ep) < 0.5), 4, role)

    alloc = ep_ref + np.minimum(rng.geometric(0.15, n_ep) - 1, timeline.ep_end - ep_ref)
    alloc_valid = (rng.random(n_ep) >= 0.05) & ~(ep_open & (timeline.extract_day - ep_ref < 7))
    outcome = choice(rng, n_ep, (0.34, 0.24, 0.08, 0.13, 0.06, 0.07, 0.08))
    stepped_up = outcome == CLOSURE_OUTCOME.index("stepped_up_to_social_care")
    onward = np.where(stepped_up, ONWARD_REFERRAL.index("childrens_social_care"),
                      choice(rng, n_ep, (0.60, 0.04, 0.12, 0.08, 0.07, 0.05, 0.04)))
    notes = _case_notes(rng, n_ep, markers)
    closed = ~ep_open
    episode_ids = ids("E", n_ep)
    frame = _frame(EPISODES, {
        "episode_id": episode_ids,
        "family_id": family_ids.gather(timeline.ep_fam),
        "referral_date": dates(ep_ref),
        "referral_route": gather(REFERRAL_ROUTE,
                                 choice(rng, n_ep, (0.42, 0.22, 0.16, 0.12, 0.08))),
        "allocation_date": dates(alloc, alloc_valid),
        "presenting_issues": gather(_code_lists(PRESENTING_ISSUES), issue_mask),
        "primary_issue": gather(PRESENTING_ISSUES, primary),
        "services": gather(_code_lists(SERVICES), svc_mask),
        "lead_worker_role": gather(LEAD_WORKER_ROLE, role),
        "closure_date": dates(timeline.ep_close, closed),
        "closure_outcome": gather(CLOSURE_OUTCOME, outcome, closed),
        "onward_referral": gather(ONWARD_REFERRAL, onward, closed),
        "case_notes": notes,
    })
    return _Episodes(frame=frame, ids=episode_ids, issue_order=issue_order, n_issues=n_issues,
                     primary=primary, outcome=outcome, stepped_up=stepped_up)


# --- goals and specialist referrals -------------------------------------------------------------
def _goals(rng: np.random.Generator, timeline: _Timeline, episodes: _Episodes,
           markers: bool) -> pl.DataFrame:
    """1-3 goals per episode in its issues, scores improving more for better outcomes."""
    n_goals = choice(rng, timeline.episodes, (0.25, 0.40, 0.35)) + 1
    g_ep = np.repeat(np.arange(timeline.episodes), n_goals)
    g = len(g_ep)
    starts = np.repeat(np.cumsum(n_goals) - n_goals, n_goals)
    goal_number = np.arange(g) - starts + 1
    area = episodes.issue_order[g_ep, (goal_number - 1) % episodes.n_issues[g_ep]]
    baseline = np.clip(np.rint(rng.normal(3.2, 1.6, g)), 0, 10).astype(np.int64)
    gain_by_outcome = np.array([4.0, 2.2, 0.2, 0.6, 1.2, 0.4, 1.5])
    gain = np.where(timeline.ep_open[g_ep], 1.6, gain_by_outcome[episodes.outcome[g_ep]])
    latest = np.clip(np.rint(baseline + rng.normal(gain, 1.6)), 0, 10).astype(np.int64)
    ep_ref, ep_end = timeline.ep_ref[g_ep], timeline.ep_end[g_ep]
    span = ep_end - ep_ref
    reviewed = (span >= 21) & (rng.random(g) >= 0.1)
    review = ep_ref + np.floor(np.sqrt(rng.random(g)) * (span + 1)).astype(np.int64)
    review = np.minimum(review, ep_end)
    goal_text = (ids("ZQXGOAL", g) if markers
                 else gather([GOAL_TEXT[c] for c in PRESENTING_ISSUES], area))
    return _frame(GOALS, {
        "episode_id": episodes.ids.gather(g_ep),
        "goal_number": ints(goal_number),
        "goal_area": gather(PRESENTING_ISSUES, area),
        "baseline_score": ints(baseline),
        "latest_score": ints(latest, reviewed),
        "latest_review_date": dates(review, reviewed),
        "goal_text": goal_text,
    })


def _specialist_referrals(rng: np.random.Generator, timeline: _Timeline,
                          episodes: _Episodes) -> pl.DataFrame:
    """Specialist referrals of about one episode in ten, within the episode's dates."""
    s_ep = np.flatnonzero(rng.random(timeline.episodes) < 0.10)
    k = len(s_ep)
    ep_ref, ep_end = timeline.ep_ref[s_ep], timeline.ep_end[s_ep]
    s_start = ep_ref + np.minimum(rng.integers(7, 91, k), ep_end - ep_ref)
    s_end = s_start + rng.integers(14, 121, k)
    s_end = np.where(timeline.ep_open[s_ep], s_end, np.minimum(s_end, timeline.ep_close[s_ep]))
    s_ongoing = s_end > timeline.extract_day
    s_outcome = np.where(
        episodes.stepped_up[s_ep] & (rng.random(k) < 0.5),
        SPECIALIST_OUTCOME.index("stepped_up_to_social_care"),
        choice(rng, k, (0.60, 0.18, 0.22)),  # returned, stepped up, closed
    )
    s_outcome = np.where(s_ongoing, SPECIALIST_OUTCOME.index("ongoing"), s_outcome)
    s_reason = np.where(rng.random(k) < 0.6, episodes.primary[s_ep],
                        episodes.issue_order[s_ep, rng.integers(0, 4, k) % episodes.n_issues[s_ep]])
    return _frame(SPECIALIST_REFERRALS, {
        "referral_id": ids("R", k),
        "episode_id": episodes.ids.gather(s_ep),
        "service": gather(SPECIALIST_SERVICE, choice(rng, k, (0.55, 0.45))),
        "reason": gather(PRESENTING_ISSUES, s_reason),
        "start_date": dates(s_start),
        "end_date": dates(s_end, ~s_ongoing),
        "outcome": gather(SPECIALIST_OUTCOME, s_outcome),
    })


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
                found.extend(values.filter(values.str.contains(MARKER_RE)).to_list())
    return found
