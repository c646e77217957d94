"""Retention commands: ``retention``, ``status``, ``audit verify``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.commands import Outcome
from flows.audit import AuditChainBroken, audit_line, audit_verify_flow
from flows.retention import RetentionNotVerified, retention_flow, verification_text
from flows.status import status_flow


def _retention_summary(result: dict[str, Any]) -> str:
    lines = [f"retention as of {result['as_of']}{' (dry run)' if result['dry_run'] else ''}:"]
    for entry in result["due"] if result["dry_run"] else []:
        lines.append(f"  due {entry['due_date']}: {entry['rule']} ({len(entry['items'])} item(s))")
    for done in result["deleted"]:
        lines.append(
            f"  deleted {done['rule']} {done['target']}: {done['rows']} row(s), "
            f"{done['files']} file(s), {done['keys']} key(s), {done['flow_runs']} flow run(s)"
        )
    if not result["due"] and not result["deleted"]:
        lines.append("  nothing due")
    for entry in result["next"][:5]:
        lines.append(f"  next {entry['due_date']}: {entry['rule']}")
    for item in result["unscheduled"]:
        lines.append(f"  not scheduled: {item['rule']} ({item['reason']})")
    if result["verification"]:
        lines.append(f"  verification: {verification_text(result)}")
    lines += [f"  warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def run_retention_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval retention [--as-of D] [--dry-run] [--json]``: exit 1 if anything remains."""
    try:
        return retention_flow(as_of=args.as_of, dry_run=args.dry_run), 0, _retention_summary
    except RetentionNotVerified as exc:
        print(f"cluster-eval: error: {exc}", file=sys.stderr)
        return exc.result, 1, _retention_summary


def _status_summary(result: dict[str, Any]) -> str:
    extracts, survey, retention = result["extracts"], result["survey"], result["retention"]
    lines = [
        f"cluster {result['cluster']}: {extracts['ingested']} extract(s) ingested"
        + (f", last {extracts['last_ingested_at']}" if extracts["last_ingested_at"] else "")
    ]
    for wave in survey["waves"]:
        rate = "-" if wave["response_rate"] is None else f"{100 * wave['response_rate']:.1f}%"
        lines.append(
            f"wave {wave['wave']}: {wave['issued']} issued, {wave['responded']} responded ({rate})"
        )
    if survey["waves"]:
        lines.append(
            f"respondents: {survey['respondents']} of {survey['target_respondents']} targeted"
        )
    for entry in retention["due"]:
        lines.append(f"retention due now: {entry['rule']} (since {entry['due_date']})")
    for entry in retention["next"][:5]:
        lines.append(f"retention next: {entry['rule']} on {entry['due_date']}")
    for item in retention["unscheduled"]:
        lines.append(f"retention not scheduled: {item['rule']} ({item['reason']})")
    held = retention.get("prefect_events")
    if held:
        lines.append(f"retention: Prefect still holds {held['remaining']} event(s) of this cluster until "
                     f"{held['trimmed_by']} ({held['server']} server; the sweep as of {held['as_of']} "
                     "could not delete them)")
    lines += [f"warning: {w}" for w in result["warnings"]]
    stale = result.get("stale_outputs") or []
    if stale:
        lines.append(f"stale: {len(stale)} output(s) made before a participant withdrew: {', '.join(stale)}; "
                     "re-run analyse and coding export, then delete the old ones")
    return "\n".join(lines)


def run_status_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval status [--json]``."""
    return status_flow(), 0, _status_summary


def run_audit_verify_command(args: argparse.Namespace) -> Outcome:
    """``cluster-eval audit verify``: exit 1 when the chain is broken."""
    try:
        return audit_verify_flow(), 0, audit_line
    except AuditChainBroken as exc:
        print(f"cluster-eval: error: {exc}", file=sys.stderr)
        return None, 1, audit_line
