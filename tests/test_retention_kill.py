"""A sweep killed with SIGKILL mid-item is finished by a re-run, with the same outcome and audit.

The sweep runs as ``python -m cli retention`` in its own process group (with its own
ephemeral Prefect server); a test hook writes each step's label to a trace file and pauses,
so the test kills it at chosen points: after an item is recorded as started (nothing removed
yet) and after an item's files are removed (its rows and audit event not yet written).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings, run_cli_until
from sqlalchemy import text
from test_retention import (
    PUBLICATION,
    SCHEDULED,
    audit_events,
    expected_state,
    populate,
    state,
)

from tasks.core.audit import verify_audit
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.retention.sweep import DELETION_EVENT
from tasks.retention.verify import VERIFICATION_EVENT

AS_OF = "2024-08-31"
PUBLICATION_ITEM = "outputs/run1 [publication charts analysis.xlsx report.html manifest.json]"
KILL_AT = ["contact-store:contact_store:started", f"publication-outputs:{PUBLICATION_ITEM}:removed"]


def _study(root: Path) -> Runtime:
    rt = open_runtime(make_settings(root / "var", f"sqlite:///{root / 'analysis.db'}", **SCHEDULED))
    populate(rt)
    return rt


def _env(rt: Runtime, root: Path, trace: Path, pause: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_SERVER_DATABASE"))}
    env.update({
        "PREFECT_HOME": str(root / "prefect"),
        "CLUSTER_EVAL_HOME": str(rt.home.root),
        "CLUSTER_EVAL_DATABASE_URL": rt.settings.database,
        "CLUSTER_EVAL_SURVEY__FIELDWORK_END": str(rt.settings.survey.fieldwork_end),
        "CLUSTER_EVAL_RETENTION__PUBLICATION_DATE": str(PUBLICATION),
        "CLUSTER_EVAL_TEST_RETENTION_TRACE": str(trace),
        "CLUSTER_EVAL_TEST_RETENTION_PAUSE": str(pause),
    })
    return env


def _sweep(env: dict[str, str], kill_at: str | None, trace: Path) -> subprocess.CompletedProcess[str] | None:
    """Run one sweep; kill it once ``kill_at`` shows in the trace."""
    return run_cli_until(["retention", "--as-of", AS_OF, "--json"], env, kill_at, trace)

def _deletions(rt: Runtime) -> list[tuple[Any, ...]]:
    keys = ("category", "rule", "as_of", "due_date", "kind", "item", "rows", "tables", "files", "keys")
    return [tuple(e[k] for k in keys) for e in audit_events(rt, DELETION_EVENT)
            if e["category"] != "prefect_history"]


def _ledger(rt: Runtime) -> list[tuple[str, str]]:
    with rt.engine.connect() as conn:
        return [(r.state, r.target) for r in conn.execute(
            text("SELECT state, target FROM retention_deletions ORDER BY started_at, unit_id"))]


@pytest.mark.e2e
def test_killed_sweeps_are_finished_by_a_rerun(tmp_path: Path, prefect_harness: None) -> None:
    from flows.retention import retention_flow

    reference = _study(tmp_path / "reference")
    with use_runtime(reference):
        expected = retention_flow(as_of=date.fromisoformat(AS_OF))
    assert expected["verification"]["ok"]

    killed = _study(tmp_path / "killed")
    trace = tmp_path / "trace.txt"
    env = _env(killed, tmp_path / "killed", trace, pause=0.4)

    assert _sweep(env, KILL_AT[0], trace) is None
    # Killed after the contact store was recorded as started, before its key was destroyed.
    assert ("started", "contact_store") in _ledger(killed)
    files, keys, _ = state(killed)
    assert "contact_key" in keys and "raw/aaaa-extract1.zip" not in files

    assert _sweep(env, KILL_AT[1], trace) is None
    # Killed with the publication files gone but their rows, ledger and audit not yet written.
    assert ("started", PUBLICATION_ITEM) in _ledger(killed)
    assert "contact-store:contact_store:resumed" in trace.read_text().splitlines()
    assert not (killed.home.outputs / "run1" / "report.html").exists()

    env["CLUSTER_EVAL_TEST_RETENTION_PAUSE"] = "0"
    finished = _sweep(env, None, trace)
    assert finished is not None and finished.returncode == 0, finished and finished.stderr[-2000:]
    result = json.loads(finished.stdout)
    assert result["verification"]["ok"]
    assert [d["target"] for d in result["deleted"] if d["resumed"]] == [PUBLICATION_ITEM]

    # Same end state and the same deletion events, each once, as the uninterrupted sweep.
    assert state(killed) == state(reference) == expected_state(AS_OF)
    assert _deletions(killed) == _deletions(reference)
    assert [(e["as_of"], e["ok"], e["rows"], e["files"], e["keys"])
            for e in audit_events(killed, VERIFICATION_EVENT)] == [(AS_OF, True, 0, 0, 0)]
    assert all(state_ == "done" for state_, _ in _ledger(killed))
    with killed.engine.connect() as conn:
        assert verify_audit(conn).ok
    # The two killed runs are gone from Prefect's own database; the finishing run remains.
    history = next(e for e in audit_events(killed, DELETION_EVENT) if e["category"] == "prefect_history")
    assert (history["rule"], history["flow_runs"]) == ("prefect-history-final", 2)
    with sqlite3.connect(tmp_path / "killed" / "prefect" / "prefect.db") as prefect_db:
        runs = [r[0] for r in prefect_db.execute("SELECT id FROM flow_run")]
        assert [r.replace("-", "") for r in runs] == [history["flow_run_id"].replace("-", "")]
    for rt in (reference, killed):
        rt.engine.dispose()
