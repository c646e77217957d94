"""The inbox pick-up: which files it takes, atomic claims under a race, take-over, retry, the flow end to end.

The claim logic is plain functions (``tasks.ingest.inbox``), tested on a temporary folder and, for
the race, from several processes at once; the flow runs in-process under the Prefect harness on
synthetic extracts (``tasks.demo.render.write_extract``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings

from tasks.core.runtime import Runtime, open_runtime, use_runtime
from tasks.demo.render import write_extract
from tasks.ingest.inbox import (
    EMPTY_LINE,
    PickUp,
    claim_extracts,
    claim_folder,
    pick_up,
    pick_up_line,
    rejection_line,
    release_claim,
)
from tasks.ingest.steps import claim_owner_finished

PASS = "inbox-test-passphrase-5"  # noqa: S105 - test passphrase
ERROR = 40
ROOT = Path(__file__).resolve().parents[1]
OLD = time.time() - 3600


def _file(path: Path, data: bytes = b"x", *, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def never_finished(run_id: str) -> bool | None:
    return False


# --------------------------------------------------------------------------- which files


def test_claims_settled_extracts_and_leaves_everything_else(tmp_path: Path) -> None:
    inbox, now = tmp_path / "inbox", time.time()
    _file(inbox / "a.zip")
    _file(inbox / "a.zip.sha256")
    _file(inbox / "B.AGE")
    for name in (".hidden.zip", "notes.csv", "orphan.sha256", "sub/c.zip"):
        _file(inbox / name)
    for name in ("d.zip.part", "e.zip.crdownload", "f.tmp"):  # partial downloads
        _file(inbox / name)
    _file(inbox / "fresh.zip", mtime=now - 10)  # still being written
    _file(inbox / "g.zip")
    _file(inbox / "g.zip.sha256", mtime=now - 10)  # its checksum still arriving

    claimed = claim_extracts(inbox, "run-1", 60, now, never_finished)

    folder = inbox / ".claimed" / "run-1"
    assert claimed.files == (folder / "B.AGE", folder / "a.zip")
    assert (claimed.taken, claimed.waiting, claimed.held) == (0, 5, 0)
    assert _names(folder) == ["B.AGE", "a.zip", "a.zip.sha256"]
    assert _names(inbox) == [".claimed", ".hidden.zip", "d.zip.part", "e.zip.crdownload", "f.tmp", "fresh.zip",
                             "g.zip", "g.zip.sha256", "notes.csv", "orphan.sha256", "sub"]
    for private in (folder, folder.parent):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    # With no settle time everything named like an extract is taken at once.
    assert len(claim_extracts(inbox, "run-2", 0, now, never_finished).files) == 2


def test_ended_runs_claims_are_taken_over_and_running_ones_held(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    _file(inbox / ".claimed" / "crashed" / "x.zip")
    _file(inbox / ".claimed" / "crashed" / "x.zip.sha256")
    _file(inbox / ".claimed" / "running" / "y.zip")
    _file(inbox / ".claimed" / "unknown" / "z.zip")
    states = {"crashed": True, "running": False, "unknown": None}

    claimed = claim_extracts(inbox, "me", 0, time.time(), states.__getitem__)

    mine = inbox / ".claimed" / "me"
    assert claimed.files == (mine / "x.zip",) and (claimed.held, claimed.taken) == (2, 0)
    assert _names(mine) == ["x.zip", "x.zip.sha256"]
    assert _names(inbox / ".claimed") == ["me", "running", "unknown"]  # the crashed run's folder is gone


def test_a_retry_finishes_its_own_claims_and_takes_nothing_new(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    _file(inbox / ".claimed" / "me" / "first.zip")
    _file(inbox / ".claimed" / "crashed" / "other.zip")
    _file(inbox / "new.zip")
    claimed = claim_extracts(inbox, "me", 0, time.time(), lambda _: True, retry=True)
    assert claimed.files == (inbox / ".claimed" / "me" / "first.zip",)
    assert (inbox / "new.zip").exists() and (inbox / ".claimed" / "crashed" / "other.zip").exists()
    # The first attempt's claims come first on a fresh run too, then the ended run's, then new files.
    claimed = claim_extracts(inbox, "me", 0, time.time(), lambda _: True)
    assert [p.name for p in claimed.files] == ["first.zip", "other.zip", "new.zip"]


def test_release_deletes_duplicates_and_puts_left_files_back(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    folder = claim_folder(inbox, "me")
    dup, kept, clash = (_file(folder / n) for n in ("dup.zip", "kept.zip", "clash.zip"))
    for path in (dup, kept):
        _file(path.with_name(path.name + ".sha256"))
    _file(inbox / "clash.zip", b"a newer delivery")
    release_claim(dup, "duplicate", inbox)
    release_claim(kept, "rejected", inbox)  # e.g. the passphrase is not configured: left in place
    release_claim(clash, "rejected", inbox)
    release_claim(folder / "ingested.zip", "ingested", inbox)  # moved to HOME/raw by the ingest
    assert _names(folder) == ["clash.zip"]
    assert _names(inbox) == [".claimed", "clash.zip", "kept.zip", "kept.zip.sha256"]
    assert (inbox / "clash.zip").read_bytes() == b"a newer delivery"


# --------------------------------------------------------------------------- races between processes

RACER = """
import sys, time
from pathlib import Path
from tasks.ingest.inbox import claim_extracts, claim_file, claim_folder
inbox, run_id, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
folder = claim_folder(inbox, run_id) if how == "file" else None
(inbox.parent / "ready" / run_id).touch()
while not (inbox.parent / "go").exists():
    time.sleep(0.001)
