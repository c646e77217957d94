"""Privacy: after ingesting marker extracts, no marker is anywhere on disk or in the logs.

The synthetic generator's marker mode gives every name, address line, e-mail address,
postcode, child name, case note and goal text a unique string that cannot occur by chance.
Two extracts go through ``cluster-eval ingest`` in-process: one accepted (with quarantined
rows among marker-bearing rows) and one rejected (too many bad rows, as a workbook). Then
every file under CLUSTER_EVAL_HOME, PREFECT_HOME and the Prefect test server's database folder
is read as bytes (SQLite databases, WAL and journal files included), together with the
captured stdout/stderr and log records, and searched for every marker: zero hits. The contact
store holds the contact markers only as AES-GCM ciphertext (it decrypts back to them). The
extract passphrase and both keys must not reach Prefect's storage either.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from conftest import prefect_home
from sqlalchemy import create_engine, text

from cli.main import main
from schemas.codes import CHILDREN, EPISODES, FAMILIES, GOALS, SPECIALIST_REFERRALS
from tasks.core.contacts import load_contacts
from tasks.demo.render import aes_zip, render_members
from tasks.demo.synthetic import MARKER_COLUMNS, generate_tables, marker_strings

PASS = "privacy-test-passphrase-Xq7"  # noqa: S105 - test passphrase
# Shapes of every marker kind (tasks.demo.synthetic), to find them in binary files quickly.
MARKER_SHAPE = re.compile(
    rb"ZQX(?:NAME|CHILD|NOTE|GOAL|ADDR)\d{6,}|zqxmail\d{6,}@example\.invalid"
    rb"|QZ\d{2} \d[ABDEFGHJLNPQRSTUWXYZ]{2}")


def _files(root: Path) -> Iterator[Path]:
    if root.exists():
        yield from (p for p in root.rglob("*") if p.is_file())


def _harness_database_folder() -> Path | None:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    if url.startswith("sqlite"):
        return Path(url.split(":///", 1)[1]).parent
    return None


def _flush_prefect_logs() -> None:
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)


def _hits(blob: bytes, markers: set[bytes]) -> set[bytes]:
    return {m for m in MARKER_SHAPE.findall(blob) if m in markers}


@pytest.mark.e2e
def test_no_marker_reaches_disk_logs_or_prefect(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "var"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.delenv("CLUSTER_EVAL_DATABASE_URL", raising=False)  # SQLite file under home
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)

    # Accepted extract, with failing rows that carry markers: a family with an impossible
    # household size (quarantined with its children, episodes and goals) and two children
    # with an unknown gender.
    tables = generate_tables(80, seed=29, markers=True)
    with_refs = set(tables[SPECIALIST_REFERRALS].get_column("episode_id"))
    lone = (tables[EPISODES].group_by("family_id").agg(pl.col("episode_id"))
            .filter(pl.col("episode_id").list.len() == 1).sort("family_id"))
    bad_family = next(f for f, (e,) in lone.iter_rows() if e not in with_refs)
    tables[FAMILIES] = tables[FAMILIES].with_columns(
        pl.when(pl.col("family_id") == bad_family).then(pl.lit("0"))
        .otherwise(pl.col("household_size")).alias("household_size"))
    tables[CHILDREN] = tables[CHILDREN].with_columns(
        pl.when(pl.int_range(pl.len()).is_in([5, 6])).then(pl.lit("robot"))
        .otherwise(pl.col("gender")).alias("gender"))
    markers = marker_strings(tables)
    assert len(markers) > 600
    accepted = inbox / "accepted.zip"
    accepted.write_bytes(aes_zip(render_members(tables, messy=True, seed=3), PASS))

    # Rejected extract: a workbook whose goals have 10% bad rows.
    rejected_tables = generate_tables(40, seed=31, markers=True)
    goals = rejected_tables[GOALS]
    rejected_tables[GOALS] = goals.with_columns(
        pl.when(pl.int_range(pl.len()) < goals.height // 10 + 1).then(pl.lit("99"))
        .otherwise(pl.col("baseline_score")).alias("baseline_score"))
    markers += marker_strings(rejected_tables)
    rejected = inbox / "rejected.zip"
    rejected.write_bytes(aes_zip(render_members(rejected_tables, fmt="xlsx", messy=True), PASS))

    assert main(["ingest", str(accepted), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "ingested"
    assert first["tables"][FAMILIES]["quarantined"] == 1
    assert first["tables"][CHILDREN]["quarantined"] >= 2
    assert main(["ingest", str(rejected), "--json"]) == 1
    second_out, second_err = capsys.readouterr()
    assert json.loads(second_out)["status"] == "rejected"
    _flush_prefect_logs()

    wanted = {m.encode("utf-8") for m in markers}
    # The markers did reach the contact store, encrypted: it decrypts back to them.
    contact_key = base64.urlsafe_b64decode((home / "keys" / "contact_key").read_bytes().strip())
    engine = create_engine(f"sqlite:///{home / 'cluster-eval.db'}")
    try:
        with engine.connect() as conn:
            records = load_contacts(conn, contact_key, "pilot")
            stored = conn.execute(text("SELECT COUNT(*) FROM quarantined_rows")).scalar_one()
    finally:
        engine.dispose()
    names = {r.lead_carer_name for r in records.values()}
    assert len(records) == 79 and names <= set(markers)
    assert {r.postcode for r in records.values()} <= set(markers)
    assert stored >= 3

    roots = [home, prefect_home()]
    harness = _harness_database_folder()
    if harness is not None:
        roots.append(harness)
    scanned = 0
    leaks: dict[str, set[bytes]] = {}
    for root in roots:
        for path in _files(root):
            found = _hits(path.read_bytes(), wanted)
            scanned += 1
            if found:
                leaks[str(path)] = found
    assert harness is not None and (harness / "prefect-test.db").is_file()
    # The scan sees what the flows logged: the rejection's line (the Failed run's ERROR) reached the server's files.
    logged = b"".join(path.read_bytes() for path in _files(harness))
    assert b"file rejected.zip, table goals: " in logged
    assert (home / "cluster-eval.db").is_file() and scanned > 10
    assert not leaks, leaks

    captured = (second_out + second_err + caplog.text).encode("utf-8")
    captured += "\n".join(r.getMessage() for r in caplog.records).encode("utf-8")
    assert not _hits(captured, wanted)

    # No secret reaches Prefect's storage.
    secrets = [PASS.encode(), (home / "keys" / "pseudonym_key").read_bytes().strip(),
               (home / "keys" / "contact_key").read_bytes().strip()]
    prefect_roots = [prefect_home()] + ([harness] if harness else [])
    for root in prefect_roots:
        for path in _files(root):
            blob = path.read_bytes()
            assert not any(s in blob for s in secrets), path


def test_marker_columns_are_all_kept_out_of_the_analysis_tables() -> None:
    """Every marker-bearing column is contact-store, dropped or never read (schemas.columns)."""
    from schemas.columns import rule

    for table, columns in MARKER_COLUMNS.items():
        for column in columns:
            assert rule(table, column).action in ("contact_store", "drop", "never_read")
