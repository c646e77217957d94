"""What a fieldwork run sends and reports: messages, the delivery report, the run's context.

Values only (tokens, pseudonyms, counts), never contact details: contact records are
decrypted in memory by ``tasks.survey.delivery`` and go no further than the message or pack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from tasks.core.errors import UserFacingError
from tasks.core.home import Home
from tasks.core.settings import Settings
from tasks.survey.mailer import Mailer

INVITATION = "invitation"


class FieldworkError(UserFacingError):
    """Fieldwork could not be completed (one line; counts and tokens only)."""


class NotContacted(FieldworkError):
    """Some households could not be contacted; ``result`` holds the run's report."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def reminder_kind(number: int) -> str:
    """The contact_attempts kind of reminder number k (1-based)."""
    return f"reminder_{number}"


@dataclass(frozen=True)
class Outgoing:
    """One message to one household (token and pseudonym only)."""

    token: str
    family_pid: str
    wave: int
    kind: str
    route: str


@dataclass
class DeliveryReport:
    """What happened to each household in a run (counts and tokens, never contact details)."""

    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    bounced: int = 0
    unreachable: int = 0
    withheld: int = 0
    superseded: int = 0
    skipped: int = 0
    not_contacted: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)
    passphrase_created: bool = False

    def count(self, kind: str, route: str) -> None:
        """Add one successful delivery of a kind by a route."""
        by_route = self.sent.setdefault(kind, {"email": 0, "post": 0, "phone": 0})
        by_route[route] += 1

    def total_sent(self) -> int:
        """Households reached in this run (e-mail accepted or in a pack)."""
        return sum(sum(v.values()) for v in self.sent.values())

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {"sent": {k: dict(v) for k, v in sorted(self.sent.items())},
                "bounced": self.bounced, "unreachable": self.unreachable,
                "withheld": self.withheld, "superseded": self.superseded,
                "skipped": self.skipped, "not_contacted": sorted(self.not_contacted),
                "packs": list(self.packs), "passphrase_created": self.passphrase_created}


@dataclass(frozen=True)
class Fieldwork:
    """What a fieldwork run needs: database, settings, state folder, mailer and secrets."""

    engine: Engine
    settings: Settings
    home: Home
    mailer: Mailer
    contact_key: bytes = field(repr=False)
    pack_passphrase: str = field(repr=False)
    passphrase_created: bool = False
    flow_run_id: str | None = None
    sleep: Callable[[float], None] = time.sleep

    @property
    def cluster(self) -> str:
        """The cluster this run works for."""
        return self.settings.study.cluster


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
