"""Prefect's events after the final retention sweep: gone on the embedded server, reported on an external one.

Each test runs the command line as processes: an ingest (flow runs, task runs, artifacts and their
events), then the final sweep (as of the final deadline), then reads what Prefect still holds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.demo.render import write_extract
from tasks.retention.dates import add_months

PASSPHRASE = "events-test-passphrase"  # noqa: S105 - test passphrase
PUBLISHED = datetime.now(UTC).date()
FINAL = add_months(PUBLISHED, 24)  # months_after_publication (default 24): every deadline has passed


def _env(tmp_path: Path, cluster: str, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("PREFECT_API", "PREFECT_SERVER_DATABASE"))}
    env.update({"CLUSTER_EVAL_HOME": str(tmp_path / "var"),
                "CLUSTER_EVAL_DATABASE_URL": f"sqlite:///{tmp_path / 'analysis.db'}",
                "CLUSTER_EVAL_STUDY__CLUSTER": cluster,
                "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASSPHRASE,
                "CLUSTER_EVAL_RETENTION__PUBLICATION_DATE": PUBLISHED.isoformat()})
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=300, check=False)


def _ingest(env: dict[str, str], tmp_path: Path) -> None:
    extract = write_extract(tmp_path / "delivery" / "extract.zip", families=30, seed=3, passphrase=PASSPHRASE)
    done = _cli(env, tmp_path, "ingest", str(extract), "--json")
    assert done.returncode == 0, done.stderr


def _query(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database, timeout=30)) as db:
        return db.execute(sql, params).fetchall()


def _resources_by_event(database: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event_id, resource in _query(database, "SELECT event_id, resource_id FROM event_resources"):
        found.setdefault(event_id, set()).add(resource)
    return found


@pytest.mark.e2e
def test_the_final_sweep_deletes_this_clusters_events_on_the_embedded_server(tmp_path: Path) -> None:
    cluster = "evt-embedded"
    env = _env(tmp_path, cluster, {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"})
    prefect_db = tmp_path / "var" / "prefect" / "prefect.db"  # the embedded default: HOME/prefect
    _ingest(env, tmp_path)
    tag = f"prefect.tag.cluster-eval:cluster:{cluster}"
    runs = {r for (r,) in _query(prefect_db, "SELECT id FROM flow_run")}
    ours = {f"prefect.flow-run.{r}" for r in runs} | {f"prefect.task-run.{t}" for (t,) in _query(
        prefect_db, "SELECT id FROM task_run")} | {f"prefect.artifact.{a}" for (a,) in _query(
        prefect_db, "SELECT id FROM artifact")} | {tag}
    before = _resources_by_event(prefect_db)
    assert len(runs) == 1 and len([e for e, rs in before.items() if rs & ours]) > 20
    # Artifact events carry the artifact's key, description and (collections) data.
    assert _artifact_keys(prefect_db, cluster) >= {f"{cluster}-ingest-run", f"{cluster}-data-quality"}

    done = _cli(env, tmp_path, "retention", "--as-of", FINAL.isoformat(), "--json")
    assert done.returncode == 0, done.stderr
    check = json.loads(done.stdout)["verification"]
    assert (check["ok"], check["outcome"], check["remaining"]["events"]) == (True, "clean", 0)
    assert check["prefect_events"] | {"retention_days": None} == {
        "remaining": 0, "trimmed_by": None, "server": "embedded", "retention_days": None,
        "retention_assumed": False}
    # Prefect's own tables: only the sweep's run, its task runs, artifact, logs and events remain.
    [(sweep_run, flow_name)] = _query(
        prefect_db, "SELECT flow_run.id, flow.name FROM flow_run JOIN flow ON flow.id = flow_run.flow_id")
    assert flow_name == "retention-sweep" and sweep_run not in runs
    assert {r for (r,) in _query(prefect_db, "SELECT DISTINCT flow_run_id FROM artifact")} == {sweep_run}
    assert {r for (r,) in _query(prefect_db, "SELECT DISTINCT flow_run_id FROM log")} <= {sweep_run, None}
    after = _resources_by_event(prefect_db)
    own = f"prefect.flow-run.{sweep_run}"
    leftover = [e for e, rs in after.items() if rs & ours and own not in rs]
    assert leftover == []
    assert len([e for e, rs in after.items() if own in rs]) > 0  # the sweep's own run keeps its events
    assert _query(prefect_db, "SELECT COUNT(*) FROM events WHERE id NOT IN (SELECT event_id FROM event_resources)") \
        == [(0,)]
    assert _artifact_keys(prefect_db, cluster) == {f"{cluster}-retention-sweep", f"{cluster}-retention-sweep-run"}


def _artifact_keys(database: Path, cluster: str) -> set[str]:
    """The artifact keys of this cluster named in any event's payload."""
    payloads = [json.loads(p) for (p,) in _query(database, "SELECT payload FROM events")]
    return {str(p["key"]) for p in payloads if str(p.get("key", "")).startswith(f"{cluster}-")}


