"""Demo-only helpers: a synthetic encrypted extract and SIMULATED survey responses.

Nothing here is used on real data. Simulated responses are labelled as such in their file
name and in the flow run, so a demo report can never be mistaken for fieldwork results.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

from tasks.core.db import rows
from tasks.core.home import Home, write_private
from tasks.core.secrets import EXTRACT_PASSPHRASE, Secrets
from tasks.demo.render import write_extract
from tasks.demo.survey_export import generate_survey_export, survey_export_csv
from tasks.survey.responses import invitation_times

DEMO_RESPONSE_RATE = 0.6


def demo_passphrase(secrets: Secrets) -> str:
    """The extract passphrase the demo encrypts with and ingest decrypts with (created if none)."""
    return secrets.passphrase_or_create(EXTRACT_PASSPHRASE)[0]


def make_demo_extract(home: Home, passphrase: str, families: int, seed: int) -> Path:
    """Write a synthetic AES-256 ZIP extract (with .sha256 sidecar) into HOME/inbox."""
    inbox = home.root / "inbox"
    inbox.mkdir(mode=0o700, exist_ok=True)
    path = inbox / f"demo-extract-{families}-{seed}.zip"
    return write_extract(path, families=families, seed=seed, fmt="csv", encryption="aes-zip",
                         passphrase=passphrase, messy=True, sidecar=True)


def simulate_responses(conn: Connection, home: Home, cluster_id: str, wave: int, seed: int,
                       until: datetime | None = None) -> Path:
    """Write a SIMULATED response export for a wave's tokens (demo only).

    Each return is dated between its household's invitation (or, not invited, its wave's draw)
    and ``until`` (default now), so the import that follows accepts every one of them.
    """
    tokens = [r["token"] for r in rows(conn, "demo_wave_tokens", {"cluster_id": cluster_id, "wave": wave})]
    invited = {t: datetime.fromisoformat(at) for t, at in invitation_times(conn, cluster_id).items()}
    export = generate_survey_export(tokens, seed=seed, response_rate=DEMO_RESPONSE_RATE, invited=invited,
                                    until=until or datetime.now(UTC))
    path = home.inbox / "survey" / f"SIMULATED-demo-responses-wave{wave}.csv"
    write_private(path, survey_export_csv(export))
    return path
