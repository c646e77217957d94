"""The state folder ``CLUSTER_EVAL_HOME``: created 0700, key files 0600."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigError

DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class Home:
    """Named sub-folders of the state folder."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def packs(self) -> Path:
        return self.root / "fieldwork"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def inbox(self) -> Path:
        """Where Egress downloads land; the ``ingest-inbox`` flow picks new extracts up from here."""
        return self.root / "inbox"

    @property
    def qualitative_raw(self) -> Path:
        """Encrypted qualitative deliveries (register, transcripts) kept until retention."""
        return self.root / "raw" / "qualitative"

    @property
    def restricted(self) -> Path:
        """Restricted working files of the research team (e.g. de-identification review lists)."""
        return self.root / "restricted"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    def folders(self) -> tuple[Path, ...]:
        """Every folder the pipeline writes to (the qualitative ones are made on first use, 0700)."""
        return (self.root, self.raw, self.quarantine, self.keys, self.packs, self.outputs, self.inbox)


def prepare_home(root: Path) -> Home:
    """Create the state folders with mode 0700, or raise one-line ConfigError.

    Also sets the process umask to 077 so every file the pipeline creates (database,
    Prefect's database, outputs) is readable by its owner only.
    """
    os.umask(0o077)
    home = Home(root.resolve())
    try:
        for folder in home.folders():
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(folder, DIR_MODE)
        (home.root / "prefect").mkdir(mode=DIR_MODE, exist_ok=True)
        # A unique probe per process: concurrent first runs on a fresh home must not race.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=home.root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"CLUSTER_EVAL_HOME {root} is not writable ({exc.strerror}); "
            "point CLUSTER_EVAL_HOME at a folder you can write"
        ) from None
    return home


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner (0600), created atomically."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:  # a buffered write() loops until every byte is written
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: no partial temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise


def create_private_exclusive(path: Path, data: bytes) -> bool:
    """Create a 0600 file only if none exists (atomic); False when another process won."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if the path exists: the first writer wins, whole
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
