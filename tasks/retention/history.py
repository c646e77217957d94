"""Prefect's record of this project's flow runs, behind a small interface (tests use a fake)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, bindparam, create_engine, text
from sqlalchemy.engine import make_url

T = TypeVar("T")


@dataclass(frozen=True)
class FlowRunRef:
    """A Prefect flow run of this project: its id and when it started."""

    id: str
    start_time: datetime


@dataclass(frozen=True)
class EventsLeft:
    """Prefect events of this project's cluster that still exist after a sweep, and when they go.

    ``server`` is "embedded" (the ephemeral server this process started, whose database the sweep
    deletes from itself) or "external" (a server in PREFECT_API_URL: its API cannot delete events;
    its db_vacuum service trims them ``retention`` after they occurred, checked every ``vacuum``).
    """

    remaining: int
    newest: datetime | None
    server: str
    retention: timedelta
    vacuum: timedelta = timedelta(hours=1)
    retention_assumed: bool = False

    @property
    def trimmed_by(self) -> date | None:
        """The UTC day by which Prefect has trimmed the newest remaining event (None: none remain)."""
        if not self.remaining or self.newest is None:
            return None
        return (self.newest.astimezone(UTC) + self.retention + self.vacuum).date()

    def view(self) -> dict[str, Any]:
        """The JSON view (counts and dates only)."""
        trimmed = self.trimmed_by
        return {
            "remaining": self.remaining,
            "trimmed_by": trimmed.isoformat() if trimmed else None,
            "server": self.server,
            "retention_days": round(self.retention / timedelta(days=1), 2),
            "retention_assumed": self.retention_assumed,
        }


class RunHistory(Protocol):
    """Prefect's record of this project's flow runs."""

    def runs(
        self, flow_names: Sequence[str], before: datetime, exclude: Sequence[str]
    ) -> list[FlowRunRef]:
        """Flow runs of these flows that started before ``before`` (all states), but exclude."""

    def artifact_ids(self, run_ids: Sequence[str]) -> list[str]:
        """Artifacts attached to these flow runs (or their task runs)."""

    def delete(self, run_ids: Sequence[str], artifact_ids: Sequence[str]) -> None:
        """Delete artifacts, then flow runs (task runs, states and logs go with them)."""

    def leftovers(self, run_ids: Sequence[str]) -> dict[str, int]:
        """How many of these runs, their artifacts and their logs still exist."""

    def delete_events(
        self, run_ids: Sequence[str], artifact_ids: Sequence[str], keep: Sequence[str], cluster_wide: bool
    ) -> int | None:
        """Delete the events of these runs and artifacts (and, cluster_wide, every event of this
        cluster) except those of the ``keep`` runs; how many, or None when the server is external."""

    def leftover_events(
        self, run_ids: Sequence[str], artifact_ids: Sequence[str], keep: Sequence[str], cluster_wide: bool
    ) -> EventsLeft:
        """The events delete_events covers that still exist, read through the Prefect API."""


def _chunks(items: Sequence[T], size: int = 100) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class PrefectRunHistory:
    """RunHistory over the Prefect API (``get_client``): the server in PREFECT_API_URL or ephemeral.

    With ``tags``, only flow runs carrying all of them count (``tasks.core.runtime.run_tags``: this
    project and cluster), so a sweep never touches another cluster's or project's runs.
    """

    page = 200

    def __init__(self, tags: Sequence[str] = ()) -> None:
        self.tags = tuple(tags)

    def runs(
        self, flow_names: Sequence[str], before: datetime, exclude: Sequence[str]
    ) -> list[FlowRunRef]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterStartTime,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.sorting import FlowRunSort

        run_filter = FlowRunFilter(
            start_time=FlowRunFilterStartTime(before_=before, is_null_=False),
            tags=FlowRunFilterTags(all_=list(self.tags)) if self.tags else None,
            id=FlowRunFilterId(not_any_=[uuid.UUID(i) for i in exclude]) if exclude else None,
        )
        found: list[FlowRunRef] = []
        with get_client(sync_client=True) as client:
            offset = 0
            while True:
                batch = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=list(flow_names))),
                    flow_run_filter=run_filter,
                    sort=FlowRunSort.START_TIME_ASC,
                    limit=self.page,
                    offset=offset,
                )
                found.extend(FlowRunRef(str(r.id), r.start_time) for r in batch if r.start_time)
                if len(batch) < self.page:
                    return found
                offset += self.page

    def artifact_ids(self, run_ids: Sequence[str]) -> list[str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        found: list[str] = []
        with get_client(sync_client=True) as client:
            for chunk in _chunks(run_ids):
                wanted = ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(i) for i in chunk])
                )
                offset = 0
                while True:
                    batch = client.read_artifacts(
                        artifact_filter=wanted, limit=self.page, offset=offset
                    )
                    found.extend(str(a.id) for a in batch)
                    if len(batch) < self.page:
                        break
                    offset += self.page
        return sorted(set(found))

    def delete(self, run_ids: Sequence[str], artifact_ids: Sequence[str]) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        _send_pending_logs()  # a log of these runs still queued in this process would outlive them
        with get_client(sync_client=True) as client:
            # Artifacts are not removed with their flow run (no foreign key): delete them first.
            for artifact in artifact_ids:
                with contextlib.suppress(ObjectNotFound):  # gone already: a re-run finishing
                    client.delete_artifact(uuid.UUID(artifact))
            for run in run_ids:
                with contextlib.suppress(ObjectNotFound):
                    client.delete_flow_run(uuid.UUID(run))

    def leftovers(self, run_ids: Sequence[str], wait_seconds: float = 60.0) -> dict[str, int]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            LogFilter,
            LogFilterFlowRunId,
        )

        if not run_ids:
            return {"flow_runs": 0, "artifacts": 0, "logs": 0}
        ids = [uuid.UUID(i) for i in run_ids]
        with get_client(sync_client=True) as client:
            runs = sum(
                client.count_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=c)))
                for c in _chunks(ids)
            )
            artifacts = len(self.artifact_ids(run_ids))
            # The server deletes a run's logs in a background job just after the run itself.
            deadline = time.monotonic() + wait_seconds
            while True:
                logs = sum(
                    len(
                        client.read_logs(
                            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=c)),
                            limit=self.page,
                        )
                    )
                    for c in _chunks(ids)
                )
                if logs == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        return {"flow_runs": runs, "artifacts": artifacts, "logs": logs}


    # --- events -------------------------------------------------------------------------------

    @property
    def cluster_tag(self) -> str | None:
        """The resource id of this cluster's tag (``tasks.core.runtime.run_tags``: the last one)."""
        return f"prefect.tag.{self.tags[-1]}" if self.tags else None

    def _resources(self, run_ids: Sequence[str], artifact_ids: Sequence[str], cluster_wide: bool) -> list[str]:
        tag = [self.cluster_tag] if cluster_wide and self.cluster_tag else []
        return ([f"prefect.flow-run.{r}" for r in run_ids]
                + [f"prefect.artifact.{a}" for a in artifact_ids] + tag)

    def delete_events(
        self, run_ids: Sequence[str], artifact_ids: Sequence[str], keep: Sequence[str], cluster_wide: bool
    ) -> int | None:
        url = embedded_database_url()
        if url is None:
            return None
        resources = self._resources(run_ids, artifact_ids, cluster_wide)
        if not resources:
            return 0
        _send_pending_events()
        kept = [f"prefect.flow-run.{r}" for r in keep]
        tag = self.cluster_tag if cluster_wide else None
        deleted = purge_events(url, resources, kept, tag)
        # The server persists events in batches (every flush_interval): delete what landed since.
        time.sleep(_local_trimming()[2] + 1.0)
        return deleted + purge_events(url, resources, kept, tag)

    def leftover_events(
        self, run_ids: Sequence[str], artifact_ids: Sequence[str], keep: Sequence[str], cluster_wide: bool
    ) -> EventsLeft:
        from prefect.client.orchestration import get_client

        resources = self._resources(run_ids, artifact_ids, cluster_wide)
        kept = {f"prefect.flow-run.{r}" for r in keep}
        found: dict[str, tuple[datetime, set[str]]] = {}
        with get_client(sync_client=True) as client:
            embedded = embedded_database_url() is not None
            retention, vacuum, flush, assumed = _local_trimming() if embedded else _server_trimming(client)
            if not embedded and (run_ids or artifact_ids):
                # Deleting artifacts makes the server emit events about them (artifact-collection
                # deleted/updated); it persists them within its flush interval: count them too.
                time.sleep(flush + 1.0)
            for chunk in _chunks(resources):
                found |= _matching_events(client, chunk, kept)
            if cluster_wide and self.cluster_tag:
                # As purge_events: events about a run, task run or artifact a tagged event names
                # (artifact-collection events carry no tags), even one an earlier sweep deleted.
                named = sorted({r for _, involved in found.values() for r in involved} - set(resources))
                for chunk in _chunks([r for r in named if r.startswith(_CLOSURE)]):
                    found |= _matching_events(client, chunk, kept)
        newest = max((when for when, _ in found.values()), default=None)
        return EventsLeft(len(found), newest, "embedded" if embedded else "external", retention, vacuum, assumed)


