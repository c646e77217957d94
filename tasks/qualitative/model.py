"""The qualitative strand's records and its two encrypted stores (names, transcript turns).

Every piece of text that could identify someone is sealed with AES-256-GCM before it reaches
the database: a participant's names under ``participant_key`` and each de-identified speaker
turn under ``transcript_key`` (keys in ``tasks.core.secrets``; destroying one crypto-shreds its
store). The associated data binds each ciphertext to its row, so records cannot be swapped.
Plaintext exists only in memory, in objects whose ``repr`` shows no text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, text

from tasks.core.errors import ConfigError

NONCE_BYTES = 12
FAMILY, PRACTITIONER = "family_interview", "practitioner_focus_group"
WITHDRAWN_TEXT = "[withdrawn]"


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (which key sealed a record)."""
    return hashlib.sha256(b"cluster-eval qualitative key id:" + key).hexdigest()[:16]


def seal(key: bytes, aad: str, plaintext: str) -> tuple[str, str]:
    """Encrypt text bound to ``aad``; return (nonce, ciphertext) as base64 text."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
    return base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()


def unseal(key: bytes, aad: str, nonce: str, ciphertext: str, store: str) -> str:
    """Decrypt one record, or a one-line ConfigError naming the store (never the content)."""
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext),
                                    aad.encode("utf-8"))
    except InvalidTag:
        raise ConfigError(f"a record of the {store} cannot be decrypted with the current key") from None
    return plain.decode("utf-8")


def names_aad(cluster_id: str, participant_id: str) -> str:
    return f"names:{cluster_id}:{participant_id}"


def turn_aad(cluster_id: str, session_id: str, turn_no: int) -> str:
    return f"turn:{cluster_id}:{session_id}:{turn_no}"


@dataclass(frozen=True)
class Names:
    """A participant's full name and other names (personal data: memory only, never shown)."""

    full_name: str
    other_names: tuple[str, ...]

    def __repr__(self) -> str:
        return "Names(<redacted>)"

    __str__ = __repr__

    def seal(self, key: bytes, cluster_id: str, participant_id: str) -> tuple[str, str]:
        body = json.dumps({"full_name": self.full_name, "other_names": list(self.other_names)})
        return seal(key, names_aad(cluster_id, participant_id), body)

    @classmethod
    def unseal(cls, key: bytes, cluster_id: str, participant_id: str, nonce: str, ciphertext: str) -> Names:
        body = json.loads(unseal(key, names_aad(cluster_id, participant_id), nonce, ciphertext,
                                 "participants' names store"))
        return cls(full_name=body["full_name"], other_names=tuple(body["other_names"]))


@dataclass(frozen=True)
class Participant:
    """One register row without personal data (what the database holds in clear)."""

    participant_id: str
    strand: str
    session_id: str
    session_date: str
    role: str
    survey_token: str | None
    pseudonym: str | None
    display_name: str  # the pseudonym, or "Practitioner N"
    consent_recording: bool
    consent_quotes: bool
    withdrawn: bool

    @property
    def is_family(self) -> bool:
        return self.strand == FAMILY


@dataclass(frozen=True)
class Turn:
    """One speaker turn of a stored (de-identified) transcript; ``words`` is never shown."""

    session_id: str
    turn_no: int  # 1-based; the line of the exported text
    source_line: int
    speaker: str  # participant_id, or a research-team label
    participant_id: str | None
    words: str
    withdrawn: bool = False

    def __repr__(self) -> str:
        return f"Turn({self.session_id} L{self.turn_no}, speaker {self.speaker}, <text>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Segment:
    """The part of one speaker turn a coded selection covers, with one code (code points in the words)."""

    selection_id: str
    session_id: str
    turn_no: int
    participant_id: str | None  # None for the research team's turns
    theme: str
    subtheme: str  # '' for text coded with the theme itself
    start_cp: int
    end_cp: int


def load_participants(conn: Connection, cluster_id: str) -> list[Participant]:
    """The register of a cluster, in participant_id order (no personal data)."""
    rows = conn.execute(text(
        "SELECT participant_id, strand, session_id, session_date, role, survey_token, pseudonym,"
        " display_name, consent_recording, consent_quotes, withdrawn_date"
        " FROM qual_participants WHERE cluster_id = :c ORDER BY participant_id"), {"c": cluster_id})
    withdrawn = withdrawn_ids(conn, cluster_id)
    return [Participant(r.participant_id, r.strand, r.session_id, str(r.session_date), r.role,
                        r.survey_token, r.pseudonym, r.display_name, bool(r.consent_recording),
                        bool(r.consent_quotes),
                        r.withdrawn_date is not None or r.participant_id in withdrawn)
            for r in rows]


def withdrawn_ids(conn: Connection, cluster_id: str) -> set[str]:
    """Participants who have withdrawn (the withdrawal record outlives the register)."""
    rows = conn.execute(text("SELECT participant_id FROM qual_withdrawals WHERE cluster_id = :c"),
                        {"c": cluster_id})
    return {r.participant_id for r in rows}


def load_names(conn: Connection, key: bytes, cluster_id: str) -> dict[str, Names]:
    """Decrypt the names of every participant who still has them, in memory."""
    rows = conn.execute(text(
        "SELECT participant_id, names_nonce, names_ciphertext FROM qual_participants"
        " WHERE cluster_id = :c AND names_ciphertext IS NOT NULL"), {"c": cluster_id})
    return {r.participant_id: Names.unseal(key, cluster_id, r.participant_id, r.names_nonce,
                                           r.names_ciphertext) for r in rows}


def load_turns(conn: Connection, key: bytes, cluster_id: str,
               sessions: Iterable[str] | None = None) -> list[Turn]:
    """Decrypt the stored turns of a cluster (optionally some sessions), in session/turn order."""
    wanted = None if sessions is None else set(sessions)
    rows = conn.execute(text(
        "SELECT session_id, turn_no, source_line, speaker, participant_id, nonce, ciphertext, withdrawn"
        " FROM qual_turns WHERE cluster_id = :c ORDER BY session_id, turn_no"), {"c": cluster_id})
    return [Turn(r.session_id, r.turn_no, r.source_line, r.speaker, r.participant_id,
                 unseal(key, turn_aad(cluster_id, r.session_id, r.turn_no), r.nonce, r.ciphertext,
                        "transcript store"), bool(r.withdrawn))
            for r in rows if wanted is None or r.session_id in wanted]


def export_text(turns: Sequence[Turn]) -> tuple[str, list[tuple[int, int]]]:
    """A session's plain text as exported for coding: one line per turn, ``SPEAKER: words``.

    Returns the text and, per turn, the code-point range of its words in that text (REFI-QDA
    positions count Unicode code points). Line N of the text is turn N.
    """
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    position = 0
    for turn in turns:
        prefix = f"{turn.speaker}: "
        words = " ".join(turn.words.split())  # one line per turn
        start = position + len(prefix)
        offsets.append((start, start + len(words)))
        line = prefix + words + "\n"
        parts.append(line)
        position += len(line)
    return "".join(parts), offsets


def text_sha256(plain: str) -> str:
    """SHA-256 (hex) of a text as UTF-8: the check that a coded source is the one exported."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()
