"""The project's one way to make a Prefect task: no persisted results, no cache, a fixed name.

Results of this project's tasks can hold study data, so Prefect must never persist them, and
nothing is cached between runs (every run reads the database afresh). Task runs are named
exactly as the task, without Prefect's random suffix, so the UI reads like the pipeline.

An expected refusal (a ``UserFacingError``) raised in a task is logged as its one line, without a
traceback (``RefusalsWithoutTraceback``); the flow (``tasks.core.flowrun.project_flow``) then ends
Failed with that line as its state message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import UserFacingError

P = ParamSpec("P")
R = TypeVar("R")


def artifact_key(cluster: str, name: str) -> str:
    """An artifact key (lowercase letters, digits, dashes) for this cluster: every key carries it."""
    return re.sub(r"[^a-z0-9-]", "-", f"{cluster}-{name}".lower())


def refusal_line(exc: UserFacingError) -> str:
    """The one line a refusal is told by (the CLI prints it after ``cluster-eval: error:``)."""
    return " ".join(str(exc).split())


class RefusalsWithoutTraceback(logging.Filter):
    """Log an expected refusal raised in a task or flow run as its one line, without a traceback.

    Prefect logs a task's exception with its traceback; for a ``UserFacingError`` the traceback
    says nothing the line does not, and the Prefect UI would show it on every failed run.
    """

    def __init__(self, keep: bool = True) -> None:
        super().__init__()
        self.keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UserFacingError):
            record.msg, record.args = f"Refused: {refusal_line(exc)}", ()
            record.exc_info, record.exc_text = None, None
            return self.keep
        return True


def install_refusal_filter() -> None:
    """Attach ``RefusalsWithoutTraceback`` to Prefect's run loggers (once per process).

    Task runs keep the refusal as one line. At flow level ``project_flow`` has already logged
    the line, so the engine's second report of it (a deployment's process re-raises the Failed
    state's exception: "Engine execution exited with unexpected exception") is dropped.
    """
    for name, keep in (("prefect.task_runs", True), ("prefect.flow_runs", False)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RefusalsWithoutTraceback) for f in logger.filters):
            logger.addFilter(RefusalsWithoutTraceback(keep))


install_refusal_filter()


def stage_task(name: str, *, retries: int = 0, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a plain function as a named task with the project's defaults (typing kept)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return as_task(name, fn, retries=retries, **options)

    return decorate


def as_task(name: str, fn: Callable[P, R], *, retries: int = 0, **options: Any) -> Task[P, R]:
    """The task form of a plain function with the project's defaults (for pipelines built at run time)."""
    return Task(fn=fn, name=name, task_run_name=name, persist_result=False, cache_policy=NO_CACHE,
                retries=retries, **options)
