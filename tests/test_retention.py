"""Retention: the rules table, due dates, sweeps before/after each deadline, audit, bad input."""

from __future__ import annotations

import calendar
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings, prefect_home
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from tasks.core.audit import check_audit_log
from tasks.core.contacts import ContactRecord
from tasks.core.errors import ConfigError
from tasks.core.home import Home, write_private
from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.core.secrets import AUDIT_KEY, CONTACT_KEY, PSEUDONYM_KEY, Secrets
from tasks.ingest.load import store_contacts
from tasks.retention.dates import add_months, rule_deadline
from tasks.retention.history import EventsLeft, FlowRunRef
from tasks.retention.inventory import Inventory, take_inventory
from tasks.retention.plan import keys_held_elsewhere, plan_schedule
from tasks.retention.rules import load_rules
from tasks.retention.sweep import DELETION_EVENT, Sweep, delete_unit, resume_units, unfinished_units
from tasks.retention.verify import VERIFICATION_EVENT

FIELDWORK_END = date(2022, 3, 31)
PUBLICATION = date(2022, 8, 31)
SCHEDULED = {"survey": {"fieldwork_end": FIELDWORK_END}, "retention": {"publication_date": PUBLICATION}}
MARKERS = {k: f"ZQXMARK{k.upper()}QZ" for k in (
    "raw1", "raw2", "pack", "restricted", "publication", "qfile", "stray", "family", "quarantine",
    "response", "contact")}
RAW1, RAW2, PACK = "raw/aaaa-extract1.zip", "raw/bbbb-extract2.zip", "fieldwork/pilot-wave1.zip"
OUTPUT_FILES = {"restricted/population.csv": MARKERS["restricted"],
                "publication/population.csv": MARKERS["publication"], "charts/a.png": "png",
                "analysis.xlsx": "xlsx", "report.html": "html", "manifest.json": "{}"}
ALL_FILES = {RAW1, RAW2, PACK, "quarantine/report.csv", "outputs/stray.txt",
             *(f"outputs/run1/{name}" for name in OUTPUT_FILES)}
ALL_KEYS = {"contact_key", "extract_passphrase", "pack_passphrase", "pseudonym_key"}
ALL_ROWS = {"contacts": 2, "topup_runs": 1, "interview_draws": 1, "responses": 1, "response_imports": 1,
            "contact_attempts": 1, "households": 2, "wave_strata": 1, "waves": 1,
            "do_not_contact": 1, "episode_issues": 1, "episodes": 1, "children": 1, "families": 2,
            "quarantined_rows": 1, "extracts": 2}
CONTACT = ContactRecord(MARKERS["contact"], "1 High Street", None, "Town", "QZ1 1AA",
                        "someone@example.invalid", None, "email", False)


def _sql(conn: Any, statement: str, **params: Any) -> None:
    conn.execute(text(statement), params)