if how == "file":
    print("won" if claim_file(inbox / "x.zip", folder) else "lost")
else:
    claimed = claim_extracts(inbox, run_id, 0, time.time(), lambda _: None)
    print(len(claimed.files), claimed.taken, claimed.held)
"""


def _race(tmp_path: Path, how: str, racers: int = 6) -> tuple[list[str], Path]:
    inbox = tmp_path / "inbox"
    _file(inbox / "x.zip", b"the extract")
    _file(inbox / "x.zip.sha256", b"its checksum")
    (tmp_path / "ready").mkdir()
    processes = [subprocess.Popen([sys.executable, "-c", RACER, str(inbox), f"run-{i}", how],  # noqa: S603
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True) for i in range(racers)]
    try:
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "ready").iterdir())) < racers:
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in processes)
    return outputs, inbox


def test_racing_claims_of_one_file_exactly_one_wins(tmp_path: Path) -> None:
    outputs, inbox = _race(tmp_path, "file")
    assert sorted(outputs) == ["lost"] * 5 + ["won"]
    [winner] = [f"run-{i}" for i, out in enumerate(outputs) if out == "won"]
    assert _names(inbox / ".claimed" / winner) == ["x.zip", "x.zip.sha256"]
    assert (inbox / ".claimed" / winner / "x.zip").read_bytes() == b"the extract"
    assert sum(len(_names(f)) for f in (inbox / ".claimed").iterdir()) == 2 and not (inbox / "x.zip").exists()


def test_racing_pick_ups_claim_a_file_once_and_the_others_report_it(tmp_path: Path) -> None:
    outputs, inbox = _race(tmp_path, "pick-up")
    counts = sorted(tuple(int(n) for n in out.split()) for out in outputs)
    # One run claimed it; each other run lost the rename (a duplicate, taken by another run) or
    # came after the claim and saw it held in the winner's claim folder.
    assert counts[-1] == (1, 0, 0)
    assert all(files == 0 and taken + held == 1 for files, taken, held in counts[:-1])
    assert sum(len(_names(f)) for f in (inbox / ".claimed").iterdir()) == 2


# --------------------------------------------------------------------------- the pick-up, plain


def test_pick_up_counts_and_lines(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for name in ("a.zip", "b.zip", "c.zip", "d.age"):
        _file(inbox / name)
    _file(inbox / "e.zip.part")
    outcomes = {"a.zip": ("ingested", None), "b.zip": ("rejected", "file b.zip: bad"),
                "c.zip": ("duplicate", None), "d.age": ("rejected", "file d.age: worse")}

    def ingest(path: Path) -> tuple[str, str | None]:
        if outcomes[path.name][0] != "duplicate":  # ingested or quarantined: the ingest moved it
            path.unlink()
        return outcomes[path.name]

    counts = pick_up(inbox, "me", 0, time.time(), never_finished, ingest)
    assert counts == PickUp(ingested=1, duplicate=1, rejected=2, waiting=1, first_rejection="file b.zip: bad")
    assert counts.found == 5
    assert _names(inbox) == [".claimed", "e.zip.part"] and _names(inbox / ".claimed") == []
    assert pick_up_line(counts) == "found 5: 1 ingested, 1 duplicate, 2 rejected, 1 waiting"
    assert rejection_line(counts) == ("2 extracts rejected (found 5: 1 ingested, 1 duplicate, 2 rejected, "
                                      "1 waiting); the first: file b.zip: bad")
    assert pick_up_line(PickUp(held=2)) == ("found 0: 0 ingested, 0 duplicate, 0 rejected, 0 waiting; "
                                            "2 held in claim folders of other runs (running, or state unknown)")


def test_an_unexpected_error_leaves_the_rest_claimed_for_the_retry(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for name in ("a.zip", "b.zip", "c.zip"):
        _file(inbox / name)
    seen: list[str] = []

    def ingest(path: Path) -> tuple[str, str | None]:
        seen.append(path.name)
        if path.name == "b.zip" and seen.count("b.zip") == 1:
            raise RuntimeError("database went away")
        path.unlink()
        return "ingested", None

    with pytest.raises(RuntimeError):
        pick_up(inbox, "me", 0, time.time(), never_finished, ingest)
    assert _names(inbox / ".claimed" / "me") == ["b.zip", "c.zip"]
    _file(inbox / "new.zip")
    counts = pick_up(inbox, "me", 0, time.time(), never_finished, ingest, retry=True)
    assert counts == PickUp(ingested=2) and seen == ["a.zip", "b.zip", "b.zip", "c.zip"]
    assert _names(inbox) == [".claimed", "new.zip"]


# --------------------------------------------------------------------------- the flow, in-process


@pytest.fixture
def study(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime on a cluster of its own (its runs are found by tag), settle time 0."""
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    settings = make_settings(tmp_path / "var", sqlite_url, study={"cluster": f"inbox{uuid.uuid4().hex[:8]}"},
                             ingest={"inbox_settle_seconds": 0})
    rt = open_runtime(settings)
    with use_runtime(rt):
        yield rt


