"""Coding commands: ``coding export --out FILE`` and ``coding import FILE``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.commands import Outcome
from flows.coding import coding_export_flow, coding_import_flow


def _export_summary(result: dict[str, Any]) -> str:
    if result["format"] == "qdpx":
        return (f"REFI-QDA project {result['out']}: {result['sessions']} approved session(s), "
                f"{result['turns']} turns, {result['codes']} codes, {result['cases']} cases; open it in "
                "the QDA tool, code it, export it as .qdpx and run: cluster-eval coding import FILE.qdpx")
    return (f"coding sheet {result['out']}: {result['sessions']} approved session(s), {result['turns']} "
            "lines; fill in theme and subtheme, then run: cluster-eval coding import FILE")


def run_coding_export_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval coding export --out FILE.qdpx|FILE.csv|FILE.xlsx [--json]``."""
    return coding_export_flow(out=Path(args.out).resolve()), 0, _export_summary


def _import_summary(result: dict[str, Any]) -> str:
    if result["status"] == "duplicate":
        return f"this coding is the one imported last (sha256 {result['sha256'][:12]}…); nothing to do"
    dropped = result["segments_dropped_withdrawn"]
    note = f", {dropped} in withdrawn participants' turns left out" if dropped else ""
    return (f"{result['selections']} coded selection(s) in {result['sessions']} session(s): "
            f"{result['segments']} segments stored{note}; {result['codes_added']} code(s) added while "
            "coding kept; run cluster-eval analyse for the framework matrices")


def run_coding_import_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval coding import FILE.qdpx|FILE.csv [--json]``."""
    return coding_import_flow(path=Path(args.file).resolve()), 0, _import_summary