_CLOSURE = ("prefect.flow-run.", "prefect.task-run.", "prefect.artifact.")


def _matching_events(client: Any, resources: list[str], kept: set[str]) -> dict[str, tuple[datetime, set[str]]]:
    """Events that involve any of these resources and none of the kept runs: id -> (time, resources)."""
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventOccurredFilter

    wanted = EventFilter(
        occurred=EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=UTC),
                                     until=datetime.now(UTC) + timedelta(days=1)),
        any_resource=EventAnyResourceFilter(id=resources),
    )
    found: dict[str, tuple[datetime, set[str]]] = {}
    page = client.read_events(filter=wanted, limit=50)
    while True:
        for event in page.events:
            involved = {event.resource.id} | {r.id for r in event.related}
            if not involved & kept:
                found[str(event.id)] = (event.occurred, involved)
        if not page.next_page:
            return found
        page = client.read_events_page(str(page.next_page))


def _local_trimming() -> tuple[timedelta, timedelta, float, bool]:
    """This process's server settings: events retention, vacuum interval, persister flush interval."""
    from prefect.settings import get_current_settings

    server = get_current_settings().server
    return (server.events.retention_period, timedelta(seconds=server.services.db_vacuum.loop_seconds),
            float(server.services.event_persister.flush_interval), False)


