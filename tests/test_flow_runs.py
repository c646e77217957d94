"""Every run tells the operator the truth (issue 12, "States", "Runs explain themselves").

One small study for the module (in-process CLI, Prefect test harness): a synthetic extract, wave 1,
invitations (first with the mail server down, then through a local aiosmtpd), reminders, responses,
the interview draw, the qualitative strand (register, transcripts, redaction, approval, coding round
trip), withdrawals, the analysis, status, audit verification and a retention dry run; bad files for
the imports. For each command's flow run, through the Prefect client: the run's name, its final
state and message (the summary, the CLI's error line or the "nothing to do" line), one log line
equal to that message, no "Traceback" in its logs or its task runs' logs, and its
``pilot-<flow>-run`` markdown artifact holding the line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pytest
from aiosmtpd.controller import Controller
from conftest import free_port
from qualitative_support import (
    CODEBOOK,
    MARKER_DENY,
    PASS,
    CliResult,
    QualStudy,
    aes_members,
    coded_once,
    configure_qualitative,
    deny_csv,
    flush_prefect_logs,
    marker_register,
    marker_transcripts,
    new_study,
    plain_zip,
    rows_csv,
)
from test_fieldwork import Inbox

pytestmark = pytest.mark.e2e

CLUSTER = "pilot"
SAMPLE = 12
ERROR = "cluster-eval: error: "


@dataclass(frozen=True)
class Step:
    """One command, what it printed and the one flow run it made."""

    flow: str
    cli: CliResult
    run: Any  # prefect FlowRun
    logs: list[Any]  # of the run and its task runs

    @property
    def error_line(self) -> str:
        [line] = self.cli.err.splitlines()
        assert line.startswith(ERROR)
        return line[len(ERROR):]


def _run_ids(flow: str) -> set[UUID]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])))
    return {r.id for r in runs}


def _step(study: QualStudy, flow: str, *args: str | Path, expect: int = 0) -> Step:
    """Run one command; return it with the one new run of ``flow`` and that run's logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    before = _run_ids(flow)
    result = study.cli(*args, expect=expect)
    [run_id] = _run_ids(flow) - before
    flush_prefect_logs()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return Step(flow, result, run, logs)


