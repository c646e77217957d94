"""A responses import killed with SIGKILL inside its transaction leaves nothing; importing the file
again stores every response exactly once, and a third import says it was imported before.

The import runs as ``python -m cli responses import FILE --json`` in its own process group (with
its own ephemeral Prefect server). The test hook CLUSTER_EVAL_TEST_RESPONSES_TRACE / _PAUSE
(cli/main.py) writes the label of the checkpoint inside the import transaction, reached once the
responses, quarantined rows, import record and audit entry are all written and before the commit,
then pauses there so the test kills the process group at that point. On both backends.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli_until
from sqlalchemy import text
from test_fieldwork import households
from test_responses import DRAWN, drawn
from test_sampling import survey_settings

from tasks.core.audit import verify_audit
from tasks.core.runtime import Runtime
from tasks.demo.survey_export import generate_survey_export, survey_export_csv

pytestmark = pytest.mark.e2e
TABLES = ("responses", "quarantined_rows", "response_imports", "audit_log", "stored_files")


def _env(rt: Runtime, root: Path, trace: Path, pause: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_SERVER_DATABASE"))}
    env.update({
        "PREFECT_HOME": str(root / "prefect"),
        "CLUSTER_EVAL_HOME": str(rt.home.root),
        "CLUSTER_EVAL_DATABASE_URL": rt.settings.database,
        "CLUSTER_EVAL_TEST_RESPONSES_TRACE": str(trace),
        "CLUSTER_EVAL_TEST_RESPONSES_PAUSE": str(pause),
    })
    return env


def _import(env: dict[str, str], export: Path, kill_at: str | None, trace: Path
            ) -> subprocess.CompletedProcess[str] | None:
    """Run one ``responses import``; kill it once ``kill_at`` shows in the trace."""
    return run_cli_until(["responses", "import", str(export), "--json"], env, kill_at, trace)

def _counts(rt: Runtime) -> dict[str, int]:
    with rt.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}


def _imported_events(rt: Runtime) -> list[dict[str, object]]:
    with rt.engine.connect() as conn:
        return [json.loads(d) for d in conn.execute(text(
            "SELECT details FROM audit_log WHERE event = 'survey_responses_imported' ORDER BY seq")).scalars()]


def test_import_killed_inside_its_transaction_is_redone_exactly_once(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    drawn(runtime, s)  # wave 1 drawn at DRAWN (2022-01-20 09:00 UTC), nothing sent
    tokens = sorted(households(runtime.engine, 1))
    frame = generate_survey_export(tokens, seed=7, response_rate=0.6, invited=DRAWN,
                                   until=DRAWN + timedelta(days=20)).with_columns(pl.all().cast(pl.String))
    spare = next(t for t in tokens if t not in frame["token"].to_list())  # a household that did not reply
    extra = frame.head(2).with_columns(pl.Series("token", ["NEVER-ISSUED", spare]),
                                       pl.Series("submitted_at", ["2022-02-01T10:00:00", "2022-01-19T10:00:00"]))
    export = tmp_path / "inbox" / "responses.csv"
    export.parent.mkdir()
    export.write_bytes(survey_export_csv(pl.concat([frame, extra])))
    data, sha = export.read_bytes(), hashlib.sha256(export.read_bytes()).hexdigest()
    assert frame.height == 12
    before = _counts(runtime)
    assert before["responses"] == before["response_imports"] == before["quarantined_rows"] == 0

    trace = tmp_path / "trace.txt"
    env = _env(runtime, tmp_path, trace, pause=120)
    label = f"import-responses:{sha[:12]}:uncommitted"
    assert _import(env, export, label, trace) is None
    # Killed with every row written inside the transaction: nothing of it is left, and the export
    # stays where it was (the import only reads it; nothing is registered under the home).
    assert _counts(runtime) == before
    assert _imported_events(runtime) == []
    assert export.read_bytes() == data
    with runtime.engine.connect() as conn:
        assert verify_audit(conn).ok

    env["CLUSTER_EVAL_TEST_RESPONSES_PAUSE"] = "0"
    done = _import(env, export, None, trace)
    assert done is not None and done.returncode == 0, done and done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["status"], result["sha256"], result["rows"], result["accepted"], result["quarantined"]) == (
        "imported", sha, 14, 12, 2)
    assert trace.read_text().splitlines() == [label, label]
    with runtime.engine.connect() as conn:
        stored = conn.execute(text("SELECT token, submitted_at, import_sha256 FROM responses ORDER BY token")).all()
        imports = conn.execute(text("SELECT sha256, rows_read, accepted, quarantined FROM response_imports")).all()
        assert verify_audit(conn).ok
    expected = sorted(zip(frame["token"], frame["submitted_at"], strict=True))
    assert [(t, at) for t, at, _ in stored] == expected  # each response once, as exported (UTC)
    assert {r[2] for r in stored} == {sha}
    assert [tuple(i) for i in imports] == [(sha, 14, 12, 2)]
    assert _counts(runtime) == {**before, "responses": 12, "quarantined_rows": 2, "response_imports": 1,
                                "audit_log": before["audit_log"] + 1}
    assert [(e["sha256"], e["accepted"]) for e in _imported_events(runtime)] == [(sha, 12)]

    again = _import(env, export, None, trace)
    assert again is not None and again.returncode == 0, again and again.stderr[-2000:]
    assert json.loads(again.stdout)["status"] == "duplicate"
    assert _counts(runtime)["responses"] == 12 and _counts(runtime)["response_imports"] == 1
    assert len(_imported_events(runtime)) == 1
    assert trace.read_text().splitlines() == [label, label]  # the third never reached the transaction's end
    assert export.read_bytes() == data
