"""The project's one way to make a Prefect task: no persisted results, no cache, a fixed name.

Results of this project's tasks can hold study data, so Prefect must never persist them, and
nothing is cached between runs (every run reads the database afresh). Task runs are named
exactly as the task, without Prefect's random suffix, so the UI reads like the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.cache_policies import NO_CACHE

P = ParamSpec("P")
R = TypeVar("R")


def stage_task(name: str, *, retries: int = 0, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a plain function as a named task with the project's defaults (typing kept)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return as_task(name, fn, retries=retries, **options)

    return decorate


def as_task(name: str, fn: Callable[P, R], *, retries: int = 0, **options: Any) -> Task[P, R]:
    """The task form of a plain function with the project's defaults (for pipelines built at run time)."""
    return Task(fn=fn, name=name, task_run_name=name, persist_result=False, cache_policy=NO_CACHE,
                retries=retries, **options)
