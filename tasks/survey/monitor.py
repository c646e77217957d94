"""The response-rate monitor: is a top-up needed (the one rule), and was that signalled?

The monitor asks the top-up rule of ``tasks.survey.need`` (respondents below the target once every
wave's fieldwork is over). When a top-up is needed it is signalled once per latest wave: the
Prefect event ``LOW_RATE_EVENT`` (counts only) triggers the ``survey-topup`` deployment, which
asks the same rule, and an audit entry remembers that this wave was signalled.

``check_response_rate`` (the rate over the waves past their last reminder, against
``survey.low_response_threshold``) is informational only: it no longer decides anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from prefect.events import emit_event
from sqlalchemy import Engine

from tasks.core.audit import append_audit
from tasks.core.db import rows
from tasks.core.settings import Settings
from tasks.survey.fieldwork import uk_date
from tasks.survey.need import TopUpNeed

LOW_RATE_EVENT = "cluster-eval.response-rate.low"
LOW_RATE_AUDIT = "survey_low_rate_signalled"


@dataclass(frozen=True)
class RateCheck:
    """Response rate of the waves whose last reminder is due (counts only)."""

    waves: list[int]
    issued: int
    responded: int
    threshold: float

    @property
    def rate(self) -> float | None:
        """Responded / issued, or None before any wave is past its last reminder."""
        return self.responded / self.issued if self.issued else None

    @property
    def low(self) -> bool:
        """Whether the rate is below the threshold."""
        return self.rate is not None and self.rate < self.threshold

    def as_json(self) -> dict[str, Any]:
        """Counts and the rate (3 decimals)."""
        return {"waves": list(self.waves), "issued": self.issued, "responded": self.responded,
                "response_rate": None if self.rate is None else round(self.rate, 3),
                "threshold": self.threshold, "low": self.low}


def check_response_rate(engine: Engine, settings: Settings, as_of: date) -> RateCheck:
    """Response rate over the waves whose last reminder was due by ``as_of``."""
    last_days = settings.survey.reminder_days[-1] if settings.survey.reminder_days else 0
    with engine.connect() as conn:
        progress = rows(conn, "survey_wave_progress", {"cluster_id": settings.study.cluster})
    ripe = [p for p in progress if p["invited_at"] is not None
            and uk_date(p["invited_at"]) + timedelta(days=last_days) <= as_of]
    return RateCheck([int(p["wave"]) for p in ripe], sum(int(p["issued"]) for p in ripe),
                     sum(int(p["responded"]) for p in ripe), settings.survey.low_response_threshold)


def need_to_signal(engine: Engine, cluster: str, need: TopUpNeed) -> bool:
    """Whether to signal a needed top-up now: once per latest wave."""
    if not need.needed:
        return False
    with engine.connect() as conn:
        done = [json.loads(r["details"]) for r in rows(conn, "audit_events", {"cluster_id": cluster,
                                                                              "event": LOW_RATE_AUDIT})]
    return all(d.get("latest_wave") != need.latest_wave for d in done)


def record_signal(engine: Engine, cluster: str, need: TopUpNeed, flow_run_id: str | None) -> None:
    """Remember that a top-up was signalled for this latest wave (counts only)."""
    with engine.begin() as conn:
        append_audit(conn, cluster, LOW_RATE_AUDIT, {"latest_wave": need.latest_wave, "issued": need.issued,
                                                     "responded": need.respondents, "target": need.target,
                                                     "size": need.size}, flow_run_id)


def cluster_resource(cluster: str) -> dict[str, str]:
    """The Prefect resource that survey events concern."""
    return {"prefect.resource.id": f"cluster-eval.cluster.{cluster}",
            "prefect.resource.name": cluster}


def emit_topup_needed(cluster: str, need: TopUpNeed) -> str | None:
    """Emit the low-response event (counts only) that proposes a top-up; return its id."""
    event = emit_event(event=LOW_RATE_EVENT, resource=cluster_resource(cluster), payload=need.as_json())
    return str(event.id) if event is not None else None


def monitor_result(need: TopUpNeed, signalled: bool, event_id: str | None) -> dict[str, Any]:
    """What ``response-rate-monitor`` returns: the rule's verdict, and whether it signalled now or before."""
    return {**need.as_json(), "event": LOW_RATE_EVENT if signalled else None,
            "already_signalled": need.needed and not signalled, "event_id": event_id}


def monitor_summary(result: dict[str, Any]) -> str:
    """One line for the run's log and artifact (counts only)."""
    if result["event"]:
        return f"{result['reason']}; event {result['event']} emitted: the survey-topup deployment proposes a top-up"
    if result["already_signalled"]:
        return f"{result['reason']}; signalled before for wave {max(result['waves'])}, not again"
    return result["reason"]
