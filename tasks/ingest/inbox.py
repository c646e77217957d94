"""The inbox pick-up as plain functions: find settled extracts, claim each atomically, ingest, tidy.

Egress downloads land in ``HOME/inbox``. A pick-up run takes an extract (``*.zip``, ``*.age``, with
its optional ``<name>.sha256``) only once neither has changed for ``ingest.inbox_settle_seconds``;
dotfiles, sub-folders and partial downloads (``.part``, ``.crdownload``, ``.tmp``) are never touched.

Claiming is one ``os.rename`` of the extract into the run's own claim folder
``HOME/inbox/.claimed/<flow run id>/`` (same filesystem, 0700): of two workers racing on one file
exactly one rename succeeds, and the other counts the file as a duplicate (taken by another run).
A retry of the same run (same flow run id) only finishes what its folder still holds. Claim
folders of runs that have ended (e.g. crashed) are taken over by the next pick-up, again by
rename; those of runs still running, or whose state cannot be read, are left alone and reported
as ``held``.

After its ingest, a claimed file is gone (ingested: moved to HOME/raw; rejected: quarantined), or
it is a duplicate copy of bytes already stored (deleted), or the ingest left it in place (a secret
is not configured: it goes back to the inbox for the next pick-up).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

EXTRACT_SUFFIXES = (".zip", ".age")
PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp")
SIDECAR_SUFFIX = ".sha256"
CLAIMS_FOLDER = ".claimed"
EMPTY_LINE = "inbox empty: nothing to do"

T = TypeVar("T")
OwnerFinished = Callable[[str], "bool | None"]
IngestOne = Callable[[Path], "tuple[str, str | None]"]


class StageRunner(Protocol):
    """Runs one named step (directly, or as a Prefect task)."""

    def __call__(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def run_step(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a step directly (no orchestration)."""
    return fn(*args, **kwargs)


# --------------------------------------------------------------------------- files


def sidecar_of(path: Path) -> Path:
    """The optional checksum file that travels with an extract."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def is_extract(path: Path) -> bool:
    """A visible regular file named like an extract (``*.zip``, ``*.age``, any case)."""
    return (not path.name.startswith(".") and path.suffix.lower() in EXTRACT_SUFFIXES
            and path.is_file() and not path.is_symlink())


def is_partial(path: Path) -> bool:
    """A visible file a browser or Egress is still downloading."""
    return not path.name.startswith(".") and path.suffix.lower() in PARTIAL_SUFFIXES and path.is_file()


def settled(path: Path, settle_seconds: float, now: float) -> bool:
    """True when the file and its sidecar (if any) have not changed for ``settle_seconds``."""
    if settle_seconds <= 0:
        return True
    for candidate in (path, sidecar_of(path)):
        try:
            if now - candidate.stat().st_mtime < settle_seconds:
                return False
        except FileNotFoundError:
            continue
    return True


def claims_root(inbox: Path) -> Path:
    """Where every run's claim folder is: ``HOME/inbox/.claimed``."""
    return inbox / CLAIMS_FOLDER


def claim_folder(inbox: Path, run_id: str) -> Path:
    """This run's claim folder (made 0700, as are ``.claimed`` and a missing inbox)."""
    folder = claims_root(inbox) / run_id
    inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in (claims_root(inbox), folder):
        part.mkdir(mode=0o700, exist_ok=True)
        part.chmod(0o700)
    return folder


def claim_file(path: Path, folder: Path) -> Path | None:
    """Move an extract, then its sidecar, into ``folder`` by rename; None when another run took it first.

    The rename of the extract is the claim: atomic on one filesystem, so exactly one of several
    runs racing on a file gets it. The caller checks that ``folder`` has no file of that name.
    """
    target = folder / path.name
    try:
        os.rename(path, target)
    except FileNotFoundError:
        if path.exists() and not folder.is_dir():  # a sweep of ended runs' claims pruned our empty folder
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return claim_file(path, folder)
        return None
    with contextlib.suppress(FileNotFoundError):
        os.rename(sidecar_of(path), sidecar_of(target))
    return target


def _extracts_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_extract(p)) if folder.is_dir() else []