def _child_runs(parent: Any) -> list[Any]:
    """The ingest runs started by a pick-up run, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC)


def _logs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


def _run(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


@pytest.mark.e2e
def test_pick_up_flow_ingests_rejects_waits_and_empties(prefect_harness: None, study: Runtime) -> None:
    from flows.inbox import InboxRejected, ingest_inbox_flow

    inbox = study.home.inbox
    good = write_extract(inbox / "good.zip", families=30, seed=7, passphrase=PASS, sidecar=True)
    good_bytes = good.read_bytes()
    sha = hashlib.sha256(good_bytes).hexdigest()
    _file(inbox / "corrupt.zip", b"this is not an encrypted archive")
    _file(inbox / "next.zip.crdownload", b"half a download")

    state = ingest_inbox_flow(return_state=True)

    run_id = state.state_details.flow_run_id
    assert state.is_failed()
    assert re.fullmatch(r"1 extract rejected \(found 3: 1 ingested, 0 duplicate, 1 rejected, 1 waiting\); "
                        r"the first: file corrupt\.zip: not an AES-256 ZIP or age file .+",
                        state.message), state.message
    with pytest.raises(InboxRejected) as rejected:
        state.result()
    logs = _logs(run_id)
    assert not [log.message for log in logs if "Traceback" in log.message]
    assert [log.message for log in logs if log.level >= ERROR and log.task_run_id is None] == [state.message]
    assert rejected.value.result == {"found": 3, "ingested": 1, "duplicate": 0, "rejected": 1, "waiting": 1,
                                     "held": 0, "first_rejection": state.message.split("; the first: ", 1)[1]}
    assert re.fullmatch(r"inbox pick-up \d{4}-\d\d-\d\d \d\d:\d\d", _run(run_id).name)
    children = _child_runs(run_id)
    assert sorted((r.name, r.state.type.value) for r in children) == sorted(
        [(f"ingest {sha[:8]}", "COMPLETED"),
         (f"ingest {hashlib.sha256(b'this is not an encrypted archive').hexdigest()[:8]}", "FAILED")])
    assert _names(inbox) == [".claimed", "next.zip.crdownload"] and _names(inbox / ".claimed") == []
    assert _names(study.home.raw) == [f"{sha[:12]}-good.zip", f"{sha[:12]}-good.zip.sha256"]
    assert [p.name for p in study.home.quarantine.iterdir() if p.name.endswith("-corrupt.zip")]

    # The partial download is still waiting; then nothing; then the same bytes again are a duplicate.
    state = ingest_inbox_flow(return_state=True)
    assert state.is_completed() and state.message == "found 1: 0 ingested, 0 duplicate, 0 rejected, 1 waiting"
    (inbox / "next.zip.crdownload").unlink()
    state = ingest_inbox_flow(return_state=True)
    assert state.is_completed() and state.message == EMPTY_LINE
    _file(inbox / "again.zip", good_bytes)
    state = ingest_inbox_flow(return_state=True)
    assert state.is_completed() and state.message == "found 1: 0 ingested, 1 duplicate, 0 rejected, 0 waiting"
    assert _names(inbox) == [".claimed"]  # the duplicate copy is deleted: its bytes are in HOME/raw


@pytest.mark.e2e
def test_retry_of_a_pick_up_finishes_the_files_it_had_claimed(
    prefect_harness: None, study: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import AwaitingRetry

    import flows.inbox

    inbox = study.home.inbox
    first = write_extract(inbox / "a.zip", families=30, seed=8, passphrase=PASS)
    second = write_extract(inbox / "b.zip", families=30, seed=9, passphrase=PASS)
    shas = [hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (first, second)]
    real_ingest = flows.inbox._ingest

    def failing_on_b(path: Path) -> tuple[str, str | None]:
        if path.name == "b.zip":
            raise RuntimeError("the database went away")
        return real_ingest(path)

    monkeypatch.setattr(flows.inbox, "_ingest", failing_on_b)
    state = flows.inbox.ingest_inbox_flow(return_state=True)
    run_id = state.state_details.flow_run_id
    assert state.is_failed()
    assert _names(inbox / ".claimed" / str(run_id)) == ["b.zip"]
    monkeypatch.setattr(flows.inbox, "_ingest", real_ingest)
    write_extract(inbox / "c.zip", families=30, seed=10, passphrase=PASS)  # arrives after the first attempt

    with get_client(sync_client=True) as client:  # what the UI's Retry does
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
        flow_run = client.read_flow_run(run_id)
    retried = run_flow_sync(flows.inbox.ingest_inbox_flow, flow_run=flow_run, return_type="state")

    assert retried.is_completed(), retried.message
    assert retried.message == "found 1: 1 ingested, 0 duplicate, 0 rejected, 0 waiting"
    assert _run(run_id).run_count == 2
    assert _names(study.home.raw) == sorted([f"{shas[0]}-a.zip", f"{shas[1]}-b.zip"])
    assert _names(inbox) == [".claimed", "c.zip"] and _names(inbox / ".claimed") == []
    # How a later pick-up judges a claim folder: by its run's state, "cannot tell" for unknown runs.
    assert claim_owner_finished(str(run_id)) is True
    assert claim_owner_finished(str(uuid.uuid4())) is None and claim_owner_finished("not-a-run") is None