def _server_trimming(client: Any) -> tuple[timedelta, timedelta, float, bool]:
    """The external server's settings (its /admin/settings), else this client's defaults, flagged
    as assumed."""
    from pydantic import TypeAdapter

    try:
        response = client.request("GET", "/admin/settings")
        response.raise_for_status()
        server = response.json()["server"]
        as_delta = TypeAdapter(timedelta)
        return (as_delta.validate_python(server["events"]["retention_period"]),
                as_delta.validate_python(server["services"]["db_vacuum"]["loop_seconds"]),
                float(server["services"]["event_persister"]["flush_interval"]), False)
    except Exception:  # noqa: BLE001 - any failure: fall back to the client's defaults, said so
        return *_local_trimming()[:3], True


def embedded_database_url() -> str | None:
    """Prefect's database URL when the API is a server this process started with its own settings
    (the ephemeral server without PREFECT_API_URL, or a test harness), else None (external)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL

    api = PREFECT_API_URL.value()
    if api:
        module = sys.modules.get("prefect.server.api.server")
        # Prefect's registry of the servers this process started (as tests/conftest.py reads it).
        started = getattr(module.SubprocessASGIServer, "_instances", {}) if module else {}
        if not any(getattr(s, "running", False) and s.api_url == api.rstrip("/") for s in started.values()):
            return None
    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    return str(url) if url else None


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def purge_events(url: str, resources: Sequence[str], kept: Sequence[str], tag: str | None) -> int:
    """Delete, in one transaction, every event that involves one of ``resources`` and none of the
    ``kept`` runs, with its event_resources rows (no foreign key cascades them).

    With ``tag`` (this cluster's tag resource), also every event of a flow run, task run or
    artifact that a tagged event involves: artifact-collection events carry no tags.
    """
    find = text(
        "SELECT DISTINCT event_id FROM event_resources WHERE resource_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    engine = create_engine(_sync_url(url), connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    try:
        with engine.begin() as conn:
            def events_of(ids: Sequence[str]) -> set[Any]:
                return {e for c in _chunks(ids, 500) for e in conn.execute(find, {"ids": c}).scalars()}

            keep = events_of(kept) if kept else set()
            targets = set(resources)
            if tag:
                tagged = list(events_of([tag]) - keep)
                involved = text(
                    "SELECT DISTINCT resource_id FROM event_resources WHERE event_id IN :ids AND "
                    "(resource_id LIKE 'prefect.flow-run.%' OR resource_id LIKE 'prefect.task-run.%' "
                    "OR resource_id LIKE 'prefect.artifact.%')"
                ).bindparams(bindparam("ids", expanding=True))
                targets |= {r for c in _chunks(tagged, 500) for r in conn.execute(involved, {"ids": c}).scalars()}
            doomed = list(events_of(sorted(targets)) - keep | _orphans(conn, targets, set(kept)))
            for chunk in _chunks(doomed, 500):
                conn.execute(text("DELETE FROM event_resources WHERE event_id IN :ids")
                             .bindparams(bindparam("ids", expanding=True)), {"ids": chunk})
                conn.execute(text("DELETE FROM events WHERE id IN :ids")
                             .bindparams(bindparam("ids", expanding=True)), {"ids": chunk})
    finally:
        engine.dispose()
    return len(doomed)


def _orphans(conn: Connection, targets: set[str], kept: set[str]) -> set[Any]:
    """Events without event_resources rows (a flush Prefect retried after a partial write leaves
    them; no resource filter finds them) that involve a target and no kept run, by their own columns."""
    found = set()
    for event_id, resource, related in conn.execute(text(
            "SELECT id, resource_id, related_resource_ids FROM events "
            "WHERE id NOT IN (SELECT event_id FROM event_resources)")):
        ids = {resource, *(json.loads(related) if isinstance(related, str) else related or [])}
        if ids & targets and not ids & kept:
            found.add(event_id)
    return found


def _send_pending_events(timeout: float = 15.0) -> None:
    """Wait until the events this process emitted have reached the API (they are sent in the background)."""
    from prefect.events.worker import EventsWorker

    running: list[object] = list(getattr(EventsWorker, "_instances", {}).values())  # Prefect's running workers
    for worker in (w for w in running if isinstance(w, EventsWorker)):
        waiter = threading.Thread(target=worker.wait_until_empty, daemon=True)
        waiter.start()
        waiter.join(timeout)


def _send_pending_logs() -> None:
    """Send the log records this process has queued for the Prefect API before runs are deleted.

    Logs reach the API in batches from a background worker; one that arrives after its run was
    deleted is never removed by the server (logs have no foreign key to their run).
    """
    import logging

    from prefect.logging.handlers import APILogHandler

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler):
                handler.flush()
                return
