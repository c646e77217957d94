"""Deployments of the qualitative strand: register, transcripts, coding (all manual, parameters required).

Paths are paths on the machine that runs the flow (the ``serve`` host or a worker); session and
participant ids are the study's ids (e.g. ``FI-03``, ``F03``), never names.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from deployments.common import deployment
from flows.coding import coding_export_flow, coding_import_flow
from flows.participants import participants_import_flow, participants_withdraw_flow
from flows.transcripts import transcripts_approve_flow, transcripts_import_flow, transcripts_redact_flow
from tasks.core.settings import Settings


def qualitative_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Import the register, withdraw a participant, import/redact/approve transcripts, export/import coding."""
    cluster = settings.study.cluster
    tag = "qualitative"
    return [
        deployment(participants_import_flow, "import-register", cluster=cluster, tag=tag,
                   description="Import (replace) the encrypted participants register (parameter path)."),
        deployment(participants_withdraw_flow, "withdraw-participant", cluster=cluster, tag=tag,
                   description="A participant withdraws (parameter participant_id, e.g. F03): their name, "
                               "words and coded segments are removed now."),
        deployment(transcripts_import_flow, "import-transcripts", cluster=cluster, tag=tag,
                   description="Import an encrypted archive of transcripts (parameter path), "
                               "de-identified at once."),
        deployment(transcripts_redact_flow, "redact-session", cluster=cluster, tag=tag,
                   description="De-identify a session again with the current deny- and allow-lists "
                               "(parameter session_id)."),
        deployment(transcripts_approve_flow, "approve-session", cluster=cluster, tag=tag,
                   description="Approve a session's de-identified transcript (parameter session_id); audited."),
        deployment(coding_export_flow, "export-for-coding", cluster=cluster, tag=tag,
                   description="Export the approved transcripts for coding (parameter out: .qdpx, .csv "
                               "or .xlsx path)."),
        deployment(coding_import_flow, "import-coding", cluster=cluster, tag=tag,
                   description="Import the researchers' coding (parameter path: .qdpx, .csv or .xlsx); "
                               "it replaces the coded segments stored before."),
    ]
