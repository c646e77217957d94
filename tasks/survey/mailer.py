"""Outgoing e-mail behind a small interface: real SMTP (STARTTLS, login, timeouts) or a fake.

Errors never carry the server's text (it can echo a recipient address): a failure is either
``MailRejected`` (the server refused this recipient or message: do not retry, the household
bounced) or ``MailUnavailable`` (connection, timeout, temporary 4xx: retry later).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from tasks.core.secrets import SMTP_PASSWORD, Secrets
from tasks.core.settings import SmtpSettings


class MailError(Exception):
    """A message was not delivered to the server (no address or server text inside)."""


class MailRejected(MailError):
    """The server permanently refused the recipient or the message (a bounce)."""


class MailUnavailable(MailError):
    """The server could not be reached or answered with a temporary failure."""


class MailSession(Protocol):
    """An open connection that sends one message at a time."""

    def send(self, message: EmailMessage) -> None:
        """Hand one message to the server, or raise MailRejected / MailUnavailable."""
        ...


class Mailer(Protocol):
    """Something that opens mail sessions."""

    def session(self) -> AbstractContextManager[MailSession]:
        """Open a session (raises MailUnavailable when the server cannot be reached)."""
        ...


def _classify(exc: BaseException) -> MailError:
    """Map an smtplib/socket error to our two kinds, dropping its text.

    Only a refused recipient is a bounce. Anything else (sender refused, message refused,
    4xx, connection) may affect every message, so it is "unavailable": retried, then the
    run fails with nothing recorded for the households not reached.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return MailRejected("the server refused the recipient")
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailUnavailable(f"the mail server answered with code {exc.smtp_code}")
    return MailUnavailable(f"mail server unreachable ({type(exc).__name__})")


class _SmtpSession:
    def __init__(self, client: smtplib.SMTP) -> None:
        self._client = client

    def send(self, message: EmailMessage) -> None:
        try:
            refused = self._client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from None
        if refused:
            raise MailRejected("the server refused the recipient")


@dataclass(frozen=True)
class SmtpMailer:
    """Real SMTP: one connection per session, STARTTLS and login when configured."""

    settings: SmtpSettings
    secrets: Secrets | None = field(default=None, repr=False)  # where ``smtp_password`` is found

    @property
    def password(self) -> str | None:
        """The SMTP password (secret ``smtp_password``), looked up when a session logs in."""
        return self.secrets.get(SMTP_PASSWORD) if self.secrets else None

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        """Connect, optionally STARTTLS and log in; quit at the end."""
        s = self.settings
        try:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        except (smtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from None
        try:
            try:
                client.ehlo()
                if s.starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if s.username:
                    client.login(s.username, self.password or "")
            except smtplib.SMTPAuthenticationError:
                raise MailUnavailable("the mail server refused the configured credentials") from None
            except (smtplib.SMTPException, OSError) as exc:
                raise _classify(exc) from None
            yield _SmtpSession(client)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


@dataclass
class FakeMailer:
    """In-memory mailer for unit tests: records messages; can refuse or be down."""

    sent: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    down: bool = False
    failures_before_success: int = 0
    attempts: int = 0

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        """Open a fake session (MailUnavailable when ``down``)."""
        if self.down:
            raise MailUnavailable("mail server unreachable (fake)")
        yield self

    def send(self, message: EmailMessage) -> None:
        """Record the message, or raise the configured failure."""
        self.attempts += 1
        if self.failures_before_success > 0:
            self.failures_before_success -= 1
            raise MailUnavailable("temporary server failure (fake)")
        if str(message["To"]) in self.refuse:
            raise MailRejected("the server refused the recipient")
        self.sent.append(message)
