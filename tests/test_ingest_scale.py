"""The fast paths of the ingest give exactly what the plain per-value forms gave.

Reading bytes without decoding them into a string, hashing each distinct id once from
precomputed HMAC states, and sealing the contact frame in one pass are checked here against
the plain formulas (json.dumps, hmac.new, str.decode) on awkward inputs. Speed itself is a
benchmark (benchmarks/ingest.py), never a test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.codes import CHILDREN, EPISODES, FAMILIES, TABLES
from schemas.columns import READ_COLUMNS, TABLE_COLUMNS
from tasks.core.contacts import (
    CONTACT_FRAME_COLUMNS,
    SEALED_COLUMNS,
    ContactRecord,
    contact_frame,
    decrypt_contact,
    key_id,
    load_contacts,
    seal_contact_frame,
)
from tasks.core.errors import ConfigError, InputRejected
from tasks.core.runtime import Runtime
from tasks.demo.render import aes_zip, render_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.pipeline import IngestSecrets, ingest_file
from tasks.ingest.pseudonymise import pseudonym_maps, pseudonymise_series, pseudonymise_tables
from tasks.ingest.reader import detect_encoding, read_tables
from tasks.ingest.validate import _coerce, coerce_table, validate_tables

FILE = "extract.zip"
WINDOW = (date(2021, 1, 1), date(2021, 6, 30))
PASS = "scale-test-passphrase"  # noqa: S105 - test passphrase
FIELDS = CONTACT_FRAME_COLUMNS[1:]


def formula(key: bytes, kind: str, source_id: str, cluster: str = "pilot") -> str:
    """The documented pseudonym, with the standard library's HMAC."""
    message = b"\x1f".join([b"cluster-eval/pid/v1", cluster.encode(), kind.encode(),
                            source_id.encode()])
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


# --------------------------------------------------------------------------- pseudonyms


@pytest.mark.parametrize("key", [b"k" * 32, b"", b"x" * 64, bytes(range(200))])
def test_precomputed_states_give_the_hmac_of_every_id(key: bytes) -> None:
    ids = ["F000001", "", "Zoë-7", "ID with spaces", "😀", "x" * 300, None]
    out = pseudonymise_series(pl.Series("family_id", ids), key, "pilot", "family")
    assert out.name == "family_id"
    assert out.to_list() == [None if v is None else formula(key, "family", v) for v in ids]


def test_an_id_shared_by_tables_is_hashed_once_with_the_same_pseudonym() -> None:
    key = os.urandom(32)
    tables = {
        FAMILIES: pl.DataFrame({"family_id": ["F1", "F2"], "household_size": [1, 2]}),
        CHILDREN: pl.DataFrame({"child_id": ["C1", "C2", "C3"], "family_id": ["F2", "F1", None]}),
        EPISODES: pl.DataFrame({"episode_id": ["E1"], "family_id": ["F2"]}),
    }
    maps = pseudonym_maps(tables, key, "pilot")
    assert maps["family"].height == 2  # F1 and F2, once each although in three tables
    assert dict(maps["family"].iter_rows()) == {f: formula(key, "family", f) for f in ("F1", "F2")}
    assert dict(maps["child"].iter_rows()) == {c: formula(key, "child", c) for c in ("C1", "C2", "C3")}


def test_pseudonymised_tables_keep_row_order_and_missing_keys() -> None:
    key = os.urandom(32)
    families = pl.DataFrame({
        "family_id": ["F2", "F1"], "household_size": [3, 1],
        **{c: [None, "x"] for c in FIELDS if c != "do_not_contact"},
        "do_not_contact": [None, False],
    })
    children = pl.DataFrame({"child_id": ["C9", "C1", "C5"], "family_id": ["F1", None, "F2"]})
    failures = pl.DataFrame(schema={"table": pl.String, "row": pl.Int64, "row_key": pl.String,
                                    "column": pl.String, "rule": pl.String, "reason": pl.String})
    out = pseudonymise_tables({FAMILIES: families, CHILDREN: children}, failures, key, "pilot")
    assert out.tables[CHILDREN].columns == ["child_pid", "family_pid"]
    assert out.tables[CHILDREN].get_column("family_pid").to_list() == [
        formula(key, "family", "F1"), None, formula(key, "family", "F2")]
    assert out.tables[CHILDREN].get_column("child_pid").to_list() == [
        formula(key, "child", c) for c in ("C9", "C1", "C5")]
    assert out.tables[FAMILIES].columns == ["family_pid", "household_size"]
    assert out.contacts.columns == list(CONTACT_FRAME_COLUMNS)
    assert out.contacts.get_column("do_not_contact").to_list() == [True, False]  # missing: True
    assert out.contacts.get_column("family_pid").to_list() == [
        formula(key, "family", "F2"), formula(key, "family", "F1")]


