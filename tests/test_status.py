"""``status`` (extracts, waves, response rates, next deletions) and ``serve`` (deployments)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from sqlalchemy import text
from test_retention import populate

from tasks.core.errors import ConfigError
from tasks.core.runtime import Runtime, open_runtime


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rt: Runtime,
         *argv: str) -> tuple[int, str, str]:
    from cli.main import main

    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(rt.home.root))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", rt.settings.database)
    for section, values in (("survey", rt.settings.survey), ("retention", rt.settings.retention)):
        for key in ("fieldwork_end", "publication_date"):
            value = getattr(values, key, None)
            if value is not None:
                monkeypatch.setenv(f"CLUSTER_EVAL_{section.upper()}__{key.upper()}", str(value))
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _study(tmp_path: Path, sqlite_url: str, **sections: dict) -> Runtime:
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **sections))
    populate(rt)
    with rt.engine.begin() as conn:
        conn.execute(text("UPDATE households SET withdrawn_at = '2022-03-02' WHERE token = 't2'"))
    return rt


@pytest.mark.e2e
def test_status_reports_counts_and_the_next_deletions(tmp_path: Path, sqlite_url: str,
                                                      prefect_harness: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(UTC).date()
    fieldwork_end, published = today + timedelta(days=10), today + timedelta(days=100)
    rt = _study(tmp_path, sqlite_url, survey={"fieldwork_end": fieldwork_end},
                retention={"publication_date": published})
    code, out, _ = _cli(monkeypatch, capsys, rt, "status", "--json")
    result = json.loads(out)
    assert code == 0
    assert result["extracts"] == {"ingested": 2, "by_status": {"ingested": 2},
                                  "last_ingested_at": "2022-02-01T09:00:00+00:00"}
    # Two households issued (one since withdrawn, still counted as issued), one responded.
    assert result["survey"] == {
        "waves": [{"wave": 1, "size": 2, "drawn_at": "2022-02-10T00:00:00+00:00", "issued": 2,
                   "responded": 1, "response_rate": 0.5}],
        "respondents": 1, "target_respondents": 25, "interview_draw": 1}
    retention = result["retention"]
    assert retention["as_of"] == today.isoformat() and retention["last_sweep"] is None
    # Both raw extracts are long overdue; the contact store goes 30 days after fieldwork ends.
    assert [(e["rule"], e["due_date"]) for e in retention["due"]] == [
        ("raw-extract", "2022-02-09"), ("raw-extract", "2022-03-03")]
    contact_due = (fieldwork_end + timedelta(days=30)).isoformat()
    final_due = (date(published.year + 2, 2, 28) if (published.month, published.day) == (2, 29)
                 else published.replace(year=published.year + 2)).isoformat()
    upcoming = [(e["rule"], e["due_date"]) for e in retention["next"] if e["category"] != "prefect_history"]
    assert upcoming[:2] == [("contact-store", contact_due), ("fieldwork-packs", contact_due)]
    assert upcoming[-1] == ("keys", final_due)
    assert retention["unscheduled"] == [] and result["warnings"] == []


@pytest.mark.e2e
def test_status_warns_without_a_publication_date(tmp_path: Path, sqlite_url: str,
                                                 prefect_harness: None,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rt = _study(tmp_path, sqlite_url)
    code, out, _ = _cli(monkeypatch, capsys, rt, "status")
    assert code == 0
    assert "cluster pilot: 2 extract(s) ingested, last 2022-02-01T09:00:00+00:00" in out
    assert "wave 1: 2 issued, 1 responded (50.0%)" in out
    assert "respondents: 1 of 25 targeted" in out
    assert "retention not scheduled: keys (retention.publication_date is not set)" in out
    assert "warning: retention.publication_date is not set" in out
    assert "warning: survey.fieldwork_end is not set" in out


def test_serve_needs_a_prefect_server(tmp_path: Path, sqlite_url: str,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        code, out, err = _cli(monkeypatch, capsys, rt, "serve")
    assert (code, out) == (1, "")
    assert err.startswith("cluster-eval: error: cluster-eval serve needs a Prefect server")
    assert err.count("\n") == 1


def test_retention_is_served_daily_on_the_configured_cron(tmp_path: Path) -> None:
    from deployments.serve import build_deployments

    settings = make_settings(tmp_path, None, retention={"sweep_cron": "30 3 * * *"})
    [retention] = [d for d in build_deployments(settings) if d.flow_name == "retention-sweep"]
    assert (retention.name, retention.parameters) == ("retention-daily", {"dry_run": False})
    assert [(s.schedule.cron, s.schedule.timezone) for s in retention.schedules] == [
        ("30 3 * * *", "Europe/London")]


def test_a_bad_cron_is_one_clear_error(tmp_path: Path) -> None:
    from deployments.serve import build_deployments

    with pytest.raises(ConfigError, match="retention.sweep_cron '61 2 \\* \\* \\*' is not a valid cron"):
        build_deployments(make_settings(tmp_path, None, retention={"sweep_cron": "61 2 * * *"}))


def test_status_names_the_events_an_external_server_still_holds(runtime: Runtime) -> None:
    from tasks.core.audit import append_audit
    from tasks.retention.verify import VERIFICATION_EVENT
    from tasks.status.summary import prefect_events_held

    def verification(events: int, trimmed_by: str | None) -> None:
        with runtime.engine.begin() as conn:
            append_audit(conn, runtime.cluster, VERIFICATION_EVENT, {
                "as_of": "2024-08-31", "ok": not events, "events": events, "events_server": "external",
                "events_trimmed_by": trimmed_by})

    today = date(2026, 12, 2)
    with runtime.engine.connect() as conn:
        assert prefect_events_held(conn, runtime.cluster, today) is None  # no sweep yet
    verification(12, "2026-12-09")
    with runtime.engine.connect() as conn:
        assert prefect_events_held(conn, runtime.cluster, today) == {
            "remaining": 12, "trimmed_by": "2026-12-09", "server": "external", "as_of": "2024-08-31"}
        assert prefect_events_held(conn, runtime.cluster, date(2026, 12, 10)) is None  # trimmed by then
        assert prefect_events_held(conn, "other-cluster", today) is None
    verification(0, None)  # the latest sweep found none
    with runtime.engine.connect() as conn:
        assert prefect_events_held(conn, runtime.cluster, today) is None
