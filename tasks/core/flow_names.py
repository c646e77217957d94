"""The name of every flow of this project, in one place (the Prefect UI shows these).

Retention finds this project's flow runs by these names (and the cluster's run tags); a test
checks that every flow under ``flows/`` is named here and every name here has a flow.
"""

from __future__ import annotations

INGEST = "ingest"
SAMPLE_WAVE = "sample-wave"
SURVEY_TOPUP = "survey-topup"
RESPONSE_RATE_MONITOR = "response-rate-monitor"
SEND_INVITATIONS = "send-invitations"
SEND_REMINDERS = "send-reminders"
DRAW_INTERVIEWS = "draw-interviews"
IMPORT_RESPONSES = "import-responses"
WITHDRAW = "withdraw"
ANALYSE = "analyse"
RETENTION_SWEEP = "retention-sweep"
STATUS = "status"
AUDIT_VERIFY = "audit-verify"
DEMO = "demo"
PARTICIPANTS_IMPORT = "participants-import"
PARTICIPANTS_WITHDRAW = "participants-withdraw"
TRANSCRIPTS_IMPORT = "transcripts-import"
TRANSCRIPTS_REDACT = "transcripts-redact"
TRANSCRIPTS_APPROVE = "transcripts-approve"
CODING_EXPORT = "coding-export"
CODING_IMPORT = "coding-import"
INGEST_INBOX = "ingest-inbox"
EVALUATION = "evaluation"

FLOW_NAMES: tuple[str, ...] = tuple(sorted((
    INGEST, SAMPLE_WAVE, SURVEY_TOPUP, RESPONSE_RATE_MONITOR, SEND_INVITATIONS, SEND_REMINDERS,
    DRAW_INTERVIEWS, IMPORT_RESPONSES, WITHDRAW, ANALYSE, RETENTION_SWEEP, STATUS, AUDIT_VERIFY, DEMO,
    PARTICIPANTS_IMPORT, PARTICIPANTS_WITHDRAW, TRANSCRIPTS_IMPORT, TRANSCRIPTS_REDACT,
    TRANSCRIPTS_APPROVE, CODING_EXPORT, CODING_IMPORT, INGEST_INBOX, EVALUATION,
)))