# --------------------------------------------------------------------------- contacts


def _random_records(n: int, seed: int) -> dict[str, ContactRecord]:
    rng = random.Random(seed)
    alphabet = ([chr(i) for i in range(0x250)]
                + ["’", "£", "€", "😀", "\u2028", "中", "\x7f", '"', "\\", "/", "\ufeff"])
    records = {}
    for i in range(n):
        values = [None if rng.random() < 0.2 else
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
                  for _ in FIELDS[:-1]]
        records[f"pid{i:04d}"] = ContactRecord(*values, do_not_contact=rng.random() < 0.5)
    return records


def _open(key: bytes, cluster: str, family_pid: str, nonce: str, ciphertext: str) -> bytes:
    return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext),
                               f"{cluster}:{family_pid}".encode())


def test_sealed_frame_holds_the_json_dumps_plaintext_of_each_record() -> None:
    key = os.urandom(32)
    records = _random_records(400, seed=3)
    records["plain"] = ContactRecord("N One", "1 Road", None, "Town", "QZ1 1AA", None, "07700",
                                     "post", False)
    sealed = seal_contact_frame(key, "pilot", "a" * 64, contact_frame(records))
    assert sealed.columns == list(SEALED_COLUMNS)
    assert sealed.height == len(records)
    assert set(sealed.get_column("cluster_id")) == {"pilot"}
    assert set(sealed.get_column("key_id")) == {key_id(key)}
    assert set(sealed.get_column("extract_sha256")) == {"a" * 64}
    assert sealed.get_column("nonce").n_unique() == len(records)
    for row in sealed.iter_rows(named=True):
        record = records[row["family_pid"]]
        expected = json.dumps({f: getattr(record, f) for f in FIELDS}, separators=(",", ":"))
        assert _open(key, "pilot", row["family_pid"], row["nonce"], row["ciphertext"]) == (
            expected.encode("utf-8"))
        assert decrypt_contact(key, "pilot", row["family_pid"], row["nonce"],
                               row["ciphertext"]) == record


def test_sealed_rows_are_bound_to_their_family() -> None:
    key = os.urandom(32)
    records = _random_records(2, seed=1)
    sealed = seal_contact_frame(key, "pilot", "b" * 64, contact_frame(records))
    first, second = sealed.iter_rows(named=True)
    with pytest.raises(ConfigError):
        decrypt_contact(key, "pilot", second["family_pid"], first["nonce"], first["ciphertext"])


def test_an_empty_contact_frame_seals_to_no_rows() -> None:
    sealed = seal_contact_frame(os.urandom(32), "pilot", "c" * 64, contact_frame({}))
    assert sealed.columns == list(SEALED_COLUMNS) and sealed.height == 0


# --------------------------------------------------------------------------- reader


def _members(tables: dict[str, pl.DataFrame]) -> dict[str, bytes]:
    return {f"{t}.csv": tables[t].write_csv().encode() for t in TABLES}


def _read_as_text(data: bytes, encoding: str) -> bytes:
    """The plain path: decode the whole file, normalise line ends, encode as UTF-8."""
    text = data.decode(encoding)
    return text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r", "mixed"])
