"""Deployments of the whole evaluation and its housekeeping: analyse, retention, status, audit.

``analyse/analyse-and-report`` writes into ``CLUSTER_EVAL_HOME/outputs/analysis`` by default (the
``out`` parameter's default is set here, resolved where the deployments are built), so a Quick run
needs no typing. ``evaluation/whole-evaluation`` has no schedule of its own: its stages have theirs.
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from deployments.common import CronSetting, deployment
from flows.analysis import analyse_flow
from flows.audit import audit_verify_flow
from flows.evaluation import evaluation_flow
from flows.retention import retention_flow
from flows.status import status_flow
from tasks.core.home import Home
from tasks.core.settings import Settings

ANALYSE = "analyse-and-report"
RETENTION = "retention-daily"
EVALUATION = "whole-evaluation"
STATUS = "status-report"
AUDIT = "verify-audit-log"


def analysis_folder(home: Path) -> Path:
    """Where the analysis deployment and the whole evaluation write: ``HOME/outputs/analysis``."""
    return Home(home.resolve()).outputs / "analysis"


def operations_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Analyse, the daily retention sweep, the whole evaluation, status and audit verification."""
    cluster = settings.study.cluster
    sweep = CronSetting("retention.sweep_cron", settings.retention.sweep_cron, '"0 2 * * *" for 02:00 every day')
    return [
        deployment(analyse_flow, ANALYSE, cluster=cluster, tag="analysis",
                   parameters={"out": str(analysis_folder(settings.home))},
                   description="Write the analysis (restricted and publication tables, charts, workbook, "
                               "report) into out, default CLUSTER_EVAL_HOME/outputs/analysis."),
        deployment(retention_flow, RETENTION, cluster=cluster, tag="retention", cron=sweep,
                   parameters={"dry_run": False},
                   description="Daily retention sweep: delete what the schedule says is due, verify, audit."),
        deployment(evaluation_flow, EVALUATION, cluster=cluster, tag="evaluation",
                   description="The whole evaluation in one run: inbox pick-up, reminders, response-rate "
                               "monitor, analyse into CLUSTER_EVAL_HOME/outputs/analysis, retention sweep. "
                               "Not scheduled: each stage has its own schedule."),
        deployment(status_flow, STATUS, cluster=cluster, tag="status",
                   description="Report extracts ingested, waves and response rates, and the next "
                               "retention deletions (counts only)."),
        deployment(audit_verify_flow, AUDIT, cluster=cluster, tag="audit",
                   description="Recompute every audit log entry's hash and back-link; fail naming the "
                               "first broken entry."),
    ]
