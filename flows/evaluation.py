"""The whole evaluation in one run: each stage a subflow, in order, every one safe to run again.

1. inbox pick-up (new extracts in ``CLUSTER_EVAL_HOME/inbox``),
2. reminders due,
3. the response-rate monitor (proposes a top-up when one is needed),
4. analyse into ``CLUSTER_EVAL_HOME/outputs/analysis``,
5. the retention sweep.

A stage with nothing to do ends Completed and the evaluation goes on; a stage that cannot have
anything to do yet is skipped with a line saying why (reminders and the monitor before the first
survey wave is drawn, analyse before the first extract is ingested: those stages would refuse).
A stage that fails (bad input, a mail server down) does not stop the stages that do not depend
on it; the run then ends Failed naming the failed stage and its line. Dependencies: the monitor is skipped when the
reminders failed (it would judge waves whose reminders did not go out and could propose a
top-up too early); analyse is skipped when the inbox pick-up failed (it would describe the old
extract while a new one waits to be fixed). The retention sweep always runs: deletion
deadlines do not wait for the other stages. Retry re-runs every stage; each is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from prefect.states import State
from sqlalchemy import Engine

from flows.analysis import analyse_flow
from flows.fieldwork import remind_flow
from flows.inbox import ingest_inbox_flow
from flows.retention import retention_flow
from flows.sampling import monitor_flow
from tasks.core import flow_names
from tasks.core.db import rows
from tasks.core.errors import UserFacingError
from tasks.core.flowrun import project_flow
from tasks.core.prefect import as_task, refusal_line
from tasks.core.runtime import current_runtime
from tasks.survey.fieldwork import uk_today

INBOX, REMINDERS, MONITOR, ANALYSE, RETENTION = "inbox pick-up", "reminders", "monitor", "analyse", "retention"

#: The stages in order, each with the stages whose failure skips it.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (INBOX, ()),
    (REMINDERS, ()),
    (MONITOR, (REMINDERS,)),
    (ANALYSE, (INBOX,)),
    (RETENTION, ()),
)

Status = Literal["completed", "failed", "skipped"]


@dataclass(frozen=True)
class StageOutcome:
    """How one stage ended and its one line (the subflow's state message: counts only)."""

    stage: str
    status: Status
    line: str

    def as_json(self) -> dict[str, str]:
        """The outcome as the flow's result holds it."""
        return {"stage": self.stage, "status": self.status, "line": self.line}

    def describe(self) -> str:
        """``stage: line`` for a completed stage, ``stage FAILED: line`` or ``stage skipped (...)``."""
        if self.status == "completed":
            return f"{self.stage}: {self.line}"
        if self.status == "failed":
            return f"{self.stage} FAILED: {self.line}"
        return f"{self.stage} skipped ({self.line})"


class EvaluationFailed(UserFacingError):
    """One or more stages failed; the line names the first and its reason, then every stage."""

    def __init__(self, outcomes: Sequence[StageOutcome]) -> None:
        first = next(o for o in outcomes if o.status == "failed")
        super().__init__(f"evaluation failed at {first.stage}: {first.line} | {evaluation_line(outcomes)}")
        self.outcomes = tuple(outcomes)


def stage_outcome(stage: str, state: State[Any]) -> StageOutcome:
    """The outcome of a stage's subflow run from its final state (an unexpected error's text is not repeated)."""
    if state.is_completed():
        return StageOutcome(stage, "completed", " ".join((state.message or "completed").split()))
    error = state.result(raise_on_failure=False)
    if isinstance(error, UserFacingError):
        return StageOutcome(stage, "failed", refusal_line(error))
    ended = (state.name or state.type.value).lower()
    return StageOutcome(stage, "failed", f"{ended} unexpectedly: see the {stage} flow run")


def run_stages(calls: Mapping[str, Callable[[], State[Any]]],
               not_yet: Mapping[str, Callable[[], str | None]] | None = None,
               stages: Sequence[tuple[str, tuple[str, ...]]] = STAGES) -> list[StageOutcome]:
    """Run each stage in order; skip one whose prerequisite failed, or that cannot have anything to do yet.

    ``not_yet[stage]()`` is asked just before the stage runs: a line (why there is nothing to do
    yet) skips it, ``None`` runs it.
    """
    outcomes: dict[str, StageOutcome] = {}
    for stage, needs in stages:
        blocked = [n for n in needs if outcomes[n].status == "failed"]
        reason = f"{', '.join(blocked)} failed" if blocked else (not_yet or {}).get(stage, lambda: None)()
        if reason:
            outcomes[stage] = StageOutcome(stage, "skipped", reason)
            continue
        outcomes[stage] = stage_outcome(stage, calls[stage]())
    return list(outcomes.values())


@dataclass(frozen=True)
class Started:
    """What has happened yet in this cluster: extracts ingested, survey waves drawn."""

    extracts: int
    waves: int


def what_has_started(engine: Engine, cluster: str) -> Started:
    """Count the extracts ingested and the survey waves drawn (counts only)."""
    with engine.connect() as conn:
        extracts = sum(int(r["extracts"]) for r in rows(conn, "retention_status_extracts", {"cluster_id": cluster})
                       if r["status"] == "ingested")
        waves = len(rows(conn, "survey_waves", {"cluster_id": cluster}))
    return Started(extracts=extracts, waves=waves)


check_what_has_started = as_task("check-what-has-started", what_has_started)

NO_WAVE = "no survey wave drawn yet: nothing to do"
NO_EXTRACT = "no extract ingested yet: nothing to do"


def not_yet(started: Callable[[], Started]) -> dict[str, Callable[[], str | None]]:
    """The stages that refuse before the survey or the first extract, and the line that skips them."""
    return {
        REMINDERS: lambda: NO_WAVE if started().waves == 0 else None,
        MONITOR: lambda: NO_WAVE if started().waves == 0 else None,
        ANALYSE: lambda: NO_EXTRACT if started().extracts == 0 else None,
    }


def evaluation_line(outcomes: Sequence[StageOutcome]) -> str:
    """One line: each stage and its counts, in order."""
    return "; ".join(o.describe() for o in outcomes)


def _summary(result: Mapping[str, Any]) -> str:
    return evaluation_line([StageOutcome(s["stage"], s["status"], s["line"]) for s in result["stages"]])


def _run_name(params: Mapping[str, Any]) -> str:
    return f"evaluation {params.get('as_of') or uk_today()}"


@project_flow(flow_names.EVALUATION, run_name=_run_name, summary=_summary)
def evaluation_flow(as_of: date | None = None) -> dict[str, Any]:
    """Run the whole evaluation: inbox pick-up, reminders, monitor, analyse, retention sweep.

    Args:
        as_of: the day reminders, the monitor and the retention sweep act for (default: today).
            The analysis is written to CLUSTER_EVAL_HOME/outputs/analysis.
    """
    rt = current_runtime()
    out = str((rt.home.outputs / "analysis").resolve())
    checked: list[Started] = []  # asked once, after the inbox pick-up

    def started() -> Started:
        if not checked:
            checked.append(check_what_has_started(rt.engine, rt.cluster))
        return checked[0]

    outcomes = run_stages({
        INBOX: lambda: ingest_inbox_flow(return_state=True),
        REMINDERS: lambda: remind_flow(as_of=as_of, return_state=True),
        MONITOR: lambda: monitor_flow(as_of=as_of, return_state=True),
        ANALYSE: lambda: analyse_flow(out=out, return_state=True),
        RETENTION: lambda: retention_flow(as_of=as_of, dry_run=False, return_state=True),
    }, not_yet(started))
    if any(o.status == "failed" for o in outcomes):
        raise EvaluationFailed(outcomes)
    return {"as_of": (as_of or uk_today()).isoformat(), "stages": [o.as_json() for o in outcomes]}
