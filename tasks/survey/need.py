"""The one rule for "a top-up wave is needed", shared by the monitor, the automation and the top-up.

**Top-up rule**: a top-up is needed when at least one wave has been drawn, every drawn wave's
fieldwork is over (each of its households that may be contacted has been invited, and its last
reminder, ``survey.reminder_days[-1]`` days after its last invitation, is due by ``as_of``), and
the respondents across all waves are below ``survey.target_respondents`` (sample size x expected
response rate). The size it would draw is ``topup_size(target, respondents, expected rate)``,
what ``plan_topup_wave`` proposes before capping it at the never-sampled households left.
Nothing is needed after ``survey.fieldwork_end``.

``response-rate-monitor`` emits ``cluster-eval.response-rate.low`` only when this says "needed";
the ``survey-topup`` deployment it triggers runs with default parameters and asks this same rule,
so the two never disagree. ``survey.low_response_threshold`` is no longer part of the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine

from tasks.core.db import rows
from tasks.core.settings import Settings
from tasks.survey.allocation import topup_size
from tasks.survey.fieldwork import uk_date


@dataclass(frozen=True)
class WaveFieldwork:
    """One drawn wave as the rule sees it (counts and days only)."""

    wave: int
    issued: int
    responded: int
    uninvited: int
    invited_on: date | None

    def over_on(self, last_reminder_days: int) -> date | None:
        """The day its fieldwork is over (its last reminder is due); None before any invitation."""
        return None if self.invited_on is None else self.invited_on + timedelta(days=last_reminder_days)


@dataclass(frozen=True)
class TopUpNeed:
    """Whether a top-up wave is needed on ``as_of``, why (one line), and the figures behind it."""

    needed: bool
    reason: str
    as_of: date
    respondents: int
    target: int
    size: int
    issued: int
    waves: tuple[int, ...]
    in_fieldwork: tuple[int, ...]

    @property
    def latest_wave(self) -> int | None:
        """The last drawn wave (the monitor signals once per latest wave)."""
        return max(self.waves, default=None)

    def as_json(self) -> dict[str, Any]:
        """Counts, the one-line reason and the day judged (no tokens, no names)."""
        return {"needed": self.needed, "reason": self.reason, "as_of": self.as_of.isoformat(),
                "respondents": self.respondents, "target": self.target, "size": self.size,
                "issued": self.issued,
                "response_rate": round(self.respondents / self.issued, 3) if self.issued else None,
                "waves": list(self.waves), "in_fieldwork": list(self.in_fieldwork)}


def load_wave_fieldwork(engine: Engine, cluster: str) -> list[WaveFieldwork]:
    """Every drawn wave with its issued, responded and uninvited households, and its last invitation day."""
    with engine.connect() as conn:
        found = rows(conn, "survey_topup_fieldwork", {"cluster_id": cluster})
    return [WaveFieldwork(int(r["wave"]), int(r["issued"]), int(r["responded"]), int(r["uninvited"]),
                          None if r["invited_at"] is None else uk_date(r["invited_at"]))
            for r in found]


def judge_topup_need(waves: list[WaveFieldwork], settings: Settings, as_of: date) -> TopUpNeed:
    """The top-up rule over the drawn waves (pure: see the module docstring)."""
    survey = settings.survey
    last_days = survey.reminder_days[-1] if survey.reminder_days else 0
    respondents = sum(w.responded for w in waves)
    target = survey.target_respondents
    size = topup_size(target, respondents, survey.expected_response_rate)
    running = tuple(w.wave for w in waves if w.uninvited or (
        (over := w.over_on(last_days)) is not None and over > as_of))

    def judged(needed: bool, reason: str) -> TopUpNeed:
        return TopUpNeed(needed, reason, as_of, respondents, target, size if needed else 0,
                         sum(w.issued for w in waves), tuple(w.wave for w in waves), running)

    if not waves:
        return judged(False, "no survey wave has been drawn yet: a top-up follows wave 1")
    if respondents >= target:
        return judged(False, f"no top-up is needed: {respondents} respondents already reach the "
                             f"target of {target}")
    end = survey.fieldwork_end
    if end is not None and as_of > end:
        return judged(False, f"no top-up is proposed: fieldwork ended on {end} (survey.fieldwork_end)")
    for w in waves:
        if w.uninvited:
            return judged(False, f"no top-up yet: wave {w.wave} has {w.uninvited} household(s) not "
                                 "invited yet; a top-up is judged once every wave is invited and past "
                                 "its last reminder")
    for w in waves:
        over = w.over_on(last_days)
        if over is not None and over > as_of:
            return judged(False, f"no top-up yet: wave {w.wave} is in fieldwork until {over} (its last "
                                 f"reminder); {respondents} respondents of the target of {target} so far")
    return judged(True, f"a top-up is needed: {respondents} respondents of the target of {target} "
                        f"after every wave's last reminder; {size} households to draw at the expected "
                        f"response rate of {survey.expected_response_rate:g}")


def topup_need(engine: Engine, settings: Settings, as_of: date) -> TopUpNeed:
    """Whether a top-up wave is needed on ``as_of`` (the one rule; see the module docstring)."""
    return judge_topup_need(load_wave_fieldwork(engine, settings.study.cluster), settings, as_of)
