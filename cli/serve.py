"""``cluster-eval serve``: serve every deployment to ``PREFECT_API_URL`` until interrupted."""

from __future__ import annotations

import argparse
from typing import Any

from cli.commands import Outcome
from deployments.serve import build_deployments, require_api_url
from tasks.core.runtime import current_runtime


def _summary(result: dict[str, Any]) -> str:
    return f"served {', '.join(result['deployments'])} to {result['api_url']}"


def run_serve_command(args: argparse.Namespace) -> Outcome:
    """Serve the deployments until interrupted; exit 1 with one line when no server is named."""
    from prefect import serve

    url = require_api_url()
    deployments = build_deployments(current_runtime().settings)
    serve(*deployments)
    return {"api_url": url, "deployments": [d.name for d in deployments]}, 0, _summary
