"""Wiring in one place: settings, state folder, database and edge clients for a command.

Flows call ``current_runtime()``; the CLI and tests may install one with ``use_runtime``
(tests swap in fakes, e.g. a mailer). Nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine

from tasks.db import make_engine, migrate
from tasks.home import Home, prepare_home
from tasks.settings import Settings, load_settings


@dataclass(frozen=True)
class Runtime:
    """What every stage needs: validated settings, the state folder and the database."""

    settings: Settings
    home: Home
    engine: Engine
    clients: dict[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        return self.settings.study.cluster

    @property
    def run_tags(self) -> tuple[str, str]:
        """Tags that mark this cluster's flow runs in Prefect."""
        return run_tags(self.cluster)

    def with_client(self, name: str, factory: Callable[..., Any]) -> Runtime:
        """A copy with one edge client (e.g. ``mailer``) replaced."""
        return replace(self, clients={**self.clients, name: factory})


_installed: list[Runtime] = []

RUN_TAG = "cluster-eval"


def run_tags(cluster: str) -> tuple[str, str]:
    """Tags on every flow run of this project for a cluster (retention deletes only these)."""
    return RUN_TAG, f"{RUN_TAG}:cluster:{cluster}"


def open_runtime(settings: Settings | None = None) -> Runtime:
    """Validate settings, create the state folder, connect and migrate the database."""
    settings = settings or load_settings()
    home = prepare_home(settings.home)
    engine = make_engine(settings.database)
    migrate(engine)
    return Runtime(settings=settings, home=home, engine=engine)


def current_runtime() -> Runtime:
    """The installed runtime, or one opened from the environment and TOML file."""
    if not _installed:
        _installed.append(open_runtime())
    return _installed[-1]


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Install a runtime for the duration of a block (CLI command or test)."""
    _installed.append(runtime)
    try:
        yield runtime
    finally:
        _installed.remove(runtime)
        if runtime not in _installed:
            runtime.engine.dispose()
