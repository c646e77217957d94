"""Ingest deployments: one extract by path, and the scheduled pick-up of new extracts in HOME/inbox."""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from deployments.common import CronSetting, deployment
from flows.inbox import ingest_inbox_flow
from flows.ingest import ingest_flow
from tasks.core.settings import Settings

INGEST_FILE = "ingest-file"
INBOX_PICK_UP = "inbox-pick-up"


def ingest_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Ingest a named extract (manual run); pick up new extracts from the inbox (``deployments.inbox_cron``)."""
    cluster = settings.study.cluster
    inbox = CronSetting("deployments.inbox_cron", settings.deployments.inbox_cron,
                        '"*/15 * * * *" for every 15 minutes')
    return [
        deployment(ingest_flow, INGEST_FILE, cluster=cluster, tag="ingest",
                   description="Ingest one encrypted extract (parameter file: its path on the server). "
                               "A rejected extract ends Failed with the reason; the last good data-quality "
                               "report stays."),
        deployment(ingest_inbox_flow, INBOX_PICK_UP, cluster=cluster, tag="ingest", cron=inbox,
                   description="Ingest every new extract that Egress downloaded into CLUSTER_EVAL_HOME/inbox "
                               "(each file once, even with several workers)."),
    ]
