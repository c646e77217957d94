"""The fieldwork pack: a mail-merge CSV (post) and a call list (phone) in one AES-256 ZIP.

The pack is for the research assistant's letters and calls; it is never written in clear
(``HOME/fieldwork``, mode 0600, passphrase: secret ``pack_passphrase``) and is registered
for retention under ``PACK_CATEGORY``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tasks.core.archive import aes_zip_bytes
from tasks.core.contacts import ContactRecord
from tasks.core.csvsafe import csv_bytes
from tasks.core.home import write_private
from tasks.survey.outgoing import Outgoing

PACK_CATEGORY = "fieldwork_pack"
MAIL_MERGE_COLUMNS = ("token", "kind", "lead_carer_name", "address_line_1", "address_line_2",
                      "town", "postcode", "survey_url")
CALL_LIST_COLUMNS = ("token", "kind", "lead_carer_name", "phone", "survey_url")


def survey_url(template: str, token: str) -> str:
    """The household's survey link."""
    return template.replace("{token}", token)


def _csv(columns: Sequence[str], records: Iterable[Mapping[str, str | None]]) -> bytes:
    """CRLF CSV with a BOM (Word/Excel mail merge reads UTF-8), every cell formula-safe."""
    return csv_bytes(columns, ([record.get(c) or "" for c in columns] for record in records),
                     line_end="\r\n", excel_bom=True)


def pack_members(items: Sequence[Outgoing], contacts: Mapping[str, ContactRecord],
                 url_template: str) -> dict[str, bytes]:
    """The mail-merge CSV (post) and call list (phone) for the given items."""
    post: list[dict[str, str | None]] = []
    phone: list[dict[str, str | None]] = []
    for item in items:
        rec = contacts[item.family_pid]
        base = {"token": item.token, "kind": item.kind, "lead_carer_name": rec.lead_carer_name,
                "survey_url": survey_url(url_template, item.token)}
        if item.route == "post":
            post.append({**base, "address_line_1": rec.address_line_1,
                         "address_line_2": rec.address_line_2, "town": rec.town,
                         "postcode": rec.postcode})
        else:
            phone.append({**base, "phone": rec.phone})
    members = {}
    if post:
        members["mail_merge.csv"] = _csv(MAIL_MERGE_COLUMNS, post)
    if phone:
        members["call_list.csv"] = _csv(CALL_LIST_COLUMNS, phone)
    return members


def write_pack(path: Path, members: Mapping[str, bytes], passphrase: str) -> Path:
    """Write members as one AES-256 ZIP (never in clear), mode 0600."""
    write_private(path, aes_zip_bytes(members, passphrase))
    return path
