"""Due dates of the retention rules, from settings: calendar months, deadlines, bad dates."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from tasks.core.settings import Settings
from tasks.retention.rules import APPROVAL_BASES, Rule, offset_value


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (clamped to the month's last day)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _shift(day: date, rule: Rule, settings: Settings) -> date:
    amount = offset_value(rule, settings)
    return add_months(day, amount) if rule.unit == "months" else day + timedelta(days=amount)


def final_deadline(settings: Settings) -> date | None:
    """Publication date + months_after_publication: by then everything is gone."""
    published = settings.retention.publication_date
    if published is None:
        return None
    return add_months(published, settings.retention.months_after_publication)


def is_final_due(settings: Settings, as_of: date) -> bool:
    """Whether the final deadline is set and has come by as_of."""
    final = final_deadline(settings)
    return final is not None and final <= as_of


def rule_deadline(rule: Rule, settings: Settings, basis_day: date | None = None) -> date | None:
    """When a rule (or, for basis ingest, one item registered on basis_day) falls due.

    For the approval bases basis_day is the approval day counted from (a delivery's last
    approval, or the register's last session approval); None: not (all) approved yet.
    """
    final = final_deadline(settings)
    per_item = basis_day if rule.basis == "ingest" or rule.basis in APPROVAL_BASES else None
    start = settings.survey.fieldwork_end if rule.basis == "fieldwork_end" else per_item
    own = None if start is None or rule.basis == "publication" else _shift(start, rule, settings)
    if own is None:
        return final
    return own if final is None else min(own, final)


def day_of(stamp: str | date | datetime | None) -> date | None:
    """The UTC calendar day of an ISO timestamp or date (as stored in TEXT columns)."""
    if stamp is None or stamp == "":
        return None
    if isinstance(stamp, datetime):
        moment = stamp
    elif isinstance(stamp, date):
        return stamp
    else:
        moment = datetime.fromisoformat(str(stamp))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def date_problems(settings: Settings, first_ingest: date | None, rules: Sequence[Rule]) -> list[str]:
    """Settings under which a rule would delete data before it was ingested or used."""
    fieldwork, published = settings.survey.fieldwork_end, settings.retention.publication_date
    affected = " and ".join(r.name for r in rules if r.basis == "fieldwork_end")
    problems = []
    if first_ingest and fieldwork and fieldwork < first_ingest:
        problems.append(
            f"survey.fieldwork_end {fieldwork} is before the first extract was ingested "
            f"({first_ingest}): rule(s) {affected} would delete data before it arrived; "
            "correct survey.fieldwork_end"
        )
    if first_ingest and published and published < first_ingest:
        problems.append(
            f"retention.publication_date {published} is before the first extract was ingested "
            f"({first_ingest}); correct retention.publication_date"
        )
    if fieldwork and published and published < fieldwork:
        problems.append(
            f"retention.publication_date {published} is before survey.fieldwork_end "
            f"{fieldwork}: the final report cannot precede fieldwork; correct one of them"
        )
    return problems
