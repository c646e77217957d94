"""``cluster-eval serve``: check the server, then serve every deployment to ``PREFECT_API_URL`` until interrupted."""

from __future__ import annotations

import argparse
from typing import Any

from cli.commands import Outcome
from deployments.serve import build_deployments, check_server, server_access
from tasks.core.runtime import current_runtime


def _summary(result: dict[str, Any]) -> str:
    return f"served {len(result['deployments'])} deployments to {result['api_url']}"


def run_serve_command(args: argparse.Namespace) -> Outcome:
    """Serve the deployments until interrupted; exit 1 with one line when the server is missing, down or unsafe."""
    from prefect import serve

    access = server_access()
    check_server(access, allow_unauthenticated=getattr(args, "allow_unauthenticated", False))
    deployments = build_deployments(current_runtime().settings)
    serve(*deployments)
    return {"api_url": access.api_url, "deployments": [d.name for d in deployments]}, 0, _summary
