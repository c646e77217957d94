"""``cluster-eval serve``: every deployment (schedules included), served to ``PREFECT_API_URL``.

The retention sweep runs daily on ``retention.sweep_cron``; the survey deployments (top-up,
reminders on ``survey.reminder_cron``, monitor on ``survey.monitor_cron``) are in
``deployments/survey.py``. Crons are UK time.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from deployments.common import built, uk_cron
from deployments.survey import survey_deployments
from flows.retention import retention_flow
from tasks.core.errors import ConfigError
from tasks.core.runtime import run_tags
from tasks.core.settings import Settings

RETENTION_DEPLOYMENT = "retention-daily"


def require_api_url() -> str:
    """The Prefect server to serve to, or a one-line ConfigError."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "cluster-eval serve needs a Prefect server: start one (prefect server start) and "
            "set PREFECT_API_URL, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return str(url)


def retention_deployment(settings: Settings) -> RunnerDeployment:
    """The daily retention sweep (cron from settings), deleting what is due each day."""
    schedule = uk_cron("retention.sweep_cron", settings.retention.sweep_cron, '"0 2 * * *" for 02:00 every day')
    return built(retention_flow.to_deployment(
        name=RETENTION_DEPLOYMENT,
        schedules=[schedule],
        parameters={"dry_run": False},
        tags=["retention", *run_tags(settings.study.cluster)],
        description="Daily retention sweep: delete what the schedule says is due, verify, audit.",
    ))


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Every deployment this project serves: the retention sweep and the survey deployments."""
    return [retention_deployment(settings), *survey_deployments(settings)]
