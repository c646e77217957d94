"""Fieldwork flows: invitations for a wave, due reminders, the interview sub-sample.

The CLI commands ``invite``, ``remind`` and ``interviews`` run these flows. When the mail
server stays unreachable after the configured retries, the run records exactly who was
reached, fails with one line saying how many households were not contacted, and lists
their tokens in the ``--json`` output; running the command again contacts only those.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.commands import Outcome
from tasks.fieldwork import (
    UK_TIME,
    DeliveryReport,
    Fieldwork,
    FieldworkError,
    draw_interviews_task,
    load_or_create_pack_passphrase,
    send_invitations_task,
    send_reminders_task,
)
from tasks.mailer import mailer_for
from tasks.runtime import Runtime, current_runtime
from tasks.secrets import CONTACT_KEY, PACK_PASSPHRASE, require_key
from tasks.settings import Settings


class NotContacted(FieldworkError):
    """Some households could not be contacted; ``result`` holds the run's report."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def fieldwork_context(rt: Runtime) -> Fieldwork:
    """Wire the database, mailer, contact key and pack passphrase for a fieldwork run."""
    passphrase, created = load_or_create_pack_passphrase(rt.home)
    return Fieldwork(rt.engine, rt.settings, rt.home, mailer_for(rt),
                     require_key(CONTACT_KEY, rt.home), passphrase, created, flow_run.get_id())


def raise_if_not_contacted(settings: Settings, report: DeliveryReport, rerun: str,
                           result: dict[str, Any] | None = None) -> None:
    """Fail the run with one line when the mail server left households uncontacted."""
    if report.not_contacted:
        smtp = settings.smtp
        raise NotContacted(
            f"{len(report.not_contacted)} household(s) were not contacted: the mail server "
            f"{smtp.host}:{smtp.port} did not accept messages after {smtp.retries} retries; "
            f"{report.total_sent()} were contacted and recorded; run `{rerun}` again when the "
            "server is reachable (their tokens are in the --json output)",
            result or report.as_json())


@flow(name="send-invitations", persist_result=False)
def invite_flow(wave: int) -> dict[str, Any]:
    """Invite every household of a wave not yet invited: e-mail, or the encrypted fieldwork pack.

    Args:
        wave: the survey wave whose households to invite.
    """
    rt = current_runtime()
    report = send_invitations_task(fieldwork_context(rt), wave)
    result = {"wave": wave, **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval invite --wave {wave}", result)
    return result


@flow(name="send-reminders", persist_result=False)
def remind_flow(as_of: date | None = None) -> dict[str, Any]:
    """Send every reminder due by a date that has not been sent yet (safe to run twice).

    Args:
        as_of: the day to send for (default: today, UK time).
    """
    rt = current_runtime()
    day = as_of or datetime.now(UK_TIME).date()
    report = send_reminders_task(fieldwork_context(rt), day)
    result = {"as_of": day.isoformat(), **report.as_json()}
    raise_if_not_contacted(rt.settings, report, f"cluster-eval remind --as-of {day}", result)
    return result


@flow(name="draw-interviews", persist_result=False)
def interviews_flow() -> dict[str, Any]:
    """Draw the family interview sub-sample among opted-in respondents (tokens only), once."""
    rt = current_runtime()
    return draw_interviews_task(rt.engine, rt.settings, flow_run_id=flow_run.get_id()).as_json()


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
