"""Transcript commands: ``transcripts import FILE``, ``transcripts redact SESSION``, ``transcripts approve SESSION``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.commands import Outcome
from flows.transcripts import transcripts_approve_flow, transcripts_import_flow, transcripts_redact_flow
from tasks.transcripts.intake import check_session_id


def _replacements(result: dict[str, Any]) -> str:
    shown = ", ".join(f"{kind} {n}" for kind, n in result["replacements"].items())
    return shown or "none"


def _import_summary(result: dict[str, Any]) -> str:
    if result["status"] == "duplicate":
        return f"this archive was imported before (sha256 {result['sha256'][:12]}…); nothing to do"
    replaced = f", {result['replaced_sessions']} replacing an earlier import" if result["replaced_sessions"] else ""
    folder = Path(next(iter(result["review_lists"].values()))).parent
    return (f"{result['sessions']} transcript(s) imported ({', '.join(result['session_ids'])}){replaced}: "
            f"{result['turns']} turns, {result['words']} words, {result['withdrawn_turns']} withdrawn turn(s); "
            f"replacements: {_replacements(result)}; {result['review_entries']} review-list entries in "
            f"{folder}/<session>.csv; add terms to the deny-list or allow-list and run: cluster-eval "
            "transcripts redact SESSION, or approve with: cluster-eval transcripts approve SESSION")


def _redact_summary(result: dict[str, Any]) -> str:
    session = result["session_id"]
    return (f"session {session} de-identified again: {result['turns']} turns, {result['words']} words; "
            f"replacements: {_replacements(result)}; review list {result['review_list']} has "
            f"{result['review_entries']} entries (before: {result['review_entries_before']}); add terms to "
            f"the deny-list or allow-list and run this again, or approve with: "
            f"cluster-eval transcripts approve {session}")


def _approve_summary(result: dict[str, Any]) -> str:
    already = "was already approved" if result["status"] == "already_approved" else "approved"
    return (f"session {result['session_id']} {already} with {result['review_entries']} review-list "
            "entries left")


def run_transcripts_import_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval transcripts import FILE [--json]``."""
    return transcripts_import_flow(path=Path(args.file).resolve()), 0, _import_summary


def run_transcripts_redact_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval transcripts redact SESSION [--json]``: the session id is checked before any flow runs."""
    return transcripts_redact_flow(session_id=check_session_id(args.session)), 0, _redact_summary


def run_transcripts_approve_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval transcripts approve SESSION [--json]``."""
    return transcripts_approve_flow(session_id=check_session_id(args.session)), 0, _approve_summary
