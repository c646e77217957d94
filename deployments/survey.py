"""Survey deployments: draw and invite a wave, reminders, the top-up, the monitor, responses, interviews.

The top-up has no schedule: the research team runs it from the Prefect UI ("Run", parameters
``wave`` and ``size``) or it is proposed by the ``cluster-eval.response-rate.low`` event of the
monitor; it pauses for approval before anything is drawn or sent. Reminders run on
``survey.reminder_cron`` and the monitor on ``survey.monitor_cron`` (UK time).
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from deployments.common import CronSetting, deployment
from flows.fieldwork import interviews_flow, invite_flow, remind_flow
from flows.responses import import_flow
from flows.sampling import monitor_flow, sample_flow, topup_flow
from tasks.core.settings import Settings
from tasks.survey.monitor import LOW_RATE_EVENT, cluster_resource

DRAW_WAVE = "draw-wave"
INVITE_WAVE = "invite-wave"
REMINDERS = "reminders-daily"
TOPUP = "top-up-wave"
MONITOR = "monitor-daily"
IMPORT_RESPONSES = "import-survey-export"
DRAW_INTERVIEWS = "draw-interview-sample"


def low_rate_trigger(cluster: str) -> DeploymentEventTrigger:
    """Run the top-up (next wave, default size) when this cluster's response rate is low."""
    resource_id = cluster_resource(cluster)["prefect.resource.id"]
    return DeploymentEventTrigger(
        name=f"{cluster}: propose a top-up wave when the response rate is low",
        expect={LOW_RATE_EVENT}, match={"prefect.resource.id": resource_id},
        parameters={"wave": None, "size": None})


def survey_deployments(settings: Settings) -> list[RunnerDeployment]:
    """The survey's deployments, in the order of fieldwork."""
    cluster = settings.study.cluster
    survey = settings.survey
    reminders = CronSetting("survey.reminder_cron", survey.reminder_cron, '"0 9 * * *" for 09:00 every day')
    monitor = CronSetting("survey.monitor_cron", survey.monitor_cron, '"0 10 * * *" for 10:00 every day')
    return [
        deployment(sample_flow, DRAW_WAVE, cluster=cluster, tag="survey", parameters={"wave": 1},
                   description="Draw survey wave N (default 1, the stratified sample; size default "
                               "survey.sample_size). A wave drawn before is returned unchanged. Later "
                               "waves: use survey-topup/top-up-wave, which asks for approval first."),
        deployment(invite_flow, INVITE_WAVE, cluster=cluster, tag="survey", parameters={"wave": 1},
                   description="Invite every household of wave N not invited yet: e-mail now, or the "
                               "encrypted fieldwork pack (post, phone). Never invites a household twice."),
        deployment(remind_flow, REMINDERS, cluster=cluster, tag="survey", cron=reminders,
                   description="Send every survey reminder that is due and not sent yet (safe to run twice)."),
        deployment(topup_flow, TOPUP, cluster=cluster, tag="survey", triggers=[low_rate_trigger(cluster)],
                   description="Propose a top-up survey wave (wave, size: default the next wave and the "
                               "size the target needs), pause for an approve/reject decision "
                               "(approval_timeout_hours), then draw it and send its invitations. Also "
                               "started by the response-rate monitor's cluster-eval.response-rate.low event."),
        deployment(monitor_flow, MONITOR, cluster=cluster, tag="survey", cron=monitor,
                   description="Check respondents against the target; when a top-up is needed, emit "
                               "cluster-eval.response-rate.low, which proposes survey-topup/top-up-wave."),
        deployment(import_flow, IMPORT_RESPONSES, cluster=cluster, tag="survey",
                   description="Validate and import a survey response export (CSV path on the server); "
                               "importing the same file again changes nothing."),
        deployment(interviews_flow, DRAW_INTERVIEWS, cluster=cluster, tag="survey",
                   description="Draw the family interview sub-sample among opted-in respondents, once "
                               "(tokens stay in the database, never in Prefect)."),
    ]
