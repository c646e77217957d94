"""Survey deployments: the manual top-up wave, daily reminders and the daily response-rate monitor.

The top-up has no schedule: the research team runs it from the Prefect UI ("Run", parameters
``wave`` and ``size``) or it is proposed by the ``cluster-eval.response-rate.low`` event of the
monitor; it pauses for approval before anything is drawn or sent. Reminders run on
``survey.reminder_cron`` and the monitor on ``survey.monitor_cron`` (UK time).
"""

from __future__ import annotations

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from deployments.common import built, uk_cron
from flows.fieldwork import remind_flow
from flows.sampling import monitor_flow, topup_flow
from tasks.core.runtime import run_tags
from tasks.core.settings import Settings
from tasks.survey.monitor import LOW_RATE_EVENT, cluster_resource

MODULE = EntrypointType.MODULE_PATH  # served from the installed package, whatever the cwd


def low_rate_trigger(cluster: str) -> DeploymentEventTrigger:
    """Run the top-up (next wave, default size) when this cluster's response rate is low."""
    resource_id = cluster_resource(cluster)["prefect.resource.id"]
    return DeploymentEventTrigger(
        name=f"{cluster}: propose a top-up wave when the response rate is low",
        expect={LOW_RATE_EVENT}, match={"prefect.resource.id": resource_id},
        parameters={"wave": None, "size": None})


def survey_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Deployments to serve: manual top-up (also proposed on a low-rate event), daily reminders and monitor."""
    cluster = settings.study.cluster
    survey = settings.survey
    tags = ["survey", *run_tags(cluster)]
    reminders = uk_cron("survey.reminder_cron", survey.reminder_cron, '"0 9 * * *" for 09:00 every day')
    monitor = uk_cron("survey.monitor_cron", survey.monitor_cron, '"0 10 * * *" for 10:00 every day')
    return [
        built(topup_flow.to_deployment(
            name="top-up", tags=tags, triggers=[low_rate_trigger(cluster)], entrypoint_type=MODULE,
            description="Propose a top-up survey wave (parameters wave, size), pause for approval, "
                        "then draw it and send its invitations.")),
        built(remind_flow.to_deployment(
            name="daily", tags=tags, entrypoint_type=MODULE, schedules=[reminders],
            description="Send every survey reminder that is due (idempotent).")),
        built(monitor_flow.to_deployment(
            name="daily", tags=tags, entrypoint_type=MODULE, schedules=[monitor],
            description="Emit cluster-eval.response-rate.low when the response rate is low.")),
    ]
