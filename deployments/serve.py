"""``cluster-eval serve``: every deployment (schedules included), served to ``PREFECT_API_URL``.

Before serving, the server named by ``PREFECT_API_URL`` must answer its health check (a server
that is down is one line, not a traceback), and a server that is not on this machine (loopback)
must be reached with credentials: ``PREFECT_API_AUTH_STRING`` (the client side of the server's
``PREFECT_SERVER_API_AUTH_STRING`` basic auth) or ``PREFECT_API_KEY`` (Prefect Cloud), unless the
operator says ``--allow-unauthenticated``. Crons are UK time (Europe/London).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from prefect.deployments.runner import RunnerDeployment

from deployments.ingest import ingest_deployments
from deployments.operations import operations_deployments
from deployments.qualitative import qualitative_deployments
from deployments.survey import survey_deployments
from tasks.core.errors import ConfigError
from tasks.core.settings import Settings

HEALTH_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ServerAccess:
    """How this process reaches the Prefect server: its API URL and credentials (never printed)."""

    api_url: str
    auth_string: str | None = None
    api_key: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether requests carry credentials (basic auth or an API key)."""
        return bool(self.auth_string or self.api_key)

    def headers(self) -> dict[str, str]:
        """The Authorization header the Prefect client sends (basic auth wins over an API key)."""
        if self.auth_string:
            return {"Authorization": "Basic " + base64.b64encode(self.auth_string.encode()).decode()}
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _shown(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def server_access() -> ServerAccess:
    """The API URL and credentials from Prefect's settings, or a one-line ConfigError when no URL is set."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    if not api.url:
        raise ConfigError(
            "cluster-eval serve needs a Prefect server: start one (prefect server start --host 127.0.0.1) and "
            "set PREFECT_API_URL, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    auth = api.auth_string.get_secret_value() if api.auth_string else None
    key = api.key.get_secret_value() if api.key else None
    return ServerAccess(str(api.url).rstrip("/"), auth or None, key or None)


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server(access: ServerAccess, *, allow_unauthenticated: bool = False,
                 timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
    """Refuse, with one line naming PREFECT_API_URL, a server that is down, unauthenticated or refusing us.

    A non-loopback server reached without credentials is refused unless ``allow_unauthenticated``.
    """
    shown = _shown(access.api_url)
    if not is_loopback(access.api_url) and not access.authenticated and not allow_unauthenticated:
        raise ConfigError(
            f"PREFECT_API_URL {shown} is not on this machine and no PREFECT_API_AUTH_STRING is set: "
            "protect the server with PREFECT_SERVER_API_AUTH_STRING and set the same value in "
            "PREFECT_API_AUTH_STRING, or pass --allow-unauthenticated")
    try:
        health = httpx.get(f"{access.api_url}/health", timeout=timeout)
        answer = httpx.get(f"{access.api_url}/admin/version", headers=access.headers(), timeout=timeout)
    except httpx.HTTPError:
        raise ConfigError(
            f"no Prefect server answers at PREFECT_API_URL {shown}: start it (prefect server start "
            "--host 127.0.0.1) or correct PREFECT_API_URL") from None
    if health.status_code != 200:
        raise ConfigError(f"the Prefect server at PREFECT_API_URL {shown} is not healthy "
                          f"(health check: HTTP {health.status_code})")
    if answer.status_code in (401, 403):
        which = ("rejected PREFECT_API_AUTH_STRING" if access.authenticated else
                 "needs credentials: set PREFECT_API_AUTH_STRING to its PREFECT_SERVER_API_AUTH_STRING")
        raise ConfigError(f"the Prefect server at PREFECT_API_URL {shown} {which}")
    if answer.status_code != 200:
        raise ConfigError(f"PREFECT_API_URL {shown} does not look like a Prefect API "
                          f"(HTTP {answer.status_code} for /admin/version)")


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Every deployment of this project: ingest, survey, the whole evaluation and housekeeping, qualitative.

    No deployment for the household ``withdraw``: its survey token must never be a Prefect parameter.
    """
    return [*ingest_deployments(settings), *survey_deployments(settings),
            *operations_deployments(settings), *qualitative_deployments(settings)]
