"""Survey sampling: the frame, strata, wave allocation and draws, and household tokens.

The frame is built in memory from the analysis store (study population, latest in-window
episode) and the decrypted contact store (do-not-contact flag, reachable route); nothing
personal is written anywhere. A wave is drawn once and recorded with its seed; asking for
it again returns the stored wave unchanged.

Rules (documented in the README):

* Route: the preferred method when its details are present (e-mail: an address; post:
  address line 1 and postcode; phone: a number), otherwise post, e-mail, phone in that
  order; a family with none is excluded as ``no_contact_details``.
* Stratum: the ``survey.stratify_by`` field of the family's latest in-window episode
  (latest ``referral_date``, ties by the larger episode pseudonym), or of the family for
  ``lead_carer_ethnicity`` / ``household_size_band``; a missing value is ``unknown``.
  Waves 2+ use the field recorded with wave 1.
* Wave 1: Hamilton allocation (``tasks.survey.allocation.hamilton_allocation``) of ``--size``
  (default ``survey.sample_size``) with ``survey.min_per_stratum``; seed ``survey.seed``.
* Wave k >= 2 (top-up): only families never sampled; size ``--size`` or
  ``topup_size(target_respondents, respondents, expected_response_rate)`` capped at the
  frame; allocation ``shortfall_allocation`` with the wave-1 allocation as the shares and
  the respondents so far per stratum; seed derived from ``survey.seed`` and k.
* An approved top-up (``survey-topup``) draws exactly the approved households per stratum
  (``plan_approved_wave``), whatever responses arrived while it waited; it is refused, drawing
  nothing, when a stratum no longer holds that many reachable never-sampled households.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_table_artifact
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tasks.core.audit import append_audit
from tasks.core.contacts import ContactRecord, load_contacts
from tasks.core.db import query, rows
from tasks.core.errors import ConfigError, UserFacingError
from tasks.core.prefect import artifact_key
from tasks.core.settings import Settings
from tasks.survey.allocation import draw_stratified, hamilton_allocation, shortfall_allocation, topup_size

TOKEN_BYTES = 24  # 192 bits, 32 URL-safe characters
UNKNOWN_STRATUM = "unknown"
STRATIFIERS = ("primary_issue", "referral_route", "lead_carer_ethnicity", "household_size_band")
ROUTE_ORDER = ("post", "email", "phone")
EXCLUSIONS = ("withdrawn", "already_sampled", "do_not_contact", "no_contact_details")


class SamplingError(UserFacingError):
    """A wave cannot be drawn as asked (one line, nothing written)."""


@dataclass(frozen=True)
class Candidate:
    """A study-population family as the frame sees it (pseudonym and coded fields only)."""

    family_pid: str
    primary_issue: str | None = None
    referral_route: str | None = None
    lead_carer_ethnicity: str | None = None
    household_size: int | None = None
    withdrawn: bool = False
    sampled: bool = False


@dataclass(frozen=True)
class FrameUnit:
    """One family that can be sampled: its stratum and the route that reaches it."""

    family_pid: str
    stratum: str
    route: str


@dataclass(frozen=True)
class SamplingFrame:
    """Families that can be sampled, and how many were left out for each reason."""

    units: tuple[FrameUnit, ...]
    excluded: dict[str, int]

    def sizes(self) -> dict[str, int]:
        """N_h per stratum, sorted by stratum."""
        counts: dict[str, int] = {}
        for unit in self.units:
            counts[unit.stratum] = counts.get(unit.stratum, 0) + 1
        return dict(sorted(counts.items()))

    def ids_by_stratum(self) -> dict[str, list[str]]:
        """Family pseudonyms per stratum."""
        out: dict[str, list[str]] = {}
        for unit in self.units:
            out.setdefault(unit.stratum, []).append(unit.family_pid)
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class WavePlan:
    """A proposed wave: allocation and the families drawn, before tokens are issued."""

    wave: int
    seed: int
    size: int
    stratify_by: str
    frame: dict[str, int]
    allocation: dict[str, int]
    selected: dict[str, list[str]]
    routes: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WaveResult:
    """A recorded wave: what ``sample --json`` prints, plus how it came about."""

    wave: int
    seed: int
    size: int
    stratify_by: str
    frame: dict[str, int]
    allocation: dict[str, int]
    households: list[dict[str, str]]
    created: bool
    excluded: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Exactly the cli.md shape: wave, frame, allocation, households (tokens only)."""
        return {"wave": self.wave, "frame": dict(self.frame), "allocation": dict(self.allocation),
                "households": [dict(h) for h in self.households]}


def household_size_band(size: int | None) -> str:
    """Band a household size: 1-2, 3-4, 5+ (unknown when missing)."""
    if size is None:
        return UNKNOWN_STRATUM
    return "1-2" if size <= 2 else "3-4" if size <= 4 else "5+"