def _prune(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


# --------------------------------------------------------------------------- claiming


@dataclass(frozen=True)
class Claimed:
    """What a pick-up claimed, and what it saw but did not take."""

    files: tuple[Path, ...] = ()  # in this run's claim folder, to ingest (earlier claims first)
    taken: int = 0  # another run claimed it first: reported as duplicates
    waiting: int = 0  # partial downloads, files still changing: a later pick-up takes them
    held: int = 0  # in claim folders of runs still running or whose state cannot be read


def take_over_ended_claims(inbox: Path, folder: Path, owner_finished: OwnerFinished) -> Claimed:
    """Move the extracts of other runs' claim folders into ours when those runs have ended."""
    files: list[Path] = []
    taken = held = 0
    root = claims_root(inbox)
    others = sorted(p for p in root.iterdir() if p.is_dir() and p != folder) if root.is_dir() else []
    for other in others:
        extracts = _extracts_in(other)
        if not owner_finished(other.name):
            held += len(extracts)
            continue
        for path in extracts:
            if (folder / path.name).exists():
                held += 1
            elif (claimed := claim_file(path, folder)) is None:
                taken += 1
            else:
                files.append(claimed)
        _prune(other)
    return Claimed(files=tuple(files), taken=taken, held=held)


def claim_extracts(inbox: Path, run_id: str, settle_seconds: float, now: float,
                   owner_finished: OwnerFinished, *, retry: bool = False) -> Claimed:
    """Claim what this run should ingest: its own earlier claims, ended runs' claims, new settled files.

    A retry (``retry``: the same flow run again) only finishes the files its first attempt claimed.
    """
    folder = claim_folder(inbox, run_id)
    own = _extracts_in(folder)
    if retry:
        return Claimed(files=tuple(own))
    files: list[Path] = []
    taken = waiting = 0
    # The inbox before the claim folders: a file another run claims while we look is then either
    # still in the inbox (we lose its rename: taken) or already in that run's folder (held).
    for path in sorted(inbox.iterdir()):
        if is_partial(path):
            waiting += 1
        elif not is_extract(path):
            continue
        elif not settled(path, settle_seconds, now) or (folder / path.name).exists():
            waiting += 1
        elif (claimed := claim_file(path, folder)) is None:
            taken += 1
        else:
            files.append(claimed)
    recovered = take_over_ended_claims(inbox, folder, owner_finished)
    return Claimed(files=(*own, *recovered.files, *files), taken=taken + recovered.taken, waiting=waiting,
                   held=recovered.held)


def release_claim(path: Path, status: str, inbox: Path) -> None:
    """After its ingest: delete a duplicate copy; put a file the ingest left in place back in the inbox."""
    if not path.exists():  # ingested (moved to HOME/raw) or quarantined
        return
    sidecar = sidecar_of(path)
    if status == "duplicate":  # the same bytes are already stored: this copy is not needed
        path.unlink()
        sidecar.unlink(missing_ok=True)
        return
    back = inbox / path.name
    if back.exists():  # a new file of that name arrived: keep the claim; a later pick-up takes it over
        return
    os.rename(path, back)
    with contextlib.suppress(FileNotFoundError):
        os.rename(sidecar, sidecar_of(back))


# --------------------------------------------------------------------------- the pick-up


@dataclass(frozen=True)
class PickUp:
    """Counts of one pick-up; ``first_rejection`` is the first rejected extract's one line."""

    ingested: int = 0
    duplicate: int = 0
    rejected: int = 0
    waiting: int = 0
    held: int = 0
    first_rejection: str | None = None

    @property
    def found(self) -> int:
        """Extracts this run saw in the inbox or took from claim folders (held ones excluded)."""
        return self.ingested + self.duplicate + self.rejected + self.waiting

    def counted(self, status: str, error: str | None) -> PickUp:
        """These counts with one more ingest outcome."""
        if status == "ingested":
            return replace(self, ingested=self.ingested + 1)
        if status == "duplicate":
            return replace(self, duplicate=self.duplicate + 1)
        return replace(self, rejected=self.rejected + 1, first_rejection=self.first_rejection or error)

    def to_json(self) -> dict[str, Any]:
        """The pick-up's result (counts and the first rejection's line only)."""
        return {"found": self.found, "ingested": self.ingested, "duplicate": self.duplicate,
                "rejected": self.rejected, "waiting": self.waiting, "held": self.held,
                "first_rejection": self.first_rejection}


def pick_up(inbox: Path, run_id: str, settle_seconds: float, now: float, owner_finished: OwnerFinished,
            ingest: IngestOne, *, retry: bool = False, stage: StageRunner = run_step) -> PickUp:
    """Claim, then ingest each claimed extract in turn (``ingest`` returns its status and error line).

    An unexpected error in an ingest stops the pick-up with the remaining files still claimed, so
    a retry of the run (``retry``) finishes them, and claims nothing new.
    """
    claimed = stage("claim new extracts", claim_extracts, inbox, run_id, settle_seconds, now, owner_finished,
                    retry=retry)
    counts = PickUp(duplicate=claimed.taken, waiting=claimed.waiting, held=claimed.held)
    for path in claimed.files:
        if not path.exists():  # an ended run's retry and a take-over raced on it: the other run has it
            counts = counts.counted("duplicate", None)
            continue
        status, error = ingest(path)
        release_claim(path, status, inbox)
        counts = counts.counted(status, error)
    _prune(claims_root(inbox) / run_id)
    return counts


def pick_up_line(counts: PickUp) -> str:
    """One line, counts only: the pick-up's summary."""
    line = (f"found {counts.found}: {counts.ingested} ingested, {counts.duplicate} duplicate, "
            f"{counts.rejected} rejected, {counts.waiting} waiting")
    if counts.held:
        line += f"; {counts.held} held in claim folders of other runs (running, or state unknown)"
    return line


def rejection_line(counts: PickUp) -> str:
    """The Failed run's one line: how many extracts were rejected and the first reason."""
    noun = "extract" if counts.rejected == 1 else "extracts"
    return f"{counts.rejected} {noun} rejected ({pick_up_line(counts)}); the first: {counts.first_rejection}"
