"""``cluster-eval analyse --out DIR``."""

from __future__ import annotations

import argparse
from typing import Any

from cli.commands import Outcome
from flows.analysis import analyse_flow


def _summary(result: dict[str, Any]) -> str:
    lines = [f"analysis written to {result['out']} ({result['tables']} tables); "
             f"report: {result['report']}"]
    qualitative = result.get("qualitative") or {}
    if qualitative.get("status") == "analysed":
        lines.append(f"qualitative strand: {qualitative['themes']} themes, "
                     f"{qualitative['coded_segments']} coded segments (Framework matrices in "
                     "restricted/)")
    else:
        reason = str(qualitative.get("status") or "no_coded_segments").replace("_", " ")
        lines.append(f"qualitative strand: not analysed yet ({reason})")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def run_analyse_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval analyse --out DIR``."""
    return analyse_flow(out=str(args.out)), 0, _summary