def stratum_of(candidate: Candidate, stratify_by: str) -> str:
    """The stratum of a family under the given stratifying field."""
    if stratify_by == "household_size_band":
        return household_size_band(candidate.household_size)
    if stratify_by not in STRATIFIERS:
        raise ConfigError(f"survey.stratify_by {stratify_by!r} is not one of {', '.join(STRATIFIERS)}")
    value = getattr(candidate, stratify_by)
    return str(value) if value not in (None, "") else UNKNOWN_STRATUM


def _present(*values: str | None) -> bool:
    return all(v is not None and v.strip() != "" for v in values)


def route_details_present(record: ContactRecord, route: str) -> bool:
    """Whether the record holds what the route needs."""
    if route == "email":
        return _present(record.email)
    if route == "post":
        return _present(record.address_line_1, record.postcode)
    if route == "phone":
        return _present(record.phone)
    return False


def contact_route(record: ContactRecord | None) -> str | None:
    """Preferred method if its details are present, else post, e-mail, phone; None if none."""
    if record is None:
        return None
    preferred = (record.preferred_contact or "").strip().lower()
    if preferred in ROUTE_ORDER and route_details_present(record, preferred):
        return preferred
    return next((r for r in ROUTE_ORDER if route_details_present(record, r)), None)


def build_frame(candidates: Sequence[Candidate], contacts: Mapping[str, ContactRecord],
                stratify_by: str) -> SamplingFrame:
    """Keep families that have not withdrawn, were never sampled, may be contacted and can be reached."""
    excluded = dict.fromkeys(EXCLUSIONS, 0)
    units: list[FrameUnit] = []
    for c in candidates:
        record = contacts.get(c.family_pid)
        route = contact_route(record)
        if c.withdrawn:
            excluded["withdrawn"] += 1
        elif c.sampled:
            excluded["already_sampled"] += 1
        elif record is not None and record.do_not_contact:
            excluded["do_not_contact"] += 1
        elif route is None:
            excluded["no_contact_details"] += 1
        else:
            units.append(FrameUnit(c.family_pid, stratum_of(c, stratify_by), route))
    return SamplingFrame(tuple(units), excluded)


