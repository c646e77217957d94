"""The one ZIP form this project writes: WinZip AES-256, built in memory."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pyzipper


def aes_zip_bytes(members: Mapping[str, bytes], passphrase: str) -> bytes:
    """Pack members into a WinZip AES-256 encrypted ZIP, in memory (the only form we write)."""
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(buffer, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(passphrase.encode("utf-8"))
        archive.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