def test_bytes_are_read_as_the_decoded_text_would_be(encoding: str, line_end: str) -> None:
    tables = generate_tables(30, seed=11)
    families = tables[FAMILIES].with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("Siân O’Brien £"))
        .otherwise(pl.col("lead_carer_name")).alias("lead_carer_name"),
        # a quoted cell with line ends inside a column that is read
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("Flat 2\r\nBlock\rB\nEast"))
        .otherwise(pl.col("address_line_2")).alias("address_line_2"),
    )
    text = families.write_csv()
    lines = text.split("\n")
    if line_end == "mixed":
        ends = ["\r\n", "\r", "\n"]
        text = "".join(line + ends[i % 3] for i, line in enumerate(lines[:-1]))
    else:
        text = line_end.join(lines)
    data = text.encode("cp1252" if encoding == "cp1252" else "utf-8")
    if encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + data
    members = _members(tables)
    members["families.csv"] = data
    assert detect_encoding(data) == encoding
    got = read_tables(members, FILE)
    members["families.csv"] = _read_as_text(data, encoding)
    want = read_tables(members, FILE)
    assert got.frames[FAMILIES].equals(want.frames[FAMILIES])
    cell = got.frames[FAMILIES].get_column("address_line_2")[2]
    assert "\r" not in cell and cell.replace("\n\n", "\n") == "Flat 2\nBlock\nB\nEast"
    assert got.frames[FAMILIES].get_column("lead_carer_name")[1] == "Siân O’Brien £"
    assert got.encodings[FAMILIES] == encoding


def test_utf8_split_across_check_chunks_is_still_utf8() -> None:
    # A two-byte character straddles the 1 MiB boundary of the chunked UTF-8 check.
    data = b"a" * ((1 << 20) - 1) + "é".encode() + b"b" * 10
    assert detect_encoding(data) == "utf-8"
    assert detect_encoding(data[: 1 << 20]) == "cp1252"  # cut in half: not UTF-8
    assert detect_encoding(b"a" * (3 << 20) + b"\x81") == "cp1252"


def test_long_and_multi_line_headers_are_read() -> None:
    tables = generate_tables(5, seed=2)
    members = _members(tables)
    wide = tables[CHILDREN].with_columns(
        pl.lit("x").alias("n" * 70_000),  # a header row longer than the probe of the header
    )
    members["children.csv"] = wide.write_csv().encode()
    raw = read_tables(members, FILE)
    assert raw.extra_columns[CHILDREN] == ["n" * 70_000]
    quoted = ",".join(TABLE_COLUMNS[EPISODES]) + ',"notes\nmore"\n'
    body = tables[EPISODES].write_csv(include_header=False)
    members["episodes.csv"] = (quoted + "".join(
        line + ",x\n" for line in body.splitlines())).encode()
    raw = read_tables(members, FILE)
    assert raw.extra_columns[EPISODES] == ["notes\nmore"]
    assert raw.rows_read[EPISODES] == tables[EPISODES].height


@pytest.mark.parametrize("data", [b"", b"  \r\n\t", b"\xef\xbb\xbf \n", "\u00a0 \n".encode(),
                                  "\u3000\u2028".encode()])
def test_white_space_only_csv_is_empty(data: bytes) -> None:
    members = _members(generate_tables(3, seed=1))
    members["goals.csv"] = data
    with pytest.raises(InputRejected, match="the CSV is empty") as err:
        read_tables(members, FILE)
    assert err.value.table == "goals"


# --------------------------------------------------------------------------- validation