def wave_seed(base_seed: int, wave: int) -> int:
    """Wave 1 uses the configured seed; wave k a 62-bit seed derived from it and k."""
    if wave == 1:
        return base_seed
    digest = hashlib.sha256(f"cluster-eval wave seed:{base_seed}:{wave}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def _routes(frame: SamplingFrame) -> dict[str, str]:
    return {u.family_pid: u.route for u in frame.units}


def plan_first_wave(frame: SamplingFrame, size: int, seed: int, minimum: int,
                    stratify_by: str) -> WavePlan:
    """Hamilton allocation over the frame and a seeded draw within each stratum."""
    sizes = frame.sizes()
    total = sum(sizes.values())
    if size > total:
        raise SamplingError(
            f"wave 1 size {size} is larger than the sampling frame of {total} reachable households; "
            "give a smaller --size"
        )
    try:
        allocation = hamilton_allocation(sizes, size, minimum=minimum)
    except ValueError as exc:
        raise SamplingError(f"wave 1 cannot be allocated: {exc}") from None
    selected = draw_stratified(frame.ids_by_stratum(), allocation, seed)
    return WavePlan(1, seed, size, stratify_by, sizes, allocation, selected, _routes(frame),
                    dict(frame.excluded))


def plan_topup_wave(frame: SamplingFrame, wave: int, size: int | None, seed: int,
                    wave1_allocation: Mapping[str, int], respondents: Mapping[str, int],
                    target_respondents: int, expected_response_rate: float,
                    stratify_by: str) -> WavePlan:
    """Shortfall allocation of a top-up wave among never-sampled families, seeded draw."""
    sizes = frame.sizes()
    total = sum(sizes.values())
    if size is None:
        needed = topup_size(target_respondents, sum(respondents.values()), expected_response_rate)
        if needed == 0:
            raise SamplingError(
                f"wave {wave} is not needed: {sum(respondents.values())} respondents already reach "
                f"the target of {target_respondents}; give --size to draw one anyway"
            )
        size = min(needed, total)
    elif size > total:
        raise SamplingError(
            f"wave {wave} size {size} is larger than the {total} reachable households never "
            "sampled; give a smaller --size"
        )
    if size == 0:
        raise SamplingError(f"wave {wave} cannot be drawn: no reachable household is left to sample")
    allocation = shortfall_allocation(sizes, wave1_allocation, respondents, size)
    strata = sorted(set(allocation) | set(sizes))
    allocation = {h: allocation.get(h, 0) for h in strata}
    frame_sizes = {h: sizes.get(h, 0) for h in strata}
    selected = draw_stratified(frame.ids_by_stratum(), allocation, seed)
    return WavePlan(wave, seed, size, stratify_by, frame_sizes, allocation, selected,
                    _routes(frame), dict(frame.excluded))


def plan_approved_wave(frame: SamplingFrame, wave: int, seed: int, approved: Mapping[str, int],
                       stratify_by: str) -> WavePlan:
    """Draw exactly the approved households per stratum among never-sampled families (seeded)."""
    sizes = frame.sizes()
    for stratum, wanted in sorted(approved.items()):
        if wanted > sizes.get(stratum, 0):
            raise SamplingError(
                f"wave {wave} cannot be drawn as approved: stratum {stratum} now has "
                f"{sizes.get(stratum, 0)} reachable households never sampled, fewer than the {wanted} "
                "approved; nothing was drawn; start a new top-up to see a new proposal")
    strata = sorted(set(approved) | set(sizes))
    allocation = {h: int(approved.get(h, 0)) for h in strata}
    selected = draw_stratified(frame.ids_by_stratum(), allocation, seed)
    return WavePlan(wave, seed, sum(allocation.values()), stratify_by, {h: sizes.get(h, 0) for h in strata},
                    allocation, selected, _routes(frame), dict(frame.excluded))


def load_candidates(conn: Connection, cluster: str) -> list[Candidate]:
    """Study-population families with the stratifying fields of their latest in-window episode."""
    return [
        Candidate(r["family_pid"], r["primary_issue"], r["referral_route"], r["lead_carer_ethnicity"],
                  r["household_size"], bool(r["withdrawn"]), bool(r["sampled"]))
        for r in rows(conn, "survey_frame_candidates", {"cluster_id": cluster})
    ]


def stored_wave(conn: Connection, cluster: str, wave: int) -> WaveResult | None:
    """The recorded wave, exactly as first drawn, or None."""
    found = [w for w in rows(conn, "survey_waves", {"cluster_id": cluster}) if w["wave"] == wave]
    if not found:
        return None
    w = found[0]
    strata = rows(conn, "survey_wave_strata", {"cluster_id": cluster, "wave": wave})
    households = rows(conn, "survey_wave_households", {"cluster_id": cluster, "wave": wave})
    # Sorted here, not by SQL: database collations differ, the JSON must not.
    return WaveResult(
        wave=wave, seed=int(w["seed"]), size=int(w["size"]), stratify_by=w["stratify_by"],
        frame=dict(sorted((s["stratum"], int(s["frame_n"])) for s in strata)),
        allocation=dict(sorted((s["stratum"], int(s["allocated"])) for s in strata)),
        households=sorted(({"token": h["token"], "stratum": h["stratum"]} for h in households),
                          key=lambda h: (h["stratum"], h["token"])),
        created=False,
    )


def propose_wave(conn: Connection, settings: Settings, contact_key: bytes | None, wave: int,
                 size: int | None, approved: Mapping[str, int] | None = None) -> WavePlan:
    """Check the request against what exists and plan the wave (writes nothing).

    ``approved`` (households per stratum of an approved top-up) is drawn as it is.
    """
    cluster = settings.study.cluster
    survey = settings.survey
    waves = {int(w["wave"]): w for w in rows(conn, "survey_waves", {"cluster_id": cluster})}
    last = max(waves, default=0)
    if wave > last + 1:
        raise SamplingError(
            f"wave {wave} cannot be drawn before wave {last + 1}"
            + ("" if last else " (start with --wave 1)")
        )
    population = rows(conn, "survey_population_count", {"cluster_id": cluster})[0]["families"]
    if not population:
        raise SamplingError("no study population to sample: ingest an extract first")
    if contact_key is None:
        raise ConfigError("the contact key is missing, so no household can be reached; "
                          "ingest an extract first (it creates the contact store)")
    stratify_by = survey.stratify_by if wave == 1 else waves[1]["stratify_by"]
    contacts = load_contacts(conn, contact_key, cluster)
    frame = build_frame(load_candidates(conn, cluster), contacts, stratify_by)
    seed = wave_seed(survey.seed, wave)
    if wave == 1:
        return plan_first_wave(frame, size or survey.sample_size, seed, survey.min_per_stratum,
                               stratify_by)
    if approved is not None:
        return plan_approved_wave(frame, wave, seed, approved, stratify_by)
    wave1 = {s["stratum"]: int(s["allocated"])
             for s in rows(conn, "survey_wave_strata", {"cluster_id": cluster, "wave": 1})}
    respondents = {r["stratum"]: int(r["respondents"])
                   for r in rows(conn, "survey_respondents_by_stratum", {"cluster_id": cluster})}
    return plan_topup_wave(frame, wave, size, seed, wave1, respondents, survey.target_respondents,
                           survey.expected_response_rate, stratify_by)


def new_token() -> str:
    """An unguessable survey token: 192 random bits, URL-safe, no personal data.

    A token never starts with ``-``, so a command line never takes it for an option
    (``cluster-eval withdraw -abc`` would fail): such a draw is simply drawn again.
    """
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def record_wave(conn: Connection, cluster: str, plan: WavePlan, now: datetime,
                flow_run_id: str | None = None,
                token_factory: Callable[[], str] = new_token) -> WaveResult:
    """Insert the wave, its strata and its households with fresh tokens; audit it."""
    conn.execute(query("survey_wave_insert"), {
        "cluster_id": cluster, "wave": plan.wave, "seed": plan.seed, "size": plan.size,
        "stratify_by": plan.stratify_by, "drawn_at": now.isoformat()})
    conn.execute(query("survey_wave_strata_insert"), [
        {"cluster_id": cluster, "wave": plan.wave, "stratum": h, "frame_n": plan.frame[h],
         "allocated": plan.allocation[h]} for h in plan.allocation])
    households = []
    params = []
    for stratum, pids in plan.selected.items():
        for pid in pids:
            token = token_factory()
            households.append({"token": token, "stratum": stratum})
            params.append({"cluster_id": cluster, "token": token, "family_pid": pid,
                           "wave": plan.wave, "stratum": stratum, "route": plan.routes[pid]})
    if params:
        conn.execute(query("survey_household_insert"), params)
    append_audit(conn, cluster, "survey_wave_drawn", {
        "wave": plan.wave, "seed": plan.seed, "size": plan.size, "stratify_by": plan.stratify_by,
        "frame": sum(plan.frame.values()), "drawn": len(params),
        **{f"excluded_{k}": v for k, v in sorted(plan.excluded.items())}}, flow_run_id, now)
    households.sort(key=lambda h: (h["stratum"], h["token"]))
    return WaveResult(plan.wave, plan.seed, plan.size, plan.stratify_by, dict(plan.frame),
                      dict(plan.allocation), households, True, dict(plan.excluded))


def draw_wave(engine: Engine, settings: Settings, contact_key: bytes | None, wave: int,
              size: int | None, now: datetime | None = None, flow_run_id: str | None = None,
              approved: Mapping[str, int] | None = None) -> WaveResult:
    """Return wave N if it exists, else plan and record it in one transaction.

    ``approved`` (households per stratum of an approved top-up) is drawn exactly, so nothing
    other than what was approved is drawn.
    """
    cluster = settings.study.cluster
    try:
        with engine.begin() as conn:
            existing = stored_wave(conn, cluster, wave)
            if existing is not None:
                return existing
            plan = propose_wave(conn, settings, contact_key, wave, size, approved)
            return record_wave(conn, cluster, plan, now or datetime.now(UTC), flow_run_id)
    except IntegrityError:
        # Another run recorded this wave at the same moment: return what it recorded.
        with engine.connect() as conn:
            existing = stored_wave(conn, cluster, wave)
        if existing is None:
            raise
        return existing


def plan_wave(engine: Engine, settings: Settings, contact_key: bytes | None, wave: int,
              size: int | None) -> WavePlan | WaveResult:
    """The stored wave if it exists, else the proposal for it (read-only)."""
    with engine.connect() as conn:
        existing = stored_wave(conn, settings.study.cluster, wave)
        return existing if existing is not None else propose_wave(
            conn, settings, contact_key, wave, size)


def next_wave_number(engine: Engine, cluster: str) -> int:
    """One more than the last recorded wave (1 when none)."""
    with engine.connect() as conn:
        waves = [int(w["wave"]) for w in rows(conn, "survey_waves", {"cluster_id": cluster})]
    return max(waves, default=0) + 1


def allocation_table(frame: Mapping[str, int], allocation: Mapping[str, int]) -> list[dict[str, Any]]:
    """Rows stratum / frame / allocated for an artifact or a report."""
    return [{"stratum": h, "frame": frame.get(h, 0), "allocated": allocation.get(h, 0)}
            for h in sorted(set(frame) | set(allocation))]


def publish_allocation(cluster: str, result: WaveResult) -> None:
    """Table artifact of a wave's frame and allocation per stratum."""
    create_table_artifact(allocation_table(result.frame, result.allocation),
                          key=artifact_key(cluster, f"survey-wave-{result.wave}-allocation"),
                          description=f"Survey wave {result.wave}: {result.size} households, "
                                      f"seed {result.seed}, stratified by {result.stratify_by}; exact counts "
                                      "for running the fieldwork; counts only, no personal data")
