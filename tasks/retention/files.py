"""Files and key files under the state folder: list, show, delete, prune, crypto-shred."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tasks.core.home import Home


def resolve(home: Home, path: str) -> Path:
    """A registered or listed path: absolute as given, else relative to the state folder."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else home.root / candidate


def shown(home: Home, path: str | Path) -> str:
    """A path as listed: relative to the state folder when inside it."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(home.root.resolve()).as_posix()
        except ValueError:
            return str(candidate)
    return candidate.as_posix()


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def delete_file(path: Path, stop: Path | None = None) -> bool:
    """Delete one whole file (its content is encrypted at rest); prune empty folders below stop."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_folder(path.parent)
    if stop is not None:
        _remove_empty_parents(path.parent, stop)
    return True


def prune_folder(folder: Path, stop: Path | None = None) -> None:
    """Remove a folder if nothing but empty folders is left in it, and empty parents below stop."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for top, dirs, _names in os.walk(folder, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(top) / name).rmdir()
    try:
        folder.rmdir()
    except OSError:
        return
    if stop is not None:
        _remove_empty_parents(folder.parent, stop)


def prune_stop(home: Home, path: str) -> Path | None:
    """Where pruning emptied folders stops: the state folder's first level (raw, outputs, ...)."""
    relative = Path(path)
    return None if relative.is_absolute() else home.root / relative.parts[0]


def shred_key(home: Home, name: str) -> bool:
    """Crypto-shred: overwrite the key file ``HOME/keys/<name>`` with random bytes, then delete it."""
    path = home.keys / name
    if not path.is_file() or path.is_symlink():
        return delete_file(path) if path.is_symlink() else False
    size = max(path.stat().st_size, 64)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    return delete_file(path)


def walk_files(folder: Path) -> list[Path]:
    """Every file and symlinked folder below a folder (links are listed, never followed), sorted."""
    found: list[Path] = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        found.extend(Path(top) / n for n in names)
        found.extend(Path(top) / d for d in dirs if (Path(top) / d).is_symlink())
    return sorted(found)


def tree(top: Path) -> list[Path]:
    """The files under a folder, or the path itself when it is a file or a link."""
    if top.is_dir() and not top.is_symlink():
        return walk_files(top)
    return [top] if top.exists() or top.is_symlink() else []


def key_files(home: Home) -> tuple[str, ...]:
    """Names of the key files in ``HOME/keys``, sorted."""
    return tuple(sorted(p.name for p in home.keys.iterdir())) if home.keys.is_dir() else ()
