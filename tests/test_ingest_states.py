"""What the Prefect UI shows of an ingest: run names, Failed/Completed states with the CLI's line, artifacts.

Unit tests cover the plain parts (run name, the flow's ending); one in-process run of ``cluster-eval
ingest`` per case (good, corrupt, same bytes again, missing file) on a cluster of its own then reads
the runs, their logs and artifacts back through the Prefect API.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from cli.main import main
from tasks.core.flowrun import NothingToDo
from tasks.demo.render import write_extract
from tasks.ingest.pipeline import NO_POPULATION, IngestOutcome, TableCounts
from tasks.ingest.steps import (
    ExtractRejected,
    finish_ingest,
    ingest_run_name,
    report_keys,
    summary_line,
)

PASS = "states-test-passphrase-3"  # noqa: S105 - test passphrase
ERROR = 40


# --------------------------------------------------------------------------- unit


def test_run_name_is_the_files_sha256_prefix(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"some encrypted bytes")
    assert ingest_run_name({"file": str(path)}) == f"ingest {hashlib.sha256(b'some encrypted bytes').hexdigest()[:8]}"
    assert ingest_run_name({"file": str(tmp_path / "missing.zip")}) == "ingest (file not found)"
    assert ingest_run_name({"file": str(tmp_path)}) == "ingest (file not found)"


def _outcome(status: Any, error: str | None = None) -> IngestOutcome:
    return IngestOutcome(status, "ab" * 32, error, {"families": TableCounts(3, 2, 1)}, NO_POPULATION)


def test_rejection_raises_the_clis_line_and_a_duplicate_is_nothing_to_do() -> None:
    line = "file x.zip: wrong passphrase; the file was quarantined, please report this"
    with pytest.raises(ExtractRejected) as rejected:
        finish_ingest(_outcome("rejected", line))
    assert str(rejected.value) == line and rejected.value.exit_code == 1
    assert rejected.value.result == _outcome("rejected", line).to_json()
    with pytest.raises(NothingToDo) as duplicate:
        finish_ingest(_outcome("duplicate"))
    assert str(duplicate.value) == f"extract {'ab' * 6} was already ingested; nothing to do"
    assert duplicate.value.result["status"] == "duplicate" and duplicate.value.exit_code == 0
    assert finish_ingest(_outcome("ingested"))["tables"] == {"families": {"rows": 3, "loaded": 2, "quarantined": 1}}


def test_report_keys_carry_the_cluster() -> None:
    assert report_keys("north_east") == ("north-east-data-quality", "north-east-data-quality-summary",
                                         "north-east-data-quality-rejected")


# --------------------------------------------------------------------------- through the Prefect API


def _cli(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict[str, Any], str]:
    code = main(["ingest", str(path), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _runs(cluster: str) -> list[Any]:
    """This cluster's ingest runs, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"cluster-eval:cluster:{cluster}"])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC)


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _logs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


def _artifacts(key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


@pytest.mark.e2e
def test_states_names_and_artifacts_of_ingest_runs(
    prefect_harness: None, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = f"states{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CLUSTER_EVAL_STUDY__CLUSTER", cluster)
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    good = write_extract(tmp_path / "good.zip", families=30, seed=5, passphrase=PASS, sidecar=True)
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()
    copy = tmp_path / "copy.zip"
    copy.write_bytes(good.read_bytes())
    bad = write_extract(tmp_path / "bad.zip", families=30, seed=6, passphrase="not-the-passphrase")  # noqa: S106
    bad_sha = hashlib.sha256(bad.read_bytes()).hexdigest()

    code, ingested, _ = _cli(capsys, good)
    assert code == 0 and ingested["status"] == "ingested"
    code, rejected, err = _cli(capsys, bad)
    assert code == 1 and rejected["status"] == "rejected"
    line = rejected["error"]
    assert line.startswith("file bad.zip: wrong passphrase") and "\n" not in line
    assert err.splitlines()[-1] == f"cluster-eval: error: {line}"
    code, duplicate, _ = _cli(capsys, copy)
    assert code == 0 and duplicate["status"] == "duplicate"
    code, missing, _ = _cli(capsys, tmp_path / "nowhere.zip")
    assert code == 1 and missing["status"] == "rejected"

    runs = _runs(cluster)
    assert [(r.name, r.state.type.value, r.state.message) for r in runs] == [
        (f"ingest {good_sha[:8]}", "COMPLETED", summary_line(ingested)),
        (f"ingest {bad_sha[:8]}", "FAILED", line),
        (f"ingest {good_sha[:8]}", "COMPLETED", f"extract {good_sha[:12]} was already ingested; nothing to do"),
        ("ingest (file not found)", "FAILED", missing["error"]),
    ]
    good_run, bad_run = runs[0], runs[1]

    # The flow run carries the cluster; its stage task runs carry no tags (no concurrency-slot call each).
    assert f"cluster-eval:cluster:{cluster}" in good_run.tags
    stages = ["check archive", "decrypt", "read", "validate", "pseudonymise", "transform", "load", "report",
              "publish report"]

    def finished() -> list[Any]:
        done = [t for t in _task_runs(good_run.id) if t.state and t.state.is_final()]
        return done if {t.name for t in done} >= set(stages) else []

    task_runs = wait_for("the ingest's task runs", finished)
    assert {t.name: t.tags for t in task_runs if t.name in stages} == dict.fromkeys(stages, [])

    # The rejected run: the reason once at ERROR at flow level, no traceback anywhere (flow or task runs).
    logs = _logs(bad_run.id)
    assert logs and not [log.message for log in logs if "Traceback" in log.message]
    assert [log.message for log in logs if log.level >= ERROR and log.task_run_id is None] == [line]
    assert "Refused: " + line in [log.message for log in logs if log.task_run_id is not None]

    # Artifacts carry the cluster; the rejected file's counts never replace the last good report.
    table_key, summary_key, rejected_key = report_keys(cluster)
    [table] = _artifacts(table_key)
    [summary] = _artifacts(summary_key)
    [rejection] = _artifacts(rejected_key)
    assert (table.flow_run_id, table.type) == (good_run.id, "table")
    assert (summary.flow_run_id, summary.type) == (good_run.id, "markdown")
    assert f"extract {good_sha[:12]}" in summary.data and "**Status:** ingested" in summary.data
    assert rejection.flow_run_id == bad_run.id and f"**Error:** {line}" in rejection.data
    run_artifacts = _artifacts(f"{cluster}-ingest-run")
    assert sorted(a.flow_run_id for a in run_artifacts) == sorted(r.id for r in runs)
    assert not _artifacts("data-quality") or all(a.flow_run_id not in {r.id for r in runs}
                                                 for a in _artifacts("data-quality"))
