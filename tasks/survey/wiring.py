"""What survey flows take from the runtime: secrets are resolved here, at the flow's edge.

Task bodies never read a secret: the flow calls these plain functions and hands the tasks
the key or the ready ``Fieldwork`` context.
"""

from __future__ import annotations

from tasks.core.runtime import Runtime
from tasks.core.secrets import CONTACT_KEY, PACK_PASSPHRASE
from tasks.survey.outgoing import Fieldwork


def contact_key_if_any(rt: Runtime) -> bytes | None:
    """The contact key when one exists (none before the first ingest)."""
    return rt.secrets.key_if_any(CONTACT_KEY)


def fieldwork_context(rt: Runtime, flow_run_id: str | None) -> Fieldwork:
    """Wire the database, mailer, contact key and pack passphrase for a fieldwork run."""
    passphrase, created = rt.secrets.passphrase_or_create(PACK_PASSPHRASE)
    return Fieldwork(rt.engine, rt.settings, rt.home, rt.mailer,
                     rt.secrets.key(CONTACT_KEY), passphrase, created, flow_run_id)