def _verifications(tmp_path: Path) -> list[tuple[str, str]]:
    """(flow_run_id, details) of each retention verification in the audit log."""
    return [(str(r), str(d)) for r, d in _query(
        tmp_path / "analysis.db",
        "SELECT flow_run_id, details FROM audit_log WHERE event = 'retention-verification' ORDER BY seq")]


def _involved(event: dict[str, Any]) -> set[str]:
    return {event["resource"]["prefect.resource.id"]} | {r["prefect.resource.id"] for r in event["related"]}


def _api_events(api: str, tag: str, keep: str) -> list[dict[str, Any]]:
    """Events the API lists with this cluster's tag or about a run of it, but the kept run's."""
    def listed(ids: list[str]) -> list[dict[str, Any]]:
        body = {"filter": {"occurred": {"since": "2000-01-01T00:00:00Z",
                                        "until": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
                           "any_resource": {"id": ids}}, "limit": 50}
        page = httpx.post(f"{api}/events/filter", json=body, timeout=30).json()
        found = list(page["events"])
        while page.get("next_page"):
            page = httpx.get(page["next_page"], timeout=30).json()
            found += page["events"]
        return [e for e in found if keep not in _involved(e)]

    tagged = listed([tag])
    runs = sorted({r for e in tagged for r in _involved(e) if r.startswith("prefect.flow-run.")})
    return list({e["id"]: e for e in tagged + (listed(runs) if runs else [])}.values())


@pytest.mark.e2e
def test_on_an_external_server_the_final_sweep_reports_the_events_it_cannot_delete(
        live_prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, server_env = live_prefect_server
    cluster = f"evt-{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path, cluster, server_env) | {"PREFECT_API_URL": f"{url}/api"}
    _ingest(env, tmp_path)
    tag = f"prefect.tag.cluster-eval:cluster:{cluster}"
    done = _cli(env, tmp_path, "retention", "--as-of", FINAL.isoformat(), "--json")
    assert done.returncode == 0, done.stderr  # reported, not a failure: the sweep did what it can
    result = json.loads(done.stdout)
    check = result["verification"]
    assert (check["ok"], check["outcome"]) == (False, "prefect-events-pending")
    assert sum(d["flow_runs"] for d in result["deleted"] if d["category"] == "prefect_history") == 1
    # What the sweep counted is what the server's API lists for this cluster, but the sweep's own run.
    [(own, details)] = _verifications(tmp_path)
    events = _api_events(f"{url}/api", tag, f"prefect.flow-run.{own}")
    newest = max(datetime.fromisoformat(e["occurred"]) for e in events)
    trimmed_by = (newest + timedelta(days=7, hours=1)).date().isoformat()  # the server's default, read from it
    assert {k: n for k, n in check["remaining"].items() if n} == {"events": len(events)}
    assert check["prefect_events"] == {"remaining": len(events), "trimmed_by": trimmed_by, "server": "external",
                                       "retention_days": 7, "retention_assumed": False}
    audited = json.loads(details)
    assert (audited["ok"], audited["outcome"], audited["events"], audited["events_trimmed_by"]) == (
        False, "prefect-events-pending", len(events), trimmed_by)
    assert audited["flow_runs"] == audited["artifacts"] == audited["logs"] == audited["rows"] == 0
    # The command's line (without --json) and the run's final message in Prefect say it plainly.
    from cli.retention import _retention_summary

    said = (f"nothing else remains; Prefect still holds {len(events)} event(s) of this cluster until "
            f"{trimmed_by}: the external Prefect server's API cannot delete events; it trims them 7 day(s) "
            "after they occurred (server setting PREFECT_SERVER_EVENTS_RETENTION_PERIOD)")
    assert f"  verification: {said}" in _retention_summary(result).splitlines()
    message = httpx.get(f"{url}/api/flow_runs/{own}", timeout=10).json()["state"]["message"]
    assert f"verification: {said};" in message
    shown = _cli(env, tmp_path, "status").stdout.splitlines()
    assert (f"retention: Prefect still holds {len(events)} event(s) of this cluster until {trimmed_by} "
            f"(external server; the sweep as of {FINAL} could not delete them)") in shown
    assert date.fromisoformat(trimmed_by) >= PUBLISHED + timedelta(days=7)


def _event(db: sqlite3.Connection, resource: str, related: list[str], with_rows: bool = True) -> str:
    event_id = str(uuid.uuid4())
    db.execute("INSERT INTO events (id, resource_id, related_resource_ids) VALUES (?, ?, ?)",
               (event_id, resource, json.dumps(related)))
    for role, rid in [("", resource), *(("related", r) for r in related)] if with_rows else []:
        db.execute("INSERT INTO event_resources (id, event_id, resource_id, resource_role) VALUES (?, ?, ?, ?)",
                   (str(uuid.uuid4()), event_id, rid, role))
    return event_id


def test_purge_takes_this_clusters_events_and_keeps_the_sweeps_own(tmp_path: Path) -> None:
    from tasks.retention.history import purge_events

    database = tmp_path / "prefect.db"
    tag, other_tag = "prefect.tag.cluster-eval:cluster:north", "prefect.tag.cluster-eval:cluster:south"
    with closing(sqlite3.connect(database)) as db:
        db.execute("CREATE TABLE events (id TEXT PRIMARY KEY, resource_id TEXT, related_resource_ids TEXT)")
        db.execute("CREATE TABLE event_resources (id TEXT PRIMARY KEY, event_id TEXT, resource_id TEXT, "
                   "resource_role TEXT)")
        gone = [
            _event(db, "prefect.flow-run.r1", [tag]),  # a deleted run's state event
            _event(db, "prefect.task-run.t1", [tag, "prefect.flow-run.r1"]),
            _event(db, "prefect.artifact.a1", ["prefect.flow-run.r1", tag]),
            # untagged, but about a run or artifact of this cluster: found through the tagged events
            _event(db, "prefect.artifact-collection.c1", ["prefect.artifact.a1", "prefect.flow-run.r1"]),
            _event(db, "prefect.task-run.t1", [tag], with_rows=False),  # a partly written event
            _event(db, "prefect.flow-run.r9", []),  # a deleted run of the rolling rule
        ]
        kept = [
            _event(db, "prefect.flow-run.own", [tag]),  # the sweep's own run
            _event(db, "prefect.artifact.own", ["prefect.flow-run.own", tag]),
            _event(db, "prefect.artifact-collection.c2", ["prefect.artifact.own", "prefect.flow-run.own"]),
            _event(db, "prefect.flow-run.s1", [other_tag]),  # another cluster's
            _event(db, "prefect.flow-run.s2", [other_tag], with_rows=False),
            _event(db, "prefect.flow.f1", []),
        ]
        db.commit()
    url = f"sqlite+aiosqlite:///{database}"
    assert purge_events(url, ["prefect.flow-run.r9"], ["prefect.flow-run.own"], tag) == len(gone)
    assert purge_events(url, ["prefect.flow-run.r9"], ["prefect.flow-run.own"], tag) == 0
    with closing(sqlite3.connect(database)) as db:
        assert {r for (r,) in db.execute("SELECT id FROM events")} == set(kept)
        assert {r for (r,) in db.execute("SELECT event_id FROM event_resources")} == set(kept) - {kept[4]}
    # Without the tag (a rolling sweep): only the named runs' and artifacts' events.
    assert purge_events(url, ["prefect.flow-run.s1"], [], None) == 1


@pytest.mark.parametrize(("server", "others", "outcome"), [
    ("external", 0, "prefect-events-pending"),  # the sweep did what it can: reported, not a failure
    ("embedded", 0, "remaining"),  # it should have deleted them itself
    ("external", 1, "remaining"),  # something else remains too
])
def test_events_an_external_server_keeps_are_reported_not_clean(server: str, others: int, outcome: str) -> None:
    from tasks.retention.history import EventsLeft
    from tasks.retention.verify import Verification, events_line

    newest = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    left = EventsLeft(12, newest, server, timedelta(days=7), timedelta(hours=1))
    remaining = {"rows": 0, "files": others, "keys": 0, "flow_runs": 0, "artifacts": 0, "logs": 0, "events": 12}
    check = Verification(date(2028, 12, 2), (), remaining, (), {}, (), left)
    assert (check.ok, check.outcome) == (False, outcome)
    assert check.view()["prefect_events"] == {"remaining": 12, "trimmed_by": "2026-12-10", "server": server,
                                              "retention_days": 7, "retention_assumed": False}
    assert events_line(check.view()["prefect_events"] | {"retention_assumed": True}) == (
        f"Prefect still holds 12 event(s) of this cluster until 2026-12-10: the {server} Prefect server's API "
        "cannot delete events; it trims them 7 day(s) after they occurred (assumed: the server did not say) "
        "(server setting PREFECT_SERVER_EVENTS_RETENTION_PERIOD)")
    clean = Verification(date(2028, 12, 2), (), dict.fromkeys(remaining, 0), (), {}, (),
                         EventsLeft(0, None, server, timedelta(days=7)))
    assert (clean.ok, clean.outcome, clean.view()["prefect_events"]["trimmed_by"]) == (True, "clean", None)
