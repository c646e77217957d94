"""Thin Prefect tasks over the survey modules (the names the Prefect UI shows).

Each task calls one plain function of ``tasks.survey`` (tested without Prefect) and is made
with ``stage_task``: no persisted results, no cache, the run named as the task. Tasks are
handed what they need (engine, settings, a key, a ``Fieldwork`` context); none reads a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tasks.core.db import compact_database
from tasks.core.prefect import stage_task
from tasks.core.runtime import Checkpoint
from tasks.core.settings import Settings
from tasks.survey.fieldwork import InterviewDraw, draw_interviews, send_invitations, send_reminders
from tasks.survey.monitor import emit_topup_needed, need_to_signal, record_signal
from tasks.survey.need import TopUpNeed, topup_need
from tasks.survey.outgoing import DeliveryReport, Fieldwork
from tasks.survey.responses import (
    ImportResult,
    Withdrawal,
    finish_progress,
    import_responses,
    publish_response_rates,
    start_progress,
    withdraw_household,
)
from tasks.survey.sampling import WavePlan, WaveResult, draw_wave, publish_allocation
from tasks.survey.topup import (
    TopUpDecision,
    TopUpRun,
    TopUpStart,
    decision_of,
    publish_decision_form,
    record_decision,
    start_topup,
)

# --- sampling and top-up -----------------------------------------------------------------------


@stage_task("draw-wave")
def draw_wave_task(engine: Engine, settings: Settings, contact_key: bytes | None, wave: int,
                   size: int | None, flow_run_id: str | None,
                   approved: Mapping[str, int] | None = None) -> WaveResult:
    """Draw wave N once (or return it as drawn); an approved top-up draws exactly what was approved."""
    return draw_wave(engine, settings, contact_key, wave, size, flow_run_id=flow_run_id,
                     approved=approved)


@stage_task("publish-allocation")
def publish_allocation_task(cluster: str, result: WaveResult) -> None:
    """Table artifact of a wave's frame and allocation per stratum."""
    publish_allocation(cluster, result)


@stage_task("fix-topup-wave")
def start_topup_task(engine: Engine, settings: Settings, contact_key: bytes | None, flow_run_id: str,
                     wave: int | None, size: int | None, as_of: date) -> TopUpStart:
    """Fix this run's wave before any pause (a retry reuses it) and propose it if undecided."""
    return start_topup(engine, settings, contact_key, flow_run_id, wave, size, as_of)


@stage_task("publish-decision-form")
def publish_decision_form_task(engine: Engine, settings: Settings, plan: WavePlan) -> str:
    """The decision form's facts as the wave's proposal artifact; returns its markdown."""
    return publish_decision_form(engine, settings, plan)


@stage_task("record-topup-decision")
def record_decision_task(engine: Engine, cluster: str, run: TopUpRun, answer: TopUpDecision | None,
                         flow_run_id: str | None) -> TopUpRun:
    """Record and audit approve, reject or a timeout (with the note, one line)."""
    decision, note = decision_of(answer)
    return record_decision(engine, cluster, run, decision, note, flow_run_id)


# --- fieldwork ---------------------------------------------------------------------------------


@stage_task("send-invitations")
def send_invitations_task(fw: Fieldwork, wave: int) -> DeliveryReport:
    """Invite every household of a wave not yet invited (e-mail or pack)."""
    return send_invitations(fw, wave)


@stage_task("send-reminders")
def send_reminders_task(fw: Fieldwork, as_of: date) -> DeliveryReport:
    """Send every reminder due on ``as_of`` that has not been sent yet."""
    return send_reminders(fw, as_of)


@stage_task("draw-interviews")
def draw_interviews_task(engine: Engine, settings: Settings, flow_run_id: str | None) -> InterviewDraw:
    """Draw the interview sub-sample once; later runs return the stored draw."""
    return draw_interviews(engine, settings, flow_run_id=flow_run_id)


# --- response-rate monitor ---------------------------------------------------------------------


@stage_task("check-topup-need")
def check_topup_need_task(engine: Engine, settings: Settings, as_of: date) -> TopUpNeed:
    """The top-up rule on ``as_of``: needed or not, and why (one line)."""
    return topup_need(engine, settings, as_of)


@stage_task("check-signalled-before")
def need_to_signal_task(engine: Engine, cluster: str, need: TopUpNeed) -> bool:
    """Whether a needed top-up is to be signalled now (once per latest wave)."""
    return need_to_signal(engine, cluster, need)


@stage_task("emit-low-response-event")
def emit_topup_needed_task(cluster: str, need: TopUpNeed) -> str | None:
    """Emit the event that proposes a top-up (counts only); return its id."""
    return emit_topup_needed(cluster, need)


@stage_task("record-signal")
def record_signal_task(engine: Engine, cluster: str, need: TopUpNeed, flow_run_id: str | None) -> None:
    """Remember that the top-up was signalled for this latest wave."""
    record_signal(engine, cluster, need, flow_run_id)


# --- responses and withdrawal ------------------------------------------------------------------


@stage_task("start-progress")
def start_progress_task(engine: Engine, settings: Settings) -> Any:
    """Progress artifact at the respondents before the import; returns its id."""
    return start_progress(engine, settings)


@stage_task("import-responses")
def import_responses_task(engine: Engine, settings: Settings, path: Path,
                          flow_run_id: str | None, checkpoint: Checkpoint | None = None) -> ImportResult:
    """Validate and import one survey export (a file seen before changes nothing)."""
    return import_responses(engine, settings, path, flow_run_id=flow_run_id, checkpoint=checkpoint)


@stage_task("finish-progress")
def finish_progress_task(artifact_id: Any, result: ImportResult) -> None:
    """Move the progress artifact to the respondents after the import."""
    finish_progress(artifact_id, result)


@stage_task("publish-response-rates")
def publish_response_rates_task(engine: Engine, settings: Settings) -> None:
    """Table artifact: issued, responded and rate by wave and stratum."""
    publish_response_rates(engine, settings)


@stage_task("withdraw-household")
def withdraw_household_task(engine: Engine, settings: Settings, token_sha256: str,
                            flow_run_id: str | None) -> Withdrawal:
    """Delete a household's survey data and contact details now; never contact it again."""
    return withdraw_household(engine, settings, token_sha256, flow_run_id=flow_run_id)


@stage_task("compact-database")
def compact_database_task(engine: Engine) -> dict[str, Any]:
    """Leave no trace of deleted rows in the database files (SQLite: VACUUM, truncate the WAL)."""
    return compact_database(engine)