def populate(rt: Runtime) -> None:
    """A study half-way through: two extracts, fieldwork, responses, an analysis, keys."""
    home = rt.home
    contact_key, _ = Secrets(home).key_or_create(CONTACT_KEY)
    Secrets(home).key_or_create(PSEUDONYM_KEY)
    write_private(home.keys / "extract_passphrase", b"transport passphrase")
    write_private(home.keys / "pack_passphrase", b"pack passphrase")
    registered = {RAW1: (MARKERS["raw1"], "raw_extract", "2022-01-10T09:00:00+00:00"),
                  RAW2: (MARKERS["raw2"], "raw_extract", "2022-02-01T09:00:00+00:00"),
                  PACK: (MARKERS["pack"], "fieldwork_pack", "2022-02-15T09:00:00+00:00")}
    for path, (marker, _category, _at) in registered.items():
        write_private(home.root / path, marker.encode())
    for name, content in OUTPUT_FILES.items():
        write_private(home.outputs / "run1" / name, content.encode())
    write_private(home.quarantine / "report.csv", MARKERS["qfile"].encode())
    write_private(home.outputs / "stray.txt", MARKERS["stray"].encode())
    with rt.engine.begin() as c:
        for sha, at in (("a" * 64, "2022-01-10T09:00:00+00:00"), ("b" * 64, "2022-02-01T09:00:00+00:00")):
            _sql(c, "INSERT INTO extracts (cluster_id, sha256, file_name, encryption, status, received_at)"
                    " VALUES ('pilot', :s, 'x.zip', 'aes-zip', 'ingested', :t)", s=sha, t=at)
        for family in ("f1", "f2"):
            _sql(c, "INSERT INTO families (cluster_id, family_pid, extract_sha256, household_size,"
                    " lead_carer_ethnicity, in_population) VALUES ('pilot', :f, :s, 3, :m, TRUE)",
                 f=family, s="a" * 64, m=MARKERS["family"])
        _sql(c, "INSERT INTO children (cluster_id, child_pid, family_pid) VALUES ('pilot', 'c1', 'f1')")
        _sql(c, "INSERT INTO episodes (cluster_id, episode_pid, family_pid, referral_date,"
                " referral_route, primary_issue, in_window, goal_count, stepped_up_res_team,"
                " stepped_up_early_help_hub, stepped_up_social_care) VALUES ('pilot', 'e1', 'f1',"
                " '2021-02-01', 'school', 'housing', TRUE, 0, FALSE, FALSE, FALSE)")
        _sql(c, "INSERT INTO episode_issues (cluster_id, episode_pid, issue) VALUES ('pilot', 'e1', 'housing')")
        _sql(c, "INSERT INTO quarantined_rows (cluster_id, source_sha256, table_name, row_key,"
                " column_name, rule, reason) VALUES ('pilot', :s, 'families', 'k1', 'postcode',"
                " 'shape', :m)", s="a" * 64, m=MARKERS["quarantine"])
        store_contacts(c, contact_key, "pilot", "a" * 64, {"f1": CONTACT, "f2": CONTACT})
        _sql(c, "INSERT INTO waves (cluster_id, wave, seed, size, stratify_by, drawn_at)"
                " VALUES ('pilot', 1, 1, 2, 'primary_issue', '2022-02-10T00:00:00+00:00')")
        _sql(c, "INSERT INTO wave_strata (cluster_id, wave, stratum, frame_n, allocated)"
                " VALUES ('pilot', 1, 'housing', 2, 2)")
        for token, family in (("t1", "f1"), ("t2", "f2")):
            _sql(c, "INSERT INTO households (cluster_id, token, family_pid, wave, stratum, route)"
                    " VALUES ('pilot', :t, :f, 1, 'housing', 'email')", t=token, f=family)
        _sql(c, "INSERT INTO contact_attempts (cluster_id, token, wave, kind, route, attempted_at,"
                " outcome) VALUES ('pilot', 't1', 1, 'invitation', 'email', '2022-02-11', 'sent')")
        _sql(c, "INSERT INTO response_imports (cluster_id, sha256, file_name, imported_at, rows_read,"
                " accepted, quarantined) VALUES ('pilot', :s, 'r.csv', '2022-03-01', 1, 1, 0)", s="c" * 64)
        _sql(c, "INSERT INTO responses (cluster_id, token, submitted_at, mode, q1_life_satisfaction,"
                " import_sha256) VALUES ('pilot', 't1', '2022-02-20', :m, 7, :s)",
             m=MARKERS["response"], s="c" * 64)
        _sql(c, "INSERT INTO interview_draws (cluster_id, token, seed, drawn_at)"
                " VALUES ('pilot', 't1', 1, '2022-03-02')")
        _sql(c, "INSERT INTO do_not_contact (cluster_id, family_pid, reason, marked_at)"
                " VALUES ('pilot', 'f2', 'withdrawn', '2022-03-02')")
        _sql(c, "INSERT INTO topup_runs (cluster_id, flow_run_id, wave, size, allocation, proposed_at, decision,"
                " decided_at) VALUES ('pilot', 'r1', 2, 1, '{\"housing\": 1}', '2022-03-03', 'rejected',"
                " '2022-03-04')")
        for path, (_marker, category, at) in registered.items():
            _sql(c, "INSERT INTO stored_files (cluster_id, path, category, registered_at)"
                    " VALUES ('pilot', :p, :c, :t)", p=str(home.root / path), c=category, t=at)
        # The analysis stage registers its whole output folder (absolute path).
        _sql(c, "INSERT INTO stored_files (cluster_id, path, category, registered_at)"
                " VALUES ('pilot', :p, 'analysis_output', '2022-08-01T00:00:00+00:00')",
             p=str(home.outputs / "run1"))


@pytest.fixture
def study(tmp_path: Path, database_url: str) -> Iterator[Runtime]:
    """A populated study with fieldwork end and publication date configured, on both backends."""
    rt = open_runtime(make_settings(tmp_path / "var", database_url, **SCHEDULED))
    populate(rt)
    with use_runtime(rt):
        yield rt


@pytest.fixture
def sqlite_study(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    """The same study on SQLite only."""
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url, **SCHEDULED))
    populate(rt)
    with use_runtime(rt):
        yield rt


def state(rt: Runtime) -> tuple[set[str], set[str], dict[str, int]]:
    """What is left: files under HOME, key files, rows per table (non-zero only).

    Not the audit key nor the audit head file: they outlive every rule (see ``kept_for_audit``).
    """
    root = rt.home.root
    files = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and p.parent != root and not p.is_relative_to(root / "keys")
             and not p.is_relative_to(root / "prefect") and not p.is_relative_to(root / "audit")}
    keys = {p.name for p in rt.home.keys.iterdir()} - {AUDIT_KEY}
    with rt.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in ALL_ROWS}
    return files, keys, {t: n for t, n in counts.items() if n}


def audit_events(rt: Runtime, event: str) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [dict(json.loads(r.details), flow_run_id=r.flow_run_id) for r in conn.execute(
            text("SELECT details, flow_run_id FROM audit_log WHERE event = :e ORDER BY seq"), {"e": event})]


