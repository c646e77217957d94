"""Qualitative register commands: ``participants import FILE``, ``participants withdraw ID``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.commands import Outcome
from flows.participants import participants_import_flow, participants_withdraw_flow
from tasks.qualitative.withdraw import check_participant_id


def _import_summary(result: dict[str, Any]) -> str:
    if result["status"] == "duplicate":
        return (f"this register was imported before (sha256 {result['sha256'][:12]}…); nothing to do; "
                f"{result['participants']} participant(s) in the register")
    return (f"register imported: {result['participants']} participant(s) in {result['sessions']} "
            f"session(s) ({result['families']} family member(s), {result['practitioners']} practitioner(s)), "
            f"{result['withdrawn']} withdrawn; names are kept encrypted")


def run_participants_import_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval participants import FILE [--json]``."""
    return participants_import_flow(path=Path(args.file).resolve()), 0, _import_summary


def _withdraw_summary(result: dict[str, Any]) -> str:
    changed = (f"{result['turns_withdrawn']} transcript turn(s) replaced by [withdrawn], "
               f"{result['segments_deleted']} coded segment(s) deleted")
    if result["status"] == "already_withdrawn":
        return f"that participant had already withdrawn; {changed}"
    return (f"participant withdrawn: names removed, {changed}; outputs made before are now stale "
            "(see cluster-eval status)")


def run_participants_withdraw_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval participants withdraw ID [--json]``: the id is checked before any flow runs."""
    participant_id = check_participant_id(args.participant_id)
    return participants_withdraw_flow(participant_id=participant_id), 0, _withdraw_summary
