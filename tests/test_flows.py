"""Every flow under ``flows/`` is made by ``project_flow`` (so it ends Failed with one line on a refusal, is
named for what it does and summarises itself) and is named in ``tasks.core.flow_names``."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from prefect import Flow

import flows
from tasks.core import flowrun
from tasks.core.flow_names import FLOW_NAMES


def _flows() -> dict[str, Flow]:
    found: dict[str, Flow] = {}
    for module in pkgutil.iter_modules(flows.__path__):
        for value in vars(importlib.import_module(f"flows.{module.name}")).values():
            if isinstance(value, Flow):
                found[value.name] = value
    return found


def test_every_flow_is_a_project_flow_named_in_flow_names() -> None:
    found = _flows()
    assert sorted(found) == sorted(FLOW_NAMES)
    wrapper = Path(flowrun.__file__).resolve()
    made_elsewhere = [name for name, f in found.items() if Path(f.fn.__code__.co_filename).resolve() != wrapper]
    assert made_elsewhere == []
    assert all(callable(f.flow_run_name) and f.persist_result is False for f in found.values())