def markers_in(paths: list[Path]) -> set[str]:
    """Every marker whose bytes occur in any file under these paths."""
    found: set[str] = set()
    for top in paths:
        for path in [top] if top.is_file() else top.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found |= {m for m in MARKERS.values() if m.encode() in data}
    return found


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rt: Runtime,
        *argv: str, **settings: str) -> tuple[int, str, str]:
    """Run cluster-eval in-process against this runtime's home and database."""
    from cli.main import main

    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(rt.home.root))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", rt.settings.database)
    monkeypatch.setenv("CLUSTER_EVAL_SURVEY__FIELDWORK_END", str(rt.settings.survey.fieldwork_end))
    monkeypatch.setenv("CLUSTER_EVAL_RETENTION__PUBLICATION_DATE", str(PUBLICATION))
    for name, value in settings.items():
        monkeypatch.setenv(f"CLUSTER_EVAL_{name.upper()}", value)
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the rules table and dates (no Prefect) ------------------------------------------------

@pytest.fixture(autouse=True)
def _cluster_run_tags() -> Iterator[None]:
    """Tag this module's flow runs as the CLI does, so sweeps see them (and only them)."""
    from prefect import tags

    from tasks.core.runtime import run_tags

    with tags(*run_tags("pilot")):
        yield



def test_rules_table_reads_like_the_protocol() -> None:
    rules = load_rules()
    assert [(r.name, r.category, r.basis, r.offset, r.unit) for r in rules] == [
        ("raw-extract", "raw_extract", "ingest", "raw_extract_days", "days"),
        ("contact-store", "contact_store", "fieldwork_end", "contact_days_after_fieldwork", "days"),
        ("fieldwork-packs", "fieldwork_pack", "fieldwork_end", "contact_days_after_fieldwork", "days"),
        ("raw-transcripts", "raw_transcripts", "approval", "qualitative.raw_transcript_days", "days"),
        ("register-personal-data", "register_personal_data", "last_approval",
         "qualitative.register_days_after_approval", "days"),
        ("prefect-history-rolling", "prefect_history", "rolling", "prefect_history_days", "days"),
        *[(name, category, "publication", "months_after_publication", "months") for name, category in (
            ("survey-responses", "survey_responses"), ("analysis-store", "analysis_store"),
            ("qualitative-data", "qualitative_data"),
            ("restricted-outputs", "restricted_outputs"), ("publication-outputs", "publication_outputs"),
            ("remaining-files", "other_files"), ("prefect-history-final", "prefect_history"),
            ("keys", "keys"))],
    ]
    assert all(r.what and r.how for r in rules)
    store = {r.name: (r.tables, r.keys) for r in rules if r.is_store}
    assert store == {"contact-store": (("contacts",), ("contact_key",)),
                     "fieldwork-packs": ((), ("pack_passphrase",)),
                     "register-personal-data": ((), ("participant_key",)),
                     "qualitative-data": (("qual_segments", "qual_codings", "qual_codes", "qual_turns",
                                           "qual_sessions", "qual_withdrawals", "qual_participants",
                                           "qual_deliveries"), ("transcript_key",))}


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2022, 8, 31), 24, date(2024, 8, 31)),
    (date(2022, 1, 31), 1, date(2022, 2, 28)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)),
    (date(2022, 11, 15), 3, date(2023, 2, 15)),
])
def test_add_months(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)), st.integers(0, 36))
def test_add_months_is_calendar_months(day: date, months: int) -> None:
    later = add_months(day, months)
    assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == months
    # Same day of the month, or the month's last day when it is shorter.
    assert later.day == min(day.day, calendar.monthrange(later.year, later.month)[1])


def test_deadlines_from_settings(tmp_path: Path) -> None:
    rules = {r.name: r for r in load_rules()}
    settings = make_settings(tmp_path, None, **SCHEDULED)
    assert rule_deadline(rules["raw-extract"], settings, date(2022, 1, 10)) == date(2022, 2, 9)
    assert rule_deadline(rules["contact-store"], settings) == date(2022, 4, 30)
    assert rule_deadline(rules["keys"], settings) == date(2024, 8, 31)
    # Nothing outlives the final deadline, whatever its own basis says.
    assert rule_deadline(rules["raw-extract"], settings, date(2024, 8, 20)) == date(2024, 8, 31)
    bare = make_settings(tmp_path, None)
    assert rule_deadline(rules["contact-store"], bare) is None
    assert rule_deadline(rules["keys"], bare) is None


RULE = """[[rule]]
name = "{name}"
category = "c"
what = "w"
basis = "{basis}"
offset = "{offset}"
unit = "{unit}"
how = "h"
tables = ["t1"]
{extra}
"""


