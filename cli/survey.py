"""Survey commands: ``sample``, ``invite``, ``remind``, ``interviews``, ``responses import``, ``withdraw``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.commands import Outcome
from flows.fieldwork import interviews_flow, invite_flow, remind_flow
from flows.responses import import_flow, withdraw_flow
from flows.sampling import sample_flow
from tasks.core.errors import UserFacingError
from tasks.core.secrets import PACK_PASSPHRASE
from tasks.survey.outgoing import NotContacted
from tasks.survey.responses import token_digest


def _sample_summary(result: dict[str, Any]) -> str:
    frame = sum(result["frame"].values())
    parts = ", ".join(f"{h} {n}" for h, n in result["allocation"].items() if n)
    return (f"wave {result['wave']}: {len(result['households'])} households drawn from a frame of "
            f"{frame} ({parts}); send invitations with: cluster-eval invite --wave {result['wave']}")


def run_sample_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval sample --wave N [--size K] [--json]``."""
    return sample_flow(wave=args.wave, size=args.size), 0, _sample_summary


def _delivery_summary(result: dict[str, Any]) -> str:
    sent = ", ".join(f"{kind}: {sum(v.values())} ({v['email']} e-mail, {v['post']} post, "
                     f"{v['phone']} phone)" for kind, v in result["sent"].items()) or "nothing due"
    extra = [f"{result[k]} {k}" for k in ("bounced", "unreachable", "withheld", "superseded",
                                         "skipped") if result[k]]
    packs = f"; fieldwork pack(s): {', '.join(result['packs'])}" if result["packs"] else ""
    created = (f" (new pack passphrase in HOME/keys/{PACK_PASSPHRASE})"
               if result["packs"] and result["passphrase_created"] else "")
    return f"{sent}{'; ' + ', '.join(extra) if extra else ''}{packs}{created}"


def _run_delivery(run: Any) -> Outcome:
    try:
        return run(), 0, _delivery_summary
    except NotContacted as exc:
        print(f"cluster-eval: error: {exc}", file=sys.stderr)
        return exc.result, 1, _delivery_summary


def run_invite_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval invite --wave N [--json]``."""
    return _run_delivery(lambda: invite_flow(wave=args.wave))


def run_remind_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval remind [--as-of D] [--json]``."""
    return _run_delivery(lambda: remind_flow(as_of=args.as_of))


def _interview_summary(result: dict[str, Any]) -> str:
    note = " (fewer than the minimum: too few opted in)" if result["short"] else ""
    tokens = "\n".join(result["tokens"])
    return (f"{result['drawn']} of {result['eligible']} opted-in respondents drawn for interview"
            f"{note}; resolve these tokens through the fieldwork pack:\n{tokens}")


def run_interviews_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval interviews [--json]``."""
    return interviews_flow(), 0, _interview_summary


def _import_summary(result: dict[str, Any]) -> str:
    if result["status"] == "duplicate":
        return f"{result['file']} was imported before (sha256 {result['sha256'][:12]}…); nothing to do"
    rate = result["response_rate"]
    shown = "n/a" if rate["rate"] is None else f"{100 * rate['rate']:.1f}%"
    return (f"{result['rows']} rows: {result['accepted']} accepted, {result['quarantined']} "
            f"quarantined, {len(result['duplicates'])} duplicate(s), {result['already_stored']} "
            f"already stored; respondents {rate['responded']} of {rate['issued']} issued "
            f"({shown}), target {rate['target_respondents']}")


def run_import_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval responses import FILE [--json]``."""
    return import_flow(path=Path(args.file).resolve()), 0, _import_summary


def _withdraw_summary(result: dict[str, Any]) -> str:
    if result["status"] == "already_withdrawn":
        return "that household had already withdrawn; it stays marked never to be contacted"
    return (f"household withdrawn (wave {result['wave']}): {result['responses_deleted']} response(s) "
            f"and {result['contact_deleted']} contact record(s) deleted; it will not be contacted again")


def run_withdraw_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval withdraw TOKEN`` or ``cluster-eval withdraw --token TOKEN`` (exactly one)."""
    return withdraw_flow(token_sha256=token_digest(withdraw_token(args))), 0, _withdraw_summary


def withdraw_token(args: argparse.Namespace) -> str:
    """The one token given, positional or ``--token``; a usage problem is one line, exit 1."""
    given = [t for t in (args.token, getattr(args, "token_option", None)) if t is not None]
    if len(given) != 1:
        raise UserFacingError("withdraw needs exactly one token: cluster-eval withdraw TOKEN "
                              "or cluster-eval withdraw --token=TOKEN")
    if not given[0].strip():
        raise UserFacingError("withdraw needs a token; the one given is empty")
    return given[0]