@pytest.fixture(scope="module")
def smtp_port() -> Iterator[int]:
    """A local SMTP sink for the module (aiosmtpd on a free loopback port)."""
    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def steps(prefect_harness: None, smtp_port: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Step]:
    from tasks.demo.render import aes_zip, render_members
    from tasks.demo.survey_export import generate_survey_export, survey_export_csv
    from tasks.demo.synthetic import generate_tables

    study = new_study(tmp_path_factory.mktemp("flow-runs"))
    configure_qualitative(study, rows_csv(CODEBOOK), deny_csv(MARKER_DENY))
    study.env |= {"CLUSTER_EVAL_SMTP__HOST": "127.0.0.1", "CLUSTER_EVAL_SMTP__RETRIES": "0",
                  "CLUSTER_EVAL_SMTP__TIMEOUT_SECONDS": "5"}
    inbox = study.inbox
    done: dict[str, Step] = {}

    extract = inbox / "extract.zip"
    extract.write_bytes(aes_zip(render_members(generate_tables(24, seed=23)), PASS))
    study.cli("ingest", extract)
    drawn = study.cli("sample", "--wave", "1", "--size", str(SAMPLE), "--json").json()
    tokens = sorted(h["token"] for h in drawn["households"])

    study.env["CLUSTER_EVAL_SMTP__PORT"] = str(free_port())  # nothing listens there
    done["invite unreachable"] = _step(study, "send-invitations", "invite", "--wave", "1", "--json", expect=1)
    study.env["CLUSTER_EVAL_SMTP__PORT"] = str(smtp_port)
    done["invite"] = _step(study, "send-invitations", "invite", "--wave", "1", "--json")
    done["invite again"] = _step(study, "send-invitations", "invite", "--wave", "1", "--json")
    done["remind"] = _step(study, "send-reminders", "remind", "--as-of", "2026-12-02", "--json")

    export = generate_survey_export(tokens, seed=23, response_rate=0.9)
    export = export.with_columns(pl.lit("Y").alias("q10_interview_opt_in"))
    responses = inbox / "SIMULATED-responses.csv"
    responses.write_bytes(survey_export_csv(export))
    done["responses bad"] = _step(study, "import-responses", "responses", "import", _write(inbox / "empty.csv", b""),
                                  expect=1)
    done["responses"] = _step(study, "import-responses", "responses", "import", responses, "--json")
    done["responses again"] = _step(study, "import-responses", "responses", "import", responses, "--json")
    done["interviews"] = _step(study, "draw-interviews", "interviews", "--json")

    register = rows_csv(marker_register())
    done["participants bad"] = _step(study, "participants-import", "participants", "import",
                                     _write(inbox / "register-plain.zip", plain_zip({"participants.csv": register})),
                                     expect=1)
    done["participants"] = _step(study, "participants-import", "participants", "import",
                                 _write(inbox / "register.zip", aes_members({"participants.csv": register})), "--json")
    transcripts = {k: v for k, v in marker_transcripts().items() if not k.startswith("FI-02")}
    done["transcripts bad"] = _step(study, "transcripts-import", "transcripts", "import",
                                    _write(inbox / "transcripts-plain.zip", plain_zip(transcripts)), expect=1)
    done["transcripts"] = _step(study, "transcripts-import", "transcripts", "import",
                                _write(inbox / "transcripts.zip", aes_members(transcripts)), "--json")
    done["redact"] = _step(study, "transcripts-redact", "transcripts", "redact", "FI-01", "--json")
    done["approve"] = _step(study, "transcripts-approve", "transcripts", "approve", "FI-01", "--json")
    done["approve again"] = _step(study, "transcripts-approve", "transcripts", "approve", "FI-01", "--json")
    study.cli("transcripts", "approve", "FG-1")
    project = study.root / "project.qdpx"
    done["coding export"] = _step(study, "coding-export", "coding", "export", "--out", project, "--json")
    done["coding bad"] = _step(study, "coding-import", "coding", "import",
                               _write(inbox / "damaged.qdpx", b"not a zip file"), expect=1)
    done["coding"] = _step(study, "coding-import", "coding", "import",
                           _write(inbox / "coded.qdpx", coded_once(project.read_bytes())), "--json")
    done["participant withdraw"] = _step(study, "participants-withdraw", "participants", "withdraw", "F03", "--json")
    done["withdraw"] = _step(study, "withdraw", "withdraw", tokens[0])
    done["analyse"] = _step(study, "analyse", "analyse", "--out", study.root / "analysis")
    done["status"] = _step(study, "status", "status", "--json")
    done["audit"] = _step(study, "audit-verify", "audit", "verify")
    done["retention"] = _step(study, "retention-sweep", "retention", "--dry-run", "--as-of", "2026-12-02", "--json")
    return done


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _assert_run(step: Step, name: str, state: str, message: str) -> None:
    """The run's name, final state and message; one log line equal to it; no traceback; its artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    run = step.run
    assert (run.name, run.state.type.value, run.state.message) == (name, state, message)
    level = 20 if state == "COMPLETED" else 40
    assert [log.message for log in step.logs if log.level == level and log.message == message] == [message]
    assert not [log.message for log in step.logs if "Traceback" in log.message]
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"{CLUSTER}-{step.flow}-run"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert artifact.type == "markdown" and message in str(artifact.data)


# --------------------------------------------------------------------------- fieldwork


def test_invite_with_the_mail_server_down_fails_with_the_cli_line(steps: dict[str, Step]) -> None:
    step = steps["invite unreachable"]
    result = step.cli.json()
    assert result["not_contacted"] and step.error_line.startswith(
        f"{len(result['not_contacted'])} household(s) were not contacted: the mail server 127.0.0.1:")
    _assert_run(step, "invite wave 1", "FAILED", step.error_line)


def test_invite_summary_counts_only(steps: dict[str, Step]) -> None:
    step = steps["invite"]
    first, sent = steps["invite unreachable"].cli.json(), step.cli.json()["sent"]["invitation"]
    assert sent == {"email": len(first["not_contacted"]), "post": 0, "phone": 0}
    _assert_run(step, "invite wave 1", "COMPLETED",
                f"wave 1: invitation: {sent['email']} sent ({sent['email']} e-mail, 0 post, 0 phone); 0 bounced, "
                "0 unreachable, 0 withheld, 0 superseded, 0 skipped; 0 fieldwork pack(s) written")
    assert not any(token in log.message for log in step.logs for token in first["not_contacted"])


def test_invite_again_has_nothing_to_do(steps: dict[str, Step]) -> None:
    step = steps["invite again"]
    assert step.cli.json()["sent"] == {}
    _assert_run(step, "invite wave 1", "COMPLETED", "wave 1: every household was invited before; nothing to do")


def test_reminders_with_nothing_due_end_completed(steps: dict[str, Step]) -> None:
    step = steps["remind"]
    assert step.cli.json()["sent"] == {}
    _assert_run(step, "reminders 2026-12-02", "COMPLETED",
                "no reminder due by 2026-12-02 that was not sent before; nothing to do")


def test_interview_draw_summary_has_no_tokens(steps: dict[str, Step]) -> None:
    step = steps["interviews"]
    result = step.cli.json()
    assert result["drawn"] >= 1 and result["created"]
    _assert_run(step, "interview draw", "COMPLETED",
                f"{result['drawn']} of {result['eligible']} opted-in respondents drawn for interview")
    assert not any(token in log.message for log in step.logs for token in result["tokens"])


# --------------------------------------------------------------------------- responses and withdrawal


def test_responses_import(steps: dict[str, Step]) -> None:
    step = steps["responses"]
    result = step.cli.json()
    rate = result["response_rate"]
    assert (result["rows"], result["accepted"], rate["issued"]) == (round(SAMPLE * 0.9), round(SAMPLE * 0.9), SAMPLE)
    _assert_run(step, f"import responses {result['sha256'][:8]}", "COMPLETED",
                f"{result['rows']} rows: {result['accepted']} accepted, 0 quarantined, 0 duplicate(s), 0 already "
                f"stored; respondents {rate['responded']} of {SAMPLE} issued, target {rate['target_respondents']}")


def test_responses_imported_before_end_completed_with_nothing_to_do(steps: dict[str, Step]) -> None:
    step = steps["responses again"]
    result = step.cli.json()
    assert result["status"] == "duplicate"
    _assert_run(step, f"import responses {result['sha256'][:8]}", "COMPLETED",
                f"this survey export was imported before (sha256 {result['sha256'][:12]}…); nothing to do")


def test_bad_responses_file_fails_with_the_cli_line(steps: dict[str, Step]) -> None:
    step = steps["responses bad"]
    assert "is empty" in step.error_line
    _assert_run(step, f"import responses {hashlib.sha256(b'').hexdigest()[:8]}", "FAILED", step.error_line)


def test_household_withdrawal_run_names_no_token(steps: dict[str, Step]) -> None:
    step = steps["withdraw"]
    _assert_run(step, "withdraw household", "COMPLETED",
                "household withdrawn (wave 1): 1 response(s), 1 contact record(s), 1 interview draw(s) deleted; "
                "never to be contacted again")


# --------------------------------------------------------------------------- qualitative strand


def test_register_import_and_bad_register(steps: dict[str, Step]) -> None:
    result = steps["participants"].cli.json()
    assert (result["participants"], result["sessions"], result["families"], result["practitioners"]) == (8, 3, 5, 3)
    _assert_run(steps["participants"], "participants import", "COMPLETED",
                "register imported: 8 participant(s) in 3 session(s) (5 family member(s), 3 practitioner(s)), "
                "0 withdrawn")
    bad = steps["participants bad"]
    assert "not encrypted" in bad.error_line
    _assert_run(bad, "participants import", "FAILED", bad.error_line)


def test_transcripts_import_and_bad_archive(steps: dict[str, Step]) -> None:
    result = steps["transcripts"].cli.json()
    assert result["sessions"] == 2
    _assert_run(steps["transcripts"], "transcripts import", "COMPLETED",
                f"2 transcript(s) imported (0 replacing an earlier import): {result['turns']} turns, "
                f"{result['words']} words, {result['withdrawn_turns']} withdrawn turn(s), "
                f"{sum(result['replacements'].values())} replacement(s), {result['review_entries']} review-list "
                "entries")
    bad = steps["transcripts bad"]
    assert "not encrypted" in bad.error_line
    _assert_run(bad, "transcripts import", "FAILED", bad.error_line)


def test_redact_and_approve(steps: dict[str, Step]) -> None:
    redacted = steps["redact"].cli.json()
    _assert_run(steps["redact"], "redact FI-01", "COMPLETED",
                f"session FI-01 de-identified again: {redacted['turns']} turns, {redacted['words']} words, "
                f"{redacted['withdrawn_turns']} withdrawn turn(s), {sum(redacted['replacements'].values())} "
                f"replacement(s), {redacted['review_entries']} review-list entries "
                f"(before: {redacted['review_entries_before']})")
    approved = steps["approve"].cli.json()
    _assert_run(steps["approve"], "approve FI-01", "COMPLETED",
                f"session FI-01 approved with {approved['review_entries']} review-list entries left")
    assert steps["approve again"].cli.json()["status"] == "already_approved"
    _assert_run(steps["approve again"], "approve FI-01", "COMPLETED",
                "session FI-01 was already approved; nothing to do")


def test_coding_round_trip_and_bad_project(steps: dict[str, Step]) -> None:
    exported = steps["coding export"].cli.json()
    assert exported["sessions"] == 2
    _assert_run(steps["coding export"], "coding export", "COMPLETED",
                f"coding export (qdpx): 2 approved session(s), {exported['turns']} turns, {exported['codes']} codes, "
                f"{exported['cases']} cases")
    coded = steps["coding"].cli.json()
    assert (coded["selections"], coded["segments"], coded["sessions"]) == (1, 1, 2)
    _assert_run(steps["coding"], "coding import", "COMPLETED",
                "coding import (qdpx): 1 coded selection(s) in 2 session(s), 1 segments stored, 0 in withdrawn "
                "participants' turns left out, 0 code(s) added while coding")
    bad = steps["coding bad"]
    _assert_run(bad, "coding import", "FAILED", bad.error_line)


def test_participant_withdrawal(steps: dict[str, Step]) -> None:
    result = steps["participant withdraw"].cli.json()
    _assert_run(steps["participant withdraw"], "withdraw participant F03", "COMPLETED",
                f"participant withdrawn: {result['turns_withdrawn']} transcript turn(s) replaced by [withdrawn], "
                f"{result['segments_deleted']} coded segment(s) deleted")


# --------------------------------------------------------------------------- analysis, status, audit, retention


def test_analyse_summary_and_publication_safe_artifacts(steps: dict[str, Step]) -> None:
    from prefect.artifacts import Artifact

    step = steps["analyse"]
    tables = int(re.search(r"\((\d+) tables\)", step.cli.out).group(1))  # type: ignore[union-attr]
    notes = sum(1 for line in step.cli.out.splitlines() if line.startswith("note: "))
    assert "qualitative strand: 3 themes, 1 coded segments" in step.cli.out
    _assert_run(step, f"analyse {_uk_today()}", "COMPLETED",
                f"{tables} tables written (restricted and publication); survey: responses; qualitative strand: "
                f"3 themes, 1 coded segments; {notes} note(s)")
    for key in ("analysis-referral-routes", "analysis-qualitative"):
        artifact = Artifact.get(f"{CLUSTER}-{key}")
        assert artifact is not None and "publication-safe figures" in str(artifact.description)
    [strand] = json.loads(str(Artifact.get(f"{CLUSTER}-analysis-qualitative").data))  # type: ignore[union-attr]
    assert strand["participants"] == "c" or strand["participants"] >= 5  # suppressed as publication tables are


def test_status_audit_and_retention(steps: dict[str, Step]) -> None:
    status = steps["status"].cli.json()
    survey, retention = status["survey"], status["retention"]
    _assert_run(steps["status"], "status", "COMPLETED",
                f"1 extract(s) ingested; 1 wave(s), respondents {survey['respondents']} of "
                f"{survey['target_respondents']} targeted; retention: {len(retention['due'])} rule(s) due now, "
                f"{len(retention['next'])} coming next; {len(status['warnings'])} warning(s), "
                f"{len(status['stale_outputs'])} stale output(s)")
    audit = steps["audit"]
    assert re.fullmatch(r"audit log intact: \d+ entries", audit.cli.out.strip())
    _assert_run(audit, "audit verify", "COMPLETED", audit.cli.out.strip())
    swept = steps["retention"].cli.json()
    items = sum(len(entry["items"]) for entry in swept["due"])
    _assert_run(steps["retention"], "retention 2026-12-02 (dry run)", "COMPLETED",
                f"retention as of 2026-12-02 (dry run): {len(swept['due'])} rule(s) due now ({items} item(s)), "
                f"{len(swept['next'])} coming next; nothing deleted")


def _uk_today() -> date:
    from tasks.survey.fieldwork import uk_today

    return uk_today()
