"""Contact store: AES-GCM per record, bound to its row, unreadable without its key."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from tasks.core.contacts import ContactRecord, contact_frame, delete_contact, load_contacts
from tasks.core.errors import ConfigError
from tasks.core.runtime import Runtime
from tasks.ingest.load import store_contacts

RECORD = ContactRecord("ZQXNAME1", "ZQXADDR1 Street", None, "Town", "QZ1 1AA",
                       "zqxmail1@example.invalid", "07700 900001", "email", False)


def _extract(conn, sha: str = "a" * 64) -> str:
    conn.execute(text(
        "INSERT INTO extracts (cluster_id, sha256, file_name, encryption, status, received_at)"
        " VALUES ('pilot', :s, 'x.zip', 'aes-zip', 'ingested', '2022-01-01')"), {"s": sha})
    return sha


def test_round_trip_and_no_plaintext_at_rest(runtime: Runtime) -> None:
    key = os.urandom(32)
    with runtime.engine.begin() as conn:
        sha = _extract(conn)
        assert store_contacts(conn, key, "pilot", sha, {"fam1": RECORD}) == 1
    with runtime.engine.connect() as conn:
        stored = conn.execute(text("SELECT nonce, ciphertext FROM contacts")).one()
        # whole markers: a 3-letter one turns up in random base64 about once in a thousand runs
        assert "ZQXNAME1" not in stored.ciphertext and "zqxmail1@" not in stored.ciphertext
        assert load_contacts(conn, key, "pilot") == {"fam1": RECORD}
        with pytest.raises(ConfigError, match="cannot be decrypted"):
            load_contacts(conn, os.urandom(32), "pilot")
    assert "ZQX" not in repr(RECORD)


def test_records_are_bound_to_their_family(runtime: Runtime) -> None:
    key = os.urandom(32)
    with runtime.engine.begin() as conn:
        sha = _extract(conn)
        store_contacts(conn, key, "pilot", sha, {"fam1": RECORD, "fam2": RECORD})
        conn.execute(text("UPDATE contacts SET family_pid = 'fam3' WHERE family_pid = 'fam1'"))
    with runtime.engine.connect() as conn, pytest.raises(ConfigError):
        load_contacts(conn, key, "pilot")


def test_delete_one_family(runtime: Runtime) -> None:
    key = os.urandom(32)
    with runtime.engine.begin() as conn:
        sha = _extract(conn)
        store_contacts(conn, key, "pilot", sha, {"fam1": RECORD, "fam2": RECORD})
        assert delete_contact(conn, "pilot", "fam1") == 1
    with runtime.engine.connect() as conn:
        assert list(load_contacts(conn, key, "pilot")) == ["fam2"]


def test_a_contact_frame_is_stored_like_the_records(runtime: Runtime) -> None:
    key = os.urandom(32)
    other = ContactRecord("ZQXNAME2", None, None, None, None, None, None, None, True)
    with runtime.engine.begin() as conn:
        sha = _extract(conn)
        assert store_contacts(conn, key, "pilot", sha,
                              contact_frame({"fam1": RECORD, "fam2": other})) == 2
    with runtime.engine.connect() as conn:
        stored = conn.execute(text("SELECT ciphertext FROM contacts")).scalars().all()
        assert not any("ZQXNAME" in c for c in stored)
        assert load_contacts(conn, key, "pilot") == {"fam1": RECORD, "fam2": other}


def test_concurrent_first_runs_agree_on_one_key(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tasks.core.home import prepare_home
    from tasks.core.secrets import CONTACT_KEY, load_or_create_key

    home = prepare_home(tmp_path / "var")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: load_or_create_key(CONTACT_KEY, home, {}), range(16)))
    keys = {key for key, _ in results}
    assert len(keys) == 1
    assert sum(created for _, created in results) == 1
    assert sorted(p.name for p in home.keys.iterdir()) == [CONTACT_KEY]