@pytest.mark.parametrize(("change", "message"), [
    ({"basis": "whenever"}, "basis must be one of ingest, fieldwork_end, publication, rolling"),
    ({"offset": "sweep_cron"}, "offset must name a whole-number setting in [retention]"),
    ({"unit": "days"}, "publication rules use months_after_publication in months"),
    ({"extra": 'colour = "red"'}, "unknown field(s) colour"),
    ({"name": "b"}, "a table may be named by one rule only"),
])
def test_bad_rules_table(change: dict[str, str], message: str) -> None:
    values = {"name": "a", "basis": "publication", "offset": "months_after_publication",
              "unit": "months", "extra": ""}
    second = RULE.format(**(values | change)) if change.get("name") else ""
    source = (RULE.format(**values) if second else RULE.format(**(values | change))) + second
    with pytest.raises(ConfigError) as caught:
        load_rules(source)
    assert message in str(caught.value)


def test_no_publication_date_leaves_the_final_group_unscheduled(tmp_path: Path, sqlite_url: str) -> None:
    rt = open_runtime(make_settings(tmp_path / "var", sqlite_url,
                                    survey={"fieldwork_end": FIELDWORK_END}))
    populate(rt)
    rules = load_rules()
    with rt.engine.connect() as conn:
        inventory = take_inventory(conn, rt.home, "pilot", rules)
    schedule = plan_schedule(rules, rt.settings, inventory, rt.home, [], date(2022, 2, 8))
    assert [u["rule"] for u in schedule.unscheduled] == [
        "survey-responses", "analysis-store", "qualitative-data", "restricted-outputs",
        "publication-outputs", "remaining-files", "prefect-history-final", "keys"]
    assert [(e.rule, e.due_date.isoformat(), [u.target for u in e.units]) for e in schedule.next] == [
        ("raw-extract", "2022-02-09", [RAW1]),
        ("raw-extract", "2022-03-03", [RAW2, "extract_passphrase"]),
        ("contact-store", "2022-04-30", ["contact_store"]),
        ("fieldwork-packs", "2022-04-30", ["fieldwork_pack"]),
    ]
    assert schedule.due == ()
    assert any("retention.publication_date is not set" in w for w in schedule.warnings)
    rt.engine.dispose()


class FakeHistory:
    """Prefect's run history in memory: runs (id -> start) and artifacts (id -> run)."""

    def __init__(self, runs: dict[str, datetime], artifacts: dict[str, str]) -> None:
        self.runs_, self.artifacts = dict(runs), dict(artifacts)
        self.deleted: list[str] = []

    def runs(self, flow_names: Any, before: datetime, exclude: Any) -> list[FlowRunRef]:
        return [FlowRunRef(i, t) for i, t in sorted(self.runs_.items(), key=lambda x: x[1])
                if t < before and i not in exclude]

    def artifact_ids(self, run_ids: Any) -> list[str]:
        return sorted(a for a, r in self.artifacts.items() if r in run_ids)

    def delete(self, run_ids: Any, artifact_ids: Any) -> None:
        for artifact in artifact_ids:
            self.artifacts.pop(artifact, None)
        for run in run_ids:
            self.deleted += [run] if self.runs_.pop(run, None) else []

    def leftovers(self, run_ids: Any) -> dict[str, int]:
        return {"flow_runs": sum(r in self.runs_ for r in run_ids),
                "artifacts": len(self.artifact_ids(run_ids)), "logs": 0}

    def delete_events(self, run_ids: Any, artifact_ids: Any, keep: Any, cluster_wide: bool) -> int | None:
        return 0  # no events in memory

    def leftover_events(self, run_ids: Any, artifact_ids: Any, keep: Any, cluster_wide: bool) -> EventsLeft:
        return EventsLeft(0, None, "embedded", timedelta(days=7))