def _coerced_and_full_rule(table: str, column: str, kind: str, frame: pl.DataFrame
                           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``coerce_table`` of ``frame`` (padded to the table's read columns), the full rule's values
    and problems of ``column`` (``v``, ``p``), and the type failures found in ``column``."""
    for name in READ_COLUMNS[table]:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    typed, found = coerce_table(table, frame)
    value, problem = _coerce(column, kind, None)
    assert problem is not None
    want = frame.select(value.alias("v"), problem.alias("p"))
    return typed, want, found.filter(pl.col("column") == column)


@pytest.mark.parametrize("cells", [
    ["3", "+4", "-2", "12"],  # all read by the plain cast
    ["3", "5.0", "+6.00", "+-7", "-0", None],  # the full rule reads what the cast cannot
    ["3", "x", " 4", "4.5", "1_0", "0x1", "٣", "9223372036854775808", "+", "--5"],  # errors
])
def test_whole_numbers_read_as_the_full_rule_reads_them(cells: list[str | None]) -> None:
    n = len(cells)
    frame = pl.DataFrame({
        "_row": list(range(1, n + 1)), "family_id": [f"F{i}" for i in range(n)],
        "household_size": cells,
        **{c: [None] * n for c in ("adults_in_employment", "imd_decile")},
    }, schema_overrides={c: pl.String for c in ("household_size", "adults_in_employment",
                                                  "imd_decile")})
    typed, want, bad = _coerced_and_full_rule(FAMILIES, "household_size", "integer", frame)
    assert typed.get_column("household_size").to_list() == want.get_column("v").to_list()
    assert bad.get_column("_row").to_list() == [
        i + 1 for i, p in enumerate(want.get_column("p").to_list()) if p is not None]
    assert set(bad.get_column("reason")) <= {"not a whole number"}


# --------------------------------------------------------------------------- pipeline memory


def test_consuming_stages_drop_their_inputs_as_they_go() -> None:
    members = render_members(generate_tables(20, seed=4), fmt="csv", messy=True)
    raw = read_tables(dict(members), FILE)  # the default leaves the caller's members alone
    kept = dict(members)
    consumed = read_tables(kept, FILE, consume=True)
    assert kept == {}
    for table in TABLES:
        assert consumed.frames[table].equals(raw.frames[table])
    plain = validate_tables(raw, window_start=WINDOW[0], window_end=WINDOW[1])
    assert set(raw.frames) == set(TABLES)
    eaten = validate_tables(consumed, window_start=WINDOW[0], window_end=WINDOW[1], consume=True)
    assert consumed.frames == {}
    assert eaten.failures.equals(plain.failures) and eaten.quarantined == plain.quarantined
    for table in TABLES:
        assert eaten.tables[table].equals(plain.tables[table])
    tables = dict(plain.tables)
    out = pseudonymise_tables(tables, plain.failures, b"k" * 32, "pilot", consume=True)
    assert tables == {}
    again = pseudonymise_tables(eaten.tables, eaten.failures, b"k" * 32, "pilot")
    assert all(out.tables[t].equals(again.tables[t]) for t in TABLES)
    assert out.contacts.equals(again.contacts)


def test_report_keeps_extra_columns_after_the_raw_frames_are_dropped(
        sqlite_runtime: Runtime, tmp_path: Path) -> None:
    members = render_members(generate_tables(30, seed=6), fmt="csv", messy=True)
    path = tmp_path / "extract.zip"
    path.write_bytes(aes_zip(members, PASS))
    secrets = IngestSecrets(passphrase=PASS, identity=None,
                            pseudonym_key=b"p" * 32, contact_key=b"c" * 32)
    outcome = ingest_file(path, sqlite_runtime, secrets)
    assert outcome.status == "ingested", outcome.error
    assert outcome.report is not None
    extra = outcome.report.frame.filter(pl.col("section") == "extra_column_ignored")
    assert sorted((t, c.lower()) for t, c in extra.select("table", "column").iter_rows()) == [
        ("episodes", "notes_internal"), ("families", "notes_internal")]
    with sqlite_runtime.engine.connect() as conn:
        stored = load_contacts(conn, b"c" * 32, "pilot")
    assert len(stored) == outcome.tables[FAMILIES].loaded


@pytest.mark.parametrize("cells", [
    ["2021-01-02", "2021-1-2", None, "1900-01-01"],  # all ISO: the plain reading
    ["2021-01-02", "02/01/2021", "2021-01-02"],  # a UK date: the full rule reads the column
    ["2021-01-02", "13/25/2021", "01/13/2021", "1899-12-31", "+2021-01-02", "2021- 1-02",
     "21-01-02", "x"],  # errors, a US-only date, implausible years, near-ISO shapes
])
def test_dates_read_as_the_full_rule_reads_them(cells: list[str | None]) -> None:
    n = len(cells)
    frame = pl.DataFrame({"_row": list(range(1, n + 1)), "referral_date": cells},
                         schema_overrides={"referral_date": pl.String})
    typed, want, bad = _coerced_and_full_rule(EPISODES, "referral_date", "date", frame)
    assert typed.get_column("referral_date").to_list() == want.get_column("v").to_list()
    assert list(bad.select("_row", "reason").iter_rows()) == [
        (i + 1, p) for i, p in enumerate(want.get_column("p").to_list()) if p is not None]
