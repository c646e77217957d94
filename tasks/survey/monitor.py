"""The response-rate monitor: is the rate after the last reminder low, and was that signalled?

A low rate (below ``survey.low_response_threshold`` over the waves past their last reminder)
is signalled once per reminder cycle (the latest such wave): the Prefect event
``LOW_RATE_EVENT`` (counts only) triggers the ``survey-topup`` deployment, and an audit entry
remembers that this cycle was signalled.
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


def low_rate_to_signal(engine: Engine, cluster: str, check: RateCheck) -> bool:
    """Whether a low rate should be signalled: once per reminder cycle (latest ripe wave)."""
    if not check.low:
        return False
    with engine.connect() as conn:
        done = [json.loads(r["details"]) for r in rows(conn, "audit_events", {"cluster_id": cluster,
                                                                              "event": LOW_RATE_AUDIT})]
    return all(d.get("latest_wave") != max(check.waves) for d in done)


def record_low_rate_signal(engine: Engine, cluster: str, check: RateCheck, flow_run_id: str | None) -> None:
    """Remember that this cycle's low rate was signalled (counts only)."""
    with engine.begin() as conn:
        append_audit(conn, cluster, LOW_RATE_AUDIT, {"latest_wave": max(check.waves), "issued": check.issued,
                                                     "responded": check.responded}, flow_run_id)


def cluster_resource(cluster: str) -> dict[str, str]:
    """The Prefect resource that survey events concern."""
    return {"prefect.resource.id": f"cluster-eval.cluster.{cluster}",
            "prefect.resource.name": cluster}


def emit_low_rate(cluster: str, check: RateCheck) -> str | None:
    """Emit the low-response-rate event (counts only); return its id."""
    event = emit_event(event=LOW_RATE_EVENT, resource=cluster_resource(cluster),
                       payload=check.as_json())
    return str(event.id) if event is not None else None


def monitor_result(check: RateCheck, signalled: bool, event_id: str | None) -> dict[str, Any]:
    """What ``response-rate-monitor`` returns: the check, and whether it signalled now or before."""
    return {**check.as_json(), "event": LOW_RATE_EVENT if signalled else None,
            "already_signalled": check.low and not signalled, "event_id": event_id}
