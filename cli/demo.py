"""``cluster-eval demo``: run every stage on a synthetic extract and say where the report is."""

from __future__ import annotations

import argparse
from typing import Any

from cli.commands import Outcome
from flows.demo import demo_flow


def _qualitative(result: dict[str, Any]) -> str:
    participants, transcripts, coding = result["participants"], result["transcripts"], result["coding"]
    return (f"qualitative: {participants.get('participants', 0)} participants, "
            f"{result['approved']} transcripts de-identified and approved, "
            f"{coding.get('segments', 0)} coded segments; interviews, focus groups and coding "
            "SIMULATED for the demo" + (" (already imported)" if transcripts.get("status") == "duplicate" else ""))


def _summary(result: dict[str, Any]) -> str:
    ingest = result["ingest"]
    population = ingest.get("population") or {}
    return "\n".join([
        f"ingest:    {ingest['status']} ({population.get('families', 0)} families, "
        f"{population.get('episodes', 0)} episodes in the study window)",
        f"survey:    wave 1 drew {result['wave']['households']} households; "
        "responses SIMULATED for the demo",
        _qualitative(result["qualitative"]),
        f"retention: dry run listed {len(result['retention'].get('due', []))} rule(s) due now",
        f"report:    {result['report']}",
    ])


def run_demo_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval demo``: run the demo flow and print where the report is."""
    result = demo_flow(out=str(args.out) if args.out else None, families=args.families)
    return result, 0, _summary
