"""What every served deployment shares: cron schedules from settings in UK time, synchronous building."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Schedule

from tasks.core.errors import ConfigError

SCHEDULE_TIMEZONE = "Europe/London"


def uk_cron(key: str, cron: str, example: str) -> Schedule:
    """The cron schedule of setting ``key`` in UK time, or a one-line ConfigError naming the key.

    ``example`` shows a valid value and what it means, e.g. ``"0 2 * * *" for 02:00 every day``.
    """
    try:
        CronSchedule(cron=cron, timezone=SCHEDULE_TIMEZONE)
    except ValueError:
        raise ConfigError(f"{key} {cron!r} is not a valid cron expression, e.g. {example} (UK time)") from None
    return Cron(cron, timezone=SCHEDULE_TIMEZONE)


def built(deployment: RunnerDeployment | Coroutine[Any, Any, RunnerDeployment]) -> RunnerDeployment:
    """The deployment of a synchronous ``Flow.to_deployment`` call (its typing allows the async form too)."""
    if not isinstance(deployment, RunnerDeployment):
        raise TypeError("deployments are built synchronously, outside an event loop")
    return deployment