def _utc(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def test_prefect_history_rolls_then_goes_entirely(tmp_path: Path) -> None:
    rules = load_rules()
    runs = [FlowRunRef("r1", _utc("2022-01-01T10:00")), FlowRunRef("r2", _utc("2022-03-01T23:59")),
            FlowRunRef("r3", _utc("2022-06-01T00:00"))]
    inventory = Inventory({}, (), {}, (), None)
    home = Home(tmp_path)
    settings = make_settings(tmp_path, None, **SCHEDULED)

    def history(as_of: str) -> list[tuple[str, str, tuple[str, ...]]]:
        schedule = plan_schedule(rules, settings, inventory, home, runs, date.fromisoformat(as_of))
        return [("due" if e in schedule.due else "next", f"{e.rule} {e.due_date}",
                 tuple(r for u in e.units for r in u.flow_runs))
                for e in schedule.due + schedule.next if e.category == "prefect_history"]

    # Kept prefect_history_days (90) after the day a run started, then deleted on the next sweep.
    assert history("2022-03-31") == [("next", "prefect-history-rolling 2022-04-01", ("r1",)),
                                     ("next", "prefect-history-final 2024-08-31", ("r1", "r2", "r3"))]
    assert history("2022-04-01") == [("due", "prefect-history-rolling 2022-04-01", ("r1",)),
                                     ("next", "prefect-history-rolling 2022-05-30", ("r2",)),
                                     ("next", "prefect-history-final 2024-08-31", ("r2", "r3"))]
    assert history("2024-08-31") == [("due", "prefect-history-rolling 2022-08-30", ("r1", "r2", "r3"))]


def test_a_key_held_outside_home_is_reported_not_destroyed() -> None:
    inventory = Inventory({}, (), {}, ("pack_passphrase",), None)
    warnings = keys_held_elsewhere(load_rules(), inventory, lambda name: name != "pseudonym_key")
    assert [w.split(" comes from")[0] for w in warnings] == [
        "key extract_passphrase", "key contact_key", "key participant_key", "key transcript_key"]


def test_an_interrupted_item_is_finished_once(study: Runtime) -> None:
    runtime = study
    history = FakeHistory({"r1": _utc("2022-01-01T10:00")}, {"a1": "r1", "a2": "r1"})
    rules = load_rules()
    with runtime.engine.connect() as conn:
        inventory = take_inventory(conn, runtime.home, "pilot", rules)
    schedule = plan_schedule(rules, runtime.settings, inventory, runtime.home,
                             history.runs((), datetime.now(UTC), ()), date(2022, 4, 30))
    sweep = Sweep("s1", date(2022, 4, 30), None)

    def crash(label: str) -> None:
        if label == "contact-store:contact_store:removed":
            raise KeyboardInterrupt  # the process dies between removing the key and the rows

    done = []
    with pytest.raises(KeyboardInterrupt):
        for unit in schedule.units:
            done.append(delete_unit(runtime.engine, runtime.home, "pilot", sweep, unit, history, crash))
    assert [d.unit.target for d in done] == [RAW1, RAW2, "extract_passphrase"]
    files, keys, counts = state(runtime)
    assert "contact_key" not in keys and counts["contacts"] == 2  # half-deleted, with a record
    with runtime.engine.connect() as conn:
        assert [u.target for _, _, u in unfinished_units(conn, "pilot")] == ["contact_store"]
    resumed = resume_units(runtime.engine, runtime.home, "pilot", history, None)
    assert [(d.unit.target, d.counts["rows"], d.counts["keys"], d.resumed) for d in resumed] == [
        ("contact_store", 2, 1, True)]
    rest = [delete_unit(runtime.engine, runtime.home, "pilot", sweep, unit, history)
            for unit in schedule.units[4:]]
    assert [(d.unit.rule, d.unit.target) for d in rest] == [
        ("fieldwork-packs", "fieldwork_pack"), ("prefect-history-rolling", "flow_runs")]
    assert (history.deleted, history.artifacts) == (["r1"], {})
    assert rest[-1].counts["artifacts"] == 2
    assert state(runtime) == expected_state("2022-04-30")
    events = [(e["rule"], e["item"]) for e in audit_events(runtime, DELETION_EVENT)]
    assert events == [("raw-extract", RAW1), ("raw-extract", RAW2),
                      ("raw-extract", "extract_passphrase"), ("contact-store", "contact_store"),
                      ("fieldwork-packs", "fieldwork_pack"), ("prefect-history-rolling", "flow_runs")]


# --- sweeps through the flow -----------------------------------------------------------------

# (as_of, what each sweep deletes: rule, item, rows, files, keys) — just before and on each deadline.
STEPS: list[tuple[str, list[tuple[str, str, int, int, int]]]] = [
    ("2022-02-08", []),
    ("2022-02-09", [("raw-extract", RAW1, 0, 1, 0)]),
    ("2022-03-02", []),
    ("2022-03-03", [("raw-extract", RAW2, 0, 1, 0), ("raw-extract", "extract_passphrase", 0, 0, 1)]),
    ("2022-04-29", []),
    ("2022-04-30", [("contact-store", "contact_store", 2, 0, 1), ("fieldwork-packs", "fieldwork_pack", 0, 1, 1)]),
    ("2024-08-30", []),
    ("2024-08-31", [
        ("survey-responses", "survey_responses", 10, 0, 0),
        ("analysis-store", "analysis_store", 8, 0, 0),
        ("analysis-store", "quarantine/report.csv", 0, 1, 0),
        ("restricted-outputs", "outputs/run1 [restricted]", 0, 1, 0),
        ("publication-outputs",
         "outputs/run1 [publication charts analysis.xlsx report.html manifest.json]", 0, 5, 0),
        ("publication-outputs", "outputs/stray.txt", 0, 1, 0),
        ("keys", "pseudonym_key", 0, 0, 1)]),
]
SURVEY_ROWS = {"topup_runs", "interview_draws", "responses", "response_imports", "contact_attempts", "households",
               "wave_strata", "waves", "do_not_contact"}


def expected_state(as_of: str) -> tuple[set[str], set[str], dict[str, int]]:
    files, keys, counts = set(ALL_FILES), set(ALL_KEYS), dict(ALL_ROWS)
    if as_of >= "2022-02-09":
        files -= {RAW1}
    if as_of >= "2022-03-03":
        files -= {RAW2}
        keys -= {"extract_passphrase"}
    if as_of >= "2022-04-30":
        files -= {PACK}
        keys -= {"contact_key", "pack_passphrase"}
        del counts["contacts"]
    if as_of >= "2024-08-31":
        files, keys, counts = set(), set(), {}
    return files, keys, counts


def _harness_files() -> list[Path]:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    database = Path(url.split(":///", 1)[1]) if ":///" in url else None
    return [prefect_home()] + ([database.parent] if database else [])


def _log_in_a_project_flow(marker: str) -> None:
    """A run of a flow named like this project's ``status`` flow, logging a marker."""
    from prefect import flow, get_run_logger

    @flow(name="status", persist_result=False)
    def leaky_status() -> None:
        get_run_logger().info("planted %s", marker)

    leaky_status()


@pytest.mark.e2e
def test_sweeps_before_and_after_each_deadline(study: Runtime, prefect_harness: None) -> None:
    from flows.retention import retention_flow
    from tasks.core.flow_names import FLOW_NAMES
    from tasks.retention.history import PrefectRunHistory

    assert state(study) == expected_state("2022-01-31")
    sqlite = study.engine.dialect.name == "sqlite"
    everything = [study.home.root.parent] + _harness_files()
    planted = f"ZQXPREFECTLOG{uuid.uuid4().hex}QZ"
    _log_in_a_project_flow(planted)
    deadline = time.monotonic() + 20
    while planted.encode() not in b"".join(p.read_bytes() for p in _harness_files()[-1].glob("*")):
        assert time.monotonic() < deadline, "the planted log line never reached Prefect's database"
        time.sleep(0.2)
    if sqlite:
        assert markers_in(everything) >= {MARKERS[k] for k in ("raw1", "family", "publication", "response")}
    dry = retention_flow(as_of=date(2022, 2, 8), dry_run=True)
    assert (dry["due"], dry["deleted"], dry["verification"]) == ([], [], None)
    assert [(e["rule"], e["due_date"]) for e in dry["next"] if e["category"] != "prefect_history"][:4] == [
        ("raw-extract", "2022-02-09"), ("raw-extract", "2022-03-03"),
        ("contact-store", "2022-04-30"), ("fieldwork-packs", "2022-04-30")]
    for as_of, deletions in STEPS:
        result = retention_flow(as_of=date.fromisoformat(as_of))
        done = [(d["rule"], d["target"], d["rows"], d["files"], d["keys"]) for d in result["deleted"]
                if d["rule"] != "prefect-history-final"]
        assert (as_of, done) == (as_of, deletions)
        assert result["verification"]["ok"], result["verification"]
        assert state(study) == expected_state(as_of)
    assert sum(d["flow_runs"] for d in result["deleted"]) >= len(STEPS)  # earlier sweeps' runs
    survey = next(d for d in result["deleted"] if d["rule"] == "survey-responses")
    assert set(survey["tables"]) == SURVEY_ROWS
    # The audit log keeps one event per deletion and one verification per sweep, and verifies.
    deletions = [(e["rule"], e["item"], e["rows"], e["files"], e["keys"]) for e in
                 audit_events(study, DELETION_EVENT) if e["rule"] != "prefect-history-final"]
    assert deletions == [d for _, step in STEPS for d in step]
    checks = audit_events(study, VERIFICATION_EVENT)
    assert [(c["as_of"], c["ok"], c["rows"], c["files"], c["keys"]) for c in checks] == [
        (as_of, True, 0, 0, 0) for as_of, _ in STEPS]
    from tasks.core.audit import verify_audit

    with study.engine.connect() as conn:
        assert verify_audit(conn).ok
        assert conn.execute(text("SELECT COUNT(*) FROM stored_files WHERE deleted_at IS NULL")).scalar_one() == 0
    # The audit key and the head anchor outlive the final sweep: the record of deletion still verifies.
    assert sorted(p.name for p in study.home.keys.iterdir()) == [AUDIT_KEY]
    assert sorted(p.name for p in (study.home.root / "audit").iterdir()) == ["head.json"]
    final = check_audit_log(study.engine, study.home, prefect=True).as_json()
    entries = len(deletions) + len(checks) + sum(1 for e in audit_events(study, DELETION_EVENT)
                                                 if e["rule"] == "prefect-history-final")
    assert (final["ok"], final["entries"], final["unkeyed_entries"], final["anchors"]) == (
        True, entries, 0, {"file": entries, "prefect_variable": entries})
    # Prefect: no run of this project's flows older than the final sweep; its own run keeps the table.
    final_run = checks[-1]["flow_run_id"]
    assert PrefectRunHistory(tags=study.run_tags).runs(FLOW_NAMES, datetime.now(UTC), [final_run]) == []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{study.cluster}-retention-sweep"])))
    assert [str(a.flow_run_id) for a in artifacts] == [final_run]
    table = json.loads(artifacts[0].data)
    assert [(r["rule"], r["item"], r["rows"], r["files"], r["keys"]) for r in table
            if r["rule"] != "prefect-history-final"] == STEPS[-1][1]
    # Deleted through Prefect's API, then its SQLite file vacuumed: the log line is gone for good.
    assert not any(planted.encode() in p.read_bytes() for p in _harness_files()[-1].glob("*"))
    if sqlite:
        assert markers_in(everything) == set()
        assert not Path(f"{study.engine.url.database}-wal").exists() or \
            Path(f"{study.engine.url.database}-wal").stat().st_size == 0


# --- the command line: JSON, bad input, tamper ---------------------------------------------


@pytest.mark.e2e
def test_dry_run_json_deletes_nothing(sqlite_study: Runtime, prefect_harness: None,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(monkeypatch, capsys, sqlite_study, "retention", "--dry-run", "--as-of",
                       "2022-03-03", "--json")
    result = json.loads(out)
    assert code == 0
    assert list(result) == ["as_of", "dry_run", "due", "next", "unscheduled", "deleted",
                            "verification", "compaction", "warnings"]
    assert (result["as_of"], result["dry_run"], result["deleted"]) == ("2022-03-03", True, [])
    assert [(e["rule"], e["due_date"], [(i["kind"], i["target"], i["files"], i["keys"]) for i in e["items"]])
            for e in result["due"]] == [
        ("raw-extract", "2022-02-09", [("file", RAW1, 1, 0)]),
        ("raw-extract", "2022-03-03", [("file", RAW2, 1, 0), ("key", "extract_passphrase", 0, 1)])]
    assert result["next"][0]["rule"] == "contact-store"
    assert result["next"][0]["items"][0] | {"tables": None} == {
        "kind": "store", "target": "contact_store", "rows": 2, "tables": None, "nulled": {}, "files": 0, "keys": 1,
        "flow_runs": 0, "artifacts": 0}
    assert state(sqlite_study) == expected_state("2022-01-31")
    assert audit_events(sqlite_study, DELETION_EVENT) == []


@pytest.mark.e2e
def test_as_of_before_the_last_sweep_is_refused(sqlite_study: Runtime, prefect_harness: None,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(monkeypatch, capsys, sqlite_study, "retention", "--as-of", "2022-02-09")[0] == 0
    code, out, err = cli(monkeypatch, capsys, sqlite_study, "retention", "--as-of", "2022-02-08")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "before the last retention sweep (as of 2022-02-09)" in err
    assert "nothing was deleted" in err
    assert state(sqlite_study) == expected_state("2022-02-09")
    assert len(audit_events(sqlite_study, DELETION_EVENT)) == 1


@pytest.mark.e2e
def test_a_key_lost_before_its_due_date_stops_the_sweep(sqlite_study: Runtime, prefect_harness: None,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (sqlite_study.home.keys / "contact_key").unlink()
    code, _, err = cli(monkeypatch, capsys, sqlite_study, "retention", "--as-of", "2022-02-09")
    assert code == 1 and err.count("\n") == 1
    assert "key contact_key is missing" in err and "2 row(s)" in err and "nothing was deleted" in err
    files, keys, counts = state(sqlite_study)
    assert RAW1 in files and counts == ALL_ROWS  # the raw file was due, yet nothing went
    assert audit_events(sqlite_study, DELETION_EVENT) == []


@pytest.mark.e2e
@pytest.mark.parametrize(("settings", "message"), [
    ({"survey__fieldwork_end": "2021-12-01"},
     "survey.fieldwork_end 2021-12-01 is before the first extract was ingested (2022-01-10)"),
    ({"retention__publication_date": "2022-03-01"},
     "retention.publication_date 2022-03-01 is before survey.fieldwork_end 2022-03-31"),
])
def test_misconfigured_dates_delete_nothing(sqlite_study: Runtime, prefect_harness: None,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            settings: dict[str, str], message: str) -> None:
    code, _, err = cli(monkeypatch, capsys, sqlite_study, "retention", "--as-of", "2022-03-03",
                       **settings)
    assert code == 1 and err.count("\n") == 1
    assert message in err and "nothing was deleted" in err
    assert state(sqlite_study) == expected_state("2022-01-31")


@pytest.mark.e2e
def test_audit_verify_finds_an_edited_deletion_event(sqlite_study: Runtime, prefect_harness: None,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(monkeypatch, capsys, sqlite_study, "retention", "--as-of", "2022-03-03")[0] == 0
    assert cli(monkeypatch, capsys, sqlite_study, "audit", "verify")[:2] == (
        0, "audit log intact: 4 entries\n")  # three deletions, one verification
    with sqlite_study.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = REPLACE(details, :was, :now) WHERE seq = 2"),
                     {"was": '"files":1', "now": '"files":0'})
    code, out, err = cli(monkeypatch, capsys, sqlite_study, "audit", "verify")
    assert (code, out) == (1, "")
    assert err == "cluster-eval: error: audit log broken: entry 2 was altered after it was written\n"


# --- the whole pipeline, then every deadline -----------------------------------------------

PIPELINE_MARKERS = (b"ZQX", b"zqxmail", b"07700 9")
TRANSPORT = "pipeline transport phrase"  # noqa: S105 - a test extract's passphrase


@pytest.mark.e2e
def test_pipeline_output_is_gone_after_the_last_deadline(
        tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ingest a marker extract, sample, invite, import responses, analyse; then sweep."""
    from aiosmtpd.controller import Controller
    from test_fieldwork import Inbox, free_port

    from tasks.demo.render import write_extract
    from tasks.demo.survey_export import generate_survey_export, survey_export_csv

    today = datetime.now(UTC).date()
    fieldwork_end, published = today + timedelta(days=5), today + timedelta(days=60)
    final = add_months(published, 24)
    home, database = tmp_path / "var", tmp_path / "analysis.db"
    port = free_port()
    env = {"HOME": str(home), "DATABASE_URL": f"sqlite:///{database}",
           "SURVEY__FIELDWORK_END": str(fieldwork_end), "SURVEY__SAMPLE_SIZE": "12",
           "RETENTION__PUBLICATION_DATE": str(published), "SMTP__PORT": str(port),
           "SMTP__RETRIES": "0"}
    for name, value in env.items():
        monkeypatch.setenv(f"CLUSTER_EVAL_{name}", value)
    write_private(home / "keys" / "extract_passphrase", TRANSPORT.encode())
    extract = write_extract(tmp_path / "delivery" / "extract.zip", families=40, seed=5,
                            passphrase=TRANSPORT, markers=True, messy=True, sidecar=True)
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()

    def run(*argv: str) -> dict[str, Any]:
        from cli.main import main

        capsys.readouterr()
        code = main([*argv, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out.splitlines()[-1]) if out.strip() else {}

    try:
        assert run("ingest", str(extract))["status"] == "ingested"
        tokens = [h["token"] for h in run("sample", "--wave", "1")["households"]]
        run("invite", "--wave", "1")
    finally:
        controller.stop()
    responses = tmp_path / "delivery" / "responses.csv"
    responses.write_bytes(survey_export_csv(generate_survey_export(tokens, seed=5, response_rate=0.6)))
    run("responses", "import", str(responses))
    from cli.main import main

    assert main(["analyse", "--out", str(home / "outputs" / "report")]) == 0
    rt = open_runtime(make_settings(home, f"sqlite:///{database}"))
    with rt.engine.connect() as conn:
        contacts = conn.execute(text("SELECT COUNT(*) FROM contacts")).scalar_one()
        packs = conn.execute(text("SELECT COUNT(*) FROM stored_files WHERE category = 'fieldwork_pack'")).scalar_one()
        categories = {r[0] for r in conn.execute(text("SELECT DISTINCT category FROM stored_files"))}
        raw_files = conn.execute(text("SELECT COUNT(*) FROM stored_files WHERE category = 'raw_extract'")).scalar_one()
    assert contacts == 40 and packs >= 1 and raw_files >= 1  # the extract (and its .sha256)
    assert categories == {"raw_extract", "fieldwork_pack", "analysis_output"}

    def sweep(day: date) -> list[tuple[str, str]]:
        result = run("retention", "--as-of", day.isoformat())
        assert result["verification"]["ok"], result["verification"]
        return [(d["rule"], d["kind"]) for d in result["deleted"] if d["category"] != "prefect_history"]

    assert sweep(today + timedelta(days=29)) == []
    assert sweep(today + timedelta(days=30)) == [("raw-extract", "file")] * raw_files + [("raw-extract", "key")]
    assert sweep(today + timedelta(days=34)) == []
    assert sweep(today + timedelta(days=35)) == [("contact-store", "store"), ("fieldwork-packs", "store")]
    files, keys, counts = state(rt)
    assert not any(f.startswith(("raw/", "fieldwork/")) for f in files)
    assert keys == {"pseudonym_key"} and "contacts" not in counts and counts["families"] == 40
    assert sweep(final - timedelta(days=1)) == []
    assert {rule for rule, _ in sweep(final)} == {
        "survey-responses", "analysis-store", "restricted-outputs", "publication-outputs", "keys"}
    assert state(rt) == (set(), set(), {})
    # Only the audit key and the head anchor remain, so the record of deletion still verifies.
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()) == [
        "audit/head.json", "keys/audit_key"]
    assert check_audit_log(rt.engine, rt.home).ok
    leaks = [(p, m) for top in (tmp_path, prefect_home()) for p in top.rglob("*") if p.is_file()
             for m in PIPELINE_MARKERS if m in p.read_bytes()]
    assert leaks == []
    rt.engine.dispose()


@pytest.mark.e2e
def test_a_sweep_sees_only_its_own_clusters_runs(prefect_harness: None) -> None:
    from prefect import flow, tags

    from tasks.core.runtime import run_tags
    from tasks.retention.history import PrefectRunHistory

    @flow(name="status", persist_result=False)
    def some_stage() -> str:
        from prefect.runtime import flow_run

        return str(flow_run.id)

    with tags(*run_tags("north")):
        north = some_stage()
    with tags(*run_tags("south")):
        south = some_stage()
    later = datetime.now(UTC)
    assert {r.id for r in PrefectRunHistory(tags=run_tags("north")).runs(["status"], later, [])} == {north}
    assert {r.id for r in PrefectRunHistory(tags=run_tags("south")).runs(["status"], later, [])} == {south}
