"""The project's one way to make a Prefect flow: runs that tell the operator the truth.

``project_flow`` wraps a flow body so that, whether it runs from the CLI, a served deployment, a
worker or as a subflow:

* the run carries this cluster's tags (added at start when a deployment did not set them), and
  so do its task runs and subflows;
* the run is named for what it does (``run_name``: e.g. ``ingest 3f2a91c0``, ``retention
  2026-12-02``), never Prefect's random ``phi4-wegener``;
* an expected refusal (``UserFacingError``) ends the run **Failed** with the same one line the
  CLI prints as the state message, logged once as an ERROR line without a traceback;
* ``NothingToDo`` ends it **Completed** with its line as the message (e.g. "wave 2 is not needed");
* every run ends by moving the audit chain's head anchors forward (``tasks.core.audit``);
* every run ends with a one-line summary in its logs (``summary``: counts only) and a markdown
  artifact ``<cluster>-<flow>-run`` holding that line (counts only: artifacts outlive nothing
  that matters if they outlive a sweep).

Calling a wrapped flow still returns its result, or raises the refusal it failed on, so the
CLI's handlers are unchanged.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast
from uuid import UUID

from prefect import Flow, flow, get_run_logger, tags
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from sqlalchemy import Engine

from tasks.core.errors import UserFacingError
from tasks.core.home import Home
from tasks.core.prefect import artifact_key, refusal_line

P = ParamSpec("P")
R = TypeVar("R")

Summary = Callable[[Any], str]
RunName = Callable[[Mapping[str, Any]], str]


class NothingToDo(UserFacingError):
    """Nothing needed doing: the run ends Completed with this line as its message (CLI: exit 0).

    ``result`` is what the flow returns (the ``--json`` object of the command).
    """

    exit_code = 0

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result if result is not None else {"status": "nothing_to_do", "message": message}


def _current_tags() -> tuple[str, ...]:
    from tasks.core.runtime import current_runtime

    return current_runtime().run_tags


def ensure_run_tags(wanted: tuple[str, ...]) -> None:
    """Add the cluster's tags to the current flow run when its creator (a deployment) did not."""
    run_id = flow_run.get_id()
    have = set(flow_run.get_tags() or ())
    if run_id is None or set(wanted) <= have:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(UUID(run_id), tags=sorted(have | set(wanted)))


def rename_current_run(name: str) -> None:
    """Give the current flow run a new name (e.g. once a top-up has fixed its wave number)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.set_flow_run_name(UUID(run_id), name=name)


def publish_run_summary(cluster: str, flow_name: str, outcome: str, line: str) -> None:
    """The run's markdown artifact: its outcome and one line (counts only)."""
    create_markdown_artifact(
        markdown=f"**{flow_name}: {outcome}**\n\n{line}\n",
        key=artifact_key(cluster, f"{flow_name}-run"),
        description=f"{flow_name}: {outcome.lower()} (counts only)")


def _resolved_name(name: str, run_name: RunName | None) -> Callable[[], str]:
    def resolve() -> str:
        if run_name is None:
            return name
        try:
            return run_name(dict(flow_run.get_parameters() or {}))
        except Exception:  # noqa: BLE001 - a name must never stop a run
            return name

    return resolve


def _finish(fn_name: str, cluster: str, summary: Summary, body: Callable[[], Any]) -> Any:
    logger = get_run_logger()
    try:
        result = body()
    except NothingToDo as done:
        line = refusal_line(done)
        logger.info(line)
        publish_run_summary(cluster, fn_name, "Completed", line)
        return Completed(message=line, data=done.result)
    except UserFacingError as exc:
        line = refusal_line(exc)
        logger.error(line)
        publish_run_summary(cluster, fn_name, "Failed", line)
        return Failed(message=line, data=exc)
    line = " ".join(summary(result).split())
    logger.info(line)
    publish_run_summary(cluster, fn_name, "Completed", line)
    return Completed(message=line, data=result)


def anchor_audit_head(engine: Engine, home: Home) -> None:
    """Move the audit chain's head anchors forward at a run's end (never fails the run)."""
    from tasks.core.audit import anchor_head

    try:
        problem = anchor_head(engine, home, prefect=True)
    except Exception:  # noqa: BLE001 - an anchoring problem must never fail a run
        problem = "failed"
    if problem:
        get_run_logger().warning("the audit head anchor was not moved: run cluster-eval audit verify")


def project_flow(name: str, *, summary: Summary, run_name: RunName | None = None,
                 **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """Decorate a flow body: cluster tags, a run name, Failed/Completed states with one line, a summary.

    Args:
        name: the flow's name (``tasks.core.flow_names``).
        summary: the result -> one line, counts only (logged and published as the run's artifact).
        run_name: the flow's parameters -> the run's name; default: the flow's name.
        options: further ``prefect.flow`` options (e.g. ``on_cancellation``).
    """

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            from tasks.core.runtime import current_runtime

            try:
                rt = current_runtime()
            except UserFacingError as exc:  # settings or state folder unusable: one line, no artifact
                line = refusal_line(exc)
                get_run_logger().error(line)
                return cast(R, Failed(message=line, data=exc))
            ensure_run_tags(rt.run_tags)
            try:
                with tags(*rt.run_tags):
                    return cast(R, _finish(name, rt.cluster, summary, lambda: fn(*args, **kwargs)))
            finally:
                anchor_audit_head(rt.engine, rt.home)

        # Prefect builds the parameter model from the wrapper: give it the body's resolved types
        # (a module with ``from __future__ import annotations`` has only their names as strings).
        run.__annotations__ = typing.get_type_hints(fn)
        run.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
        return flow(name=name, flow_run_name=_resolved_name(name, run_name), persist_result=False,
                    validate_parameters=True, **options)(run)

    return decorate
