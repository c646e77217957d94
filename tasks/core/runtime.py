"""Wiring in one place: settings, state folder, database, secrets and edge clients of a process.

``open_runtime`` builds a ``Runtime`` once where the process starts (the CLI, a served
deployment, a test); flows read it with ``current_runtime()``. Its edges are typed fields that
tests replace with ``dataclasses.replace`` (e.g. a fake mailer or run history). Nothing else
reads the environment: settings come from the TOML file and the environment through
``load_settings``, secrets through the ``Secrets`` snapshot taken here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from tasks.core.audit import bind_audit_key
from tasks.core.db import make_engine, migrate
from tasks.core.home import Home, prepare_home
from tasks.core.secrets import Secrets, secret_environment
from tasks.core.settings import Settings, load_settings

if TYPE_CHECKING:  # the edges' interfaces live with the stages that use them
    from tasks.retention.history import RunHistory
    from tasks.survey.mailer import Mailer

#: Called with a step label before each retention deletion step (fault-injection tests only).
Checkpoint = Callable[[str], None]

RUN_TAG = "cluster-eval"


def run_tags(cluster: str) -> tuple[str, str]:
    """Tags on every flow run of this project for a cluster (retention deletes only these)."""
    return RUN_TAG, f"{RUN_TAG}:cluster:{cluster}"


@dataclass(frozen=True)
class Runtime:
    """What every stage needs: settings, state folder, database, secrets and edge clients."""

    settings: Settings
    home: Home
    engine: Engine
    secrets: Secrets
    mailer: Mailer
    run_history: RunHistory
    checkpoint: Checkpoint | None = None

    @property
    def cluster(self) -> str:
        return self.settings.study.cluster

    @property
    def run_tags(self) -> tuple[str, str]:
        """Tags that mark this cluster's flow runs in Prefect."""
        return run_tags(self.cluster)


_installed: list[Runtime] = []


def open_runtime(settings: Settings | None = None, environ: Mapping[str, str] | None = None,
                 checkpoint: Checkpoint | None = None) -> Runtime:
    """Validate settings, create the state folder, connect and migrate the database, wire the edges."""
    from tasks.retention.history import PrefectRunHistory
    from tasks.survey.mailer import SmtpMailer

    settings = settings or load_settings(environ)
    home = prepare_home(settings.home)
    engine = make_engine(settings.database)
    migrate(engine)
    secrets = Secrets(home, secret_environment(environ))
    bind_audit_key(engine, secrets)  # the audit key is created on the first append
    return Runtime(settings=settings, home=home, engine=engine, secrets=secrets,
                   mailer=SmtpMailer(settings.smtp, secrets),
                   run_history=PrefectRunHistory(tags=run_tags(settings.study.cluster)),
                   checkpoint=checkpoint)


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
