"""Prefect's record of this project's flow runs, behind a small interface (tests use a fake)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FlowRunRef:
    """A Prefect flow run of this project: its id and when it started."""

    id: str
    start_time: datetime


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
