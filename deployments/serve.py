"""``cluster-eval serve``: serve every deployment (schedules included) to ``PREFECT_API_URL``.

The retention sweep runs daily on ``retention.sweep_cron`` (UK time); the survey deployments come
from ``flows.sampling.survey_deployments(settings)`` when that module provides it.
"""

from __future__ import annotations

from typing import Any

from tasks.core.errors import ConfigError
from tasks.core.runtime import run_tags
from tasks.core.settings import Settings

RETENTION_DEPLOYMENT = "retention-daily"
SCHEDULE_TIMEZONE = "Europe/London"


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


def retention_deployment(settings: Settings) -> Any:
    """The daily retention sweep (cron from settings), deleting what is due each day."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.schedules import Cron

    from flows.retention import retention_flow

    cron = settings.retention.sweep_cron
    try:
        CronSchedule(cron=cron, timezone=SCHEDULE_TIMEZONE)
    except ValueError:
        raise ConfigError(
            f"retention.sweep_cron {cron!r} is not a valid cron expression, "
            'e.g. "0 2 * * *" for 02:00 every day (UK time)'
        ) from None
    return retention_flow.to_deployment(
        name=RETENTION_DEPLOYMENT,
        schedules=[Cron(cron, timezone=SCHEDULE_TIMEZONE)],
        parameters={"dry_run": False},
        tags=["retention", *run_tags(settings.study.cluster)],
        description="Daily retention sweep: delete what the schedule says is due, verify, audit.",
    )


def build_deployments(settings: Settings) -> list[Any]:
    """Every deployment this project serves."""
    deployments = [retention_deployment(settings)]
    try:
        from flows.sampling import survey_deployments
    except ImportError:  # the survey stage adds its deployments when it provides them
        return deployments
    return deployments + list(survey_deployments(settings))


