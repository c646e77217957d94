"""What every deployment shares: module entrypoints, cluster tags, cron schedules in UK time.

A deployment is built from its flow, a name unique in the project (the UI lists
``<flow>/<deployment>``), a description saying what a run does, parameter defaults that make a
"Quick run" do the usual thing, and (for scheduled ones) a cron from settings in Europe/London.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Schedule

from tasks.core.errors import ConfigError
from tasks.core.runtime import run_tags

SCHEDULE_TIMEZONE = "Europe/London"
MODULE = EntrypointType.MODULE_PATH  # served from the installed package, whatever the cwd


@dataclass(frozen=True)
class CronSetting:
    """A schedule read from one setting: its key, value and an example of a valid value."""

    key: str
    cron: str
    example: str

    def schedule(self) -> Schedule:
        """The cron schedule in UK time, or a one-line ConfigError naming the key."""
        return uk_cron(self.key, self.cron, self.example)

    def describe(self) -> str:
        """The sentence every scheduled deployment's description ends with."""
        return f"Schedule: {self.cron} UK time (Europe/London), setting {self.key}."


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


def deployment(flow: Flow[..., Any], name: str, *, cluster: str, tag: str, description: str,
               parameters: Mapping[str, Any] | None = None, cron: CronSetting | None = None,
               triggers: Sequence[DeploymentEventTrigger] = ()) -> RunnerDeployment:
    """One deployment of ``flow``: module entrypoint, the stage's tag and the cluster's run tags.

    A scheduled deployment's description ends with its cron and "UK time (Europe/London)".
    """
    schedules = [cron.schedule()] if cron else None
    text = f"{description} {cron.describe()}" if cron else description
    return built(flow.to_deployment(
        name=name, description=text, parameters=dict(parameters or {}), schedules=schedules,
        triggers=list(triggers) or None, tags=[tag, *run_tags(cluster)], entrypoint_type=MODULE))
