"""tasks.core.archive: decrypt the extract in memory and refuse unsafe or damaged archives.

Every archive is built in memory here (pyzipper, zipfile, pyrage, xlsxwriter); the
ZipCrypto archive is written by hand with the traditional PKWARE cipher, because
neither zipfile nor pyzipper can write one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pyrage
import pytest
import pyzipper
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyzipper.zipfile_aes import AESZipInfo

from tasks.core import archive
from tasks.core.archive import ArchiveLimits, Extract, decrypt_extract, sha256_bytes, verify_sidecar
from tasks.core.archive import entries as archive_entries
from tasks.core.archive import limits as archive_limits
from tasks.core.archive import zipread as archive_zipread
from tasks.core.errors import InputRejected

PASS = "Corr3ct-horse-battery-staple"  # noqa: S105 - test passphrase
WRONG = "Wrong-horse-battery-staple"  # noqa: S105
NAME = "extract.zip"
FAMILIES = b"family_id,household_size\r\nF-SECRET-001,4\r\nF-SECRET-002,3\r\n"
CHILDREN = b"child_id,family_id,child_name\r\nC-SECRET-777,F-SECRET-001,Secret Childname\r\n"
SECRETS = ("F-SECRET", "C-SECRET", "Secret Childname", PASS, WRONG)
TWO_CSVS = {"families.csv": FAMILIES, "children.csv": CHILDREN}
MiB = 1024 * 1024


# --------------------------------------------------------------------------- builders


def aes_zip(
    members: dict[str, bytes] | list[tuple[str | AESZipInfo, bytes]],
    *,
    passphrase: str = PASS,
    nbits: int = 256,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buf = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with pyzipper.AESZipFile(buf, "w", compression=compression, encryption=pyzipper.WZ_AES,
                             encryption_kwargs={"nbits": nbits}) as zf:
        zf.setpassword(passphrase.encode())
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


def plain_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def zipcrypto_zip(name: str, data: bytes, password: bytes) -> bytes:
    """A one-member ZIP encrypted with legacy PKWARE ZipCrypto (stored), built by hand."""
    table = _crc_table()
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(byte: int) -> None:
        keys[0] = (keys[0] >> 8) ^ table[(keys[0] ^ byte) & 0xFF]
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = (keys[2] >> 8) ^ table[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

    def encrypt(plain: bytes) -> bytes:
        out = bytearray()
        for byte in plain:
            temp = keys[2] | 2
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            update(byte)
        return bytes(out)

    for byte in password:
        update(byte)
    crc = zlib.crc32(data)
    body = encrypt(os.urandom(11) + bytes([crc >> 24])) + encrypt(data)
    raw_name = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0x1, 0, 0, 0x21, crc, len(body),
                        len(data), len(raw_name), 0) + raw_name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0x1, 0, 0, 0x21, crc,
                          len(body), len(data), len(raw_name), 0, 0, 0, 0, 0o600 << 16,
                          0) + raw_name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                      len(local) + len(body), 0)
    return local + body + central + end


def set_claimed_size(data: bytes, size: int, *, member: int = 0) -> bytes:
    """Overwrite a member's uncompressed size in the central directory (the one readers use)."""
    out = bytearray(data)
    cd_offset = struct.unpack_from("<L", out, len(out) - 22 + 16)[0]
    entry = cd_offset
    for _ in range(member):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", out, entry + 28)
        entry += 46 + name_len + extra_len + comment_len
    assert out[entry:entry + 4] == b"PK\x01\x02"
    struct.pack_into("<L", out, entry + 24, size)
    return bytes(out)


def xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    sheet = book.add_worksheet("families")
    sheet.write_row(0, 0, ["family_id", "household_size"])
    sheet.write_row(1, 0, ["F-SECRET-001", 4])
    book.close()
    return buf.getvalue()


def armor(binary: bytes) -> bytes:
    body = base64.b64encode(binary).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN AGE ENCRYPTED FILE-----\n" + "\n".join(lines)
            + "\n-----END AGE ENCRYPTED FILE-----\n").encode()


@pytest.fixture(scope="module")
def age_key() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


@pytest.fixture(scope="module")
def identity_text(age_key: pyrage.x25519.Identity) -> str:
    """Identity file as age-keygen writes it: comment lines, then the key."""
    return (f"# created: 2024-01-01T00:00:00Z\n# public key: {age_key.to_public()}\n"
            f"{age_key}\n")


@pytest.fixture(scope="module")
def age_passphrase_file() -> bytes:
    """The one scrypt age file of this module (scrypt costs seconds per call)."""
    return pyrage.passphrase.encrypt(plain_zip(TWO_CSVS), PASS)


def refused(phrase: str, data: bytes, *, file_name: str = NAME, passphrase: str | None = PASS,
            identity: str | None = None, limits: ArchiveLimits | None = None) -> str:
    """Assert decrypt_extract refuses with ``phrase``, names the file, leaks nothing."""
    with pytest.raises(InputRejected) as caught:
        decrypt_extract(data, file_name, passphrase=passphrase, identity=identity,
                        limits=limits or ArchiveLimits())
    message = str(caught.value)
    assert phrase in message, message
    assert message.startswith(f"file {file_name}: ")
    assert caught.value.file == file_name
    for secret in SECRETS:
        assert secret not in message, message
    for line in (identity or "").splitlines():
        assert not line.startswith("AGE-SECRET-KEY-1") or line not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    return message


# --------------------------------------------------------------------------- round trips


def test_aes_zip_round_trip() -> None:
    data = aes_zip(TWO_CSVS)
    extract = decrypt_extract(data, NAME, passphrase=PASS, identity=None)
    assert extract == Extract(sha256=sha256_bytes(data), encryption="aes-zip", members=TWO_CSVS)
    assert extract.sha256 == hashlib.sha256(data).hexdigest()
    assert "F-SECRET" not in repr(extract)


def test_aes_zip_stored_members_in_sub_folders_keyed_by_base_name() -> None:
    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(PASS.encode())
        zf.writestr("extract/", b"")  # directory entry, skipped
        zf.writestr("extract/families.csv", FAMILIES)
        zf.writestr("extract/more/children.csv", CHILDREN)
        zf.writestr("__MACOSX/extract/._families.csv", b"\x00\x05\x16\x07 apple double")
        zf.writestr("extract/.DS_Store", b"Bud1 clutter")
    extract = decrypt_extract(buf.getvalue(), NAME, passphrase=PASS, identity=None)
    assert extract.members == TWO_CSVS


def test_age_x25519_round_trip(age_key: pyrage.x25519.Identity, identity_text: str) -> None:
    data = pyrage.encrypt(plain_zip(TWO_CSVS), [age_key.to_public()])
    extract = decrypt_extract(data, "extract.age", passphrase=None, identity=identity_text)
    assert extract.encryption == "age"
    assert extract.members == TWO_CSVS
    assert extract.sha256 == sha256_bytes(data)


def test_age_armored_round_trip_with_aes_zip_inside(
    age_key: pyrage.x25519.Identity, identity_text: str
) -> None:
    """Armored age (CRLF, leading blank line) wrapping an AES-256 ZIP: same passphrase opens it."""
    binary = pyrage.encrypt(aes_zip(TWO_CSVS), [age_key.to_public()])
    data = b"\r\n" + armor(binary).replace(b"\n", b"\r\n")
    extract = decrypt_extract(data, "extract.age", passphrase=PASS, identity=identity_text)
    assert extract.members == TWO_CSVS
    refused(archive.PASSPHRASE_ENV, data, file_name="extract.age", passphrase=None,
            identity=identity_text)


def test_age_passphrase_round_trip_and_wrong_passphrase(age_passphrase_file: bytes) -> None:
    extract = decrypt_extract(age_passphrase_file, "x.age", passphrase=PASS, identity=None)
    assert extract.members == TWO_CSVS
    assert extract.encryption == "age"
    refused("wrong passphrase", age_passphrase_file, file_name="x.age", passphrase=WRONG)


def test_age_passphrase_file_without_passphrase(age_passphrase_file: bytes) -> None:
    refused(archive.PASSPHRASE_ENV, age_passphrase_file, file_name="x.age", passphrase=None,
            identity="AGE-SECRET-KEY-1IGNORED")


def test_content_decides_the_format_not_the_extension() -> None:
    extract = decrypt_extract(aes_zip(TWO_CSVS), "extract.age", passphrase=PASS, identity=None)
    assert extract.encryption == "aes-zip"


# --------------------------------------------------------------------------- key refusals


def test_wrong_aes_passphrase() -> None:
    refused("wrong passphrase", aes_zip(TWO_CSVS), passphrase=WRONG)


@pytest.mark.parametrize("passphrase", [None, ""])
def test_no_passphrase(passphrase: str | None) -> None:
    message = refused("no passphrase", aes_zip(TWO_CSVS), passphrase=passphrase)
    assert "CLUSTER_EVAL_EXTRACT_PASSPHRASE" in message


def test_wrong_age_identity(age_key: pyrage.x25519.Identity) -> None:
    data = pyrage.encrypt(plain_zip(TWO_CSVS), [age_key.to_public()])
    other = str(pyrage.x25519.Identity.generate())
    message = refused("wrong age identity", data, file_name="e.age", identity=other)
    assert "CLUSTER_EVAL_AGE_IDENTITY" in message
    assert other not in message


def test_age_without_identity_or_with_a_bad_one(age_key: pyrage.x25519.Identity) -> None:
    data = pyrage.encrypt(plain_zip(TWO_CSVS), [age_key.to_public()])
    refused("CLUSTER_EVAL_AGE_IDENTITY", data, file_name="e.age", identity=None)
    bad = "# comment only\nAGE-SECRET-KEY-1NOTAVALIDKEY\n"  # bech32 checksum fails
    assert "NOTAVALIDKEY" not in refused("not valid", data, file_name="e.age", identity=bad)
    refused("not valid", data, file_name="e.age", identity="# nothing here\n")


def test_age_plaintext_must_be_a_zip(age_key: pyrage.x25519.Identity, identity_text: str) -> None:
    data = pyrage.encrypt(FAMILIES, [age_key.to_public()])
    refused("is not a ZIP archive", data, file_name="e.age", identity=identity_text)


def test_age_truncated(age_key: pyrage.x25519.Identity, identity_text: str) -> None:
    data = pyrage.encrypt(plain_zip(TWO_CSVS), [age_key.to_public()])
    for cut in (data[: len(data) // 2], data[:30], data[:-1]):
        refused("is corrupt or truncated", cut, file_name="e.age", identity=identity_text)
    refused("is corrupt or truncated", armor(data)[:-40], file_name="e.age", identity=identity_text)


# --------------------------------------------------------------------------- encryption refusals


def test_plain_zip_refused() -> None:
    refused("is not encrypted; only AES-256 ZIP or age are accepted", plain_zip(TWO_CSVS))


def test_partly_encrypted_zip_refused() -> None:
    buf = io.BytesIO(plain_zip({"families.csv": FAMILIES}))
    with pyzipper.AESZipFile(buf, "a", encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(PASS.encode())
        zf.writestr("children.csv", CHILDREN)
    refused("only partly encrypted", buf.getvalue())


def test_zipcrypto_refused() -> None:
    data = zipcrypto_zip("families.csv", FAMILIES, PASS.encode())
    with pyzipper.ZipFile(io.BytesIO(data)) as zf:  # it really is ZipCrypto
        assert zf.read("families.csv", pwd=PASS.encode()) == FAMILIES
    refused("uses legacy ZipCrypto, which is broken; re-send as AES-256 ZIP or age", data)


@pytest.mark.parametrize("nbits", [128, 192])
def test_weak_aes_refused(nbits: int) -> None:
    refused(f"uses AES-{nbits} encryption", aes_zip(TWO_CSVS, nbits=nbits))


def test_bzip2_member_refused() -> None:
    refused("compression method", aes_zip(TWO_CSVS, compression=zipfile.ZIP_BZIP2))


# --------------------------------------------------------------------------- unsafe archives


@pytest.mark.parametrize("name", ["../evil.csv", "extract/../../evil.csv", "/etc/evil.csv",
                                  "\\evil.csv", "C:/evil.csv", "extract\\evil.csv",
                                  "evil.csv\x00.txt", "evil\n.csv"])
def test_unsafe_member_path_refused(name: str) -> None:
    placeholder = name.replace("\x00", "#")  # zipfile cuts names at NUL: patch the NUL in after
    data = aes_zip([(placeholder, FAMILIES)]).replace(placeholder.encode(), name.encode())
    message = refused("unsafe path", data)
    assert "evil" not in message


def test_symlink_member_refused() -> None:
    link = AESZipInfo("families.csv")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused("symbolic link", aes_zip([(link, b"/etc/passwd")]))


def test_too_many_members_refused() -> None:
    members = {f"t{i}.csv": b"a,b\n" for i in range(51)}
    refused("more than 50 members", aes_zip(members))
    small = ArchiveLimits(max_members=3)
    refused("more than 3 members", aes_zip({f"t{i}.csv": b"x" for i in range(4)}), limits=small)


def test_duplicate_names_refused() -> None:
    with pytest.warns(UserWarning):
        data = aes_zip([("families.csv", FAMILIES), ("families.csv", CHILDREN)])
    refused("two members named families.csv", data)
    refused("more than one member named Families.CSV",
            aes_zip([("a/families.csv", FAMILIES), ("b/Families.CSV", FAMILIES)]))


def test_total_over_limit_refused_from_headers() -> None:
    big = os.urandom(2 * MiB)  # incompressible, so only the size limit applies
    refused("expands to more than 1 MB", aes_zip({"families.csv": big}),
            limits=ArchiveLimits(max_total_bytes=MiB))


def test_total_over_limit_refused_while_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """b.csv's header claims 1 KiB; the running total still stops its stream."""
    reads: list[int] = []
    original = archive_limits.Budget.add

    def counting_add(self: archive_limits.Budget, n: int) -> None:
        reads.append(n)
        original(self, n)

    monkeypatch.setattr(archive_limits.Budget, "add", counting_add)
    data = aes_zip({"a.csv": os.urandom(700 * 1024), "b.csv": os.urandom(2 * MiB)})
    data = set_claimed_size(data, 1024, member=1)
    refused("expands to more than 1 MB", data, limits=ArchiveLimits(max_total_bytes=MiB))
    assert max(reads) <= archive_limits.CHUNK_SIZE
    assert sum(reads) <= MiB + archive_limits.CHUNK_SIZE  # stopped at the first chunk over the limit


@pytest.mark.parametrize("claimed", [10, len(FAMILIES) * 50 + 1])
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_header_with_wrong_size_is_refused(claimed: int, compression: int) -> None:
    """AE-2 has no CRC: a member must not come back silently cut to the size its header claims."""
    data = set_claimed_size(aes_zip({"families.csv": FAMILIES * 50}, compression=compression),
                            claimed)
    refused("is corrupt or truncated", data)


def test_high_ratio_member_refused() -> None:
    refused("archive member zeros.csv is compressed more than 100:1",
            aes_zip({"zeros.csv": bytes(5 * MiB), "families.csv": FAMILIES}))


def skip_header_size_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn off the early checks of the sizes headers claim (archive and workbook alike)."""
    for module in (archive_entries, archive_zipread):
        monkeypatch.setattr(module, "check_claimed_sizes", lambda *a, **k: None)


def test_high_ratio_refused_while_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    lying = set_claimed_size(aes_zip({"zeros.csv": bytes(5 * MiB)}), 1000)  # header: 1000 bytes
    refused("compressed more than 100:1", lying)
    skip_header_size_checks(monkeypatch)
    refused("compressed more than 100:1", aes_zip({"zeros.csv": bytes(5 * MiB)}))


def test_nested_archives_refused() -> None:
    inner = plain_zip({"families.csv": FAMILIES})
    refused("inner.zip is itself an archive", aes_zip({"inner.zip": inner}))
    refused("families.csv is itself an archive", aes_zip({"families.csv": inner}))
    refused("data.csv.gz is itself an archive", aes_zip({"data.csv.gz": gzip.compress(FAMILIES)}))
    refused("families.csv is itself an archive",
            aes_zip({"families.csv": gzip.compress(FAMILIES)}))
    refused("x.7z is itself an archive", aes_zip({"x.7z": b"whatever"}))


def test_xlsx_member_allowed() -> None:
    book = xlsx_bytes()
    extract = decrypt_extract(aes_zip({"extract/Cluster extract.xlsx": book}), NAME,
                              passphrase=PASS, identity=None)
    assert extract.members == {"Cluster extract.xlsx": book}


def test_xlsx_bomb_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", b"<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", b" " * (20 * MiB))
    message = refused("workbook extract.xlsx is compressed more than 100:1",
                      aes_zip({"extract.xlsx": buf.getvalue()}))
    assert "sheet1" not in message


@pytest.mark.parametrize("trust_headers", [True, False])
def test_xlsx_over_size_limit_refused(monkeypatch: pytest.MonkeyPatch, trust_headers: bool) -> None:
    """A ~1.6 MB workbook whose sheet expands to 3 MiB, under a 2 MiB limit."""
    if not trust_headers:
        skip_header_size_checks(monkeypatch)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as book:
        book.writestr("xl/worksheets/sheet1.xml", os.urandom(3 * MiB // 2).hex())
    assert len(buf.getvalue()) < 2 * MiB
    refused("workbook extract.xlsx expands to more than 2 MB",
            aes_zip({"extract.xlsx": buf.getvalue()}, compression=zipfile.ZIP_STORED),
            limits=ArchiveLimits(max_total_bytes=2 * MiB))


def test_xlsx_with_too_many_parts_or_not_a_zip_refused() -> None:
    many = plain_zip({f"xl/p{i}.xml": b"<x/>" for i in range(51)})
    refused("workbook extract.xlsx has more than 50 members", aes_zip({"extract.xlsx": many}))
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100)  # password-protected Excel
    refused("is not a valid XLSX file", aes_zip({"extract.xlsx": ole}))
    refused("workbook extract.xlsx is corrupt or truncated",
            aes_zip({"extract.xlsx": xlsx_bytes()[:2000]}))


# --------------------------------------------------------------------------- damaged input


def test_truncated_zip_refused() -> None:
    data = aes_zip(TWO_CSVS)
    refused("is corrupt or truncated", data[: len(data) // 2])


def test_flipped_byte_refused() -> None:
    data = bytearray(aes_zip({"families.csv": FAMILIES * 20}, compression=zipfile.ZIP_STORED))
    # local header (30) + name (12) + AES extra (11) + salt (16) + verifier (2) + 40 into the data
    data[30 + 12 + 11 + 16 + 2 + 40] ^= 0x01
    refused("is corrupt or truncated", bytes(data))


@pytest.mark.parametrize("empty", [
    aes_zip({}),
    plain_zip({}),
    aes_zip({"extract/": b""}),
    aes_zip({"__MACOSX/._x": b"\x00\x05\x16\x07"}),
])
def test_empty_archive_refused(empty: bytes) -> None:
    refused("contains no tables", empty)


@pytest.mark.parametrize("data", [os.urandom(4096), FAMILIES, b"", b"PK\x03", b"%PDF-1.7\n"])
def test_not_an_archive_refused(data: bytes) -> None:
    refused("not an AES-256 ZIP or age file", data)


# --------------------------------------------------------------------------- sidecar


@pytest.mark.parametrize("line", ["{h}  extract.zip\n", "{h} *extract.zip\n", "{h}\n",
                                  "{H}  extract.zip\r\n", "SHA256 (extract.zip) = {h}\n",
                                  "{o}  other.zip\n{h}  extract.zip\n", "{h}  renamed.zip\n"])
def test_sidecar_matches(tmp_path: Path, line: str) -> None:
    data = aes_zip(TWO_CSVS)
    digest = sha256_bytes(data)
    path = tmp_path / "extract.zip"
    path.write_bytes(data)
    (tmp_path / "extract.zip.sha256").write_text(
        line.format(h=digest, H=digest.upper(), o="0" * 64))
    verify_sidecar(path, digest)


def test_sidecar_mismatch_and_malformed(tmp_path: Path) -> None:
    path = tmp_path / "extract.zip"
    path.write_bytes(b"x")
    sidecar = tmp_path / "extract.zip.sha256"
    sidecar.write_text(f"{'0' * 64}  extract.zip\n")
    with pytest.raises(InputRejected, match="checksum mismatch") as caught:
        verify_sidecar(path, sha256_bytes(b"x"))
    assert str(caught.value).startswith("file extract.zip: ")
    sidecar.write_text("not a checksum\n")
    with pytest.raises(InputRejected, match="not in sha256sum format"):
        verify_sidecar(path, sha256_bytes(b"x"))
    sidecar.write_text(f"{'0' * 64}  a.zip\n{'1' * 64}  b.zip\n")
    with pytest.raises(InputRejected, match="no line for this archive"):
        verify_sidecar(path, sha256_bytes(b"x"))


def test_sidecar_absent_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "extract.zip"
    path.write_bytes(b"x")
    verify_sidecar(path, "0" * 64)


# --------------------------------------------------------------------------- fuzz

_VALID = aes_zip(TWO_CSVS)

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(_VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(_VALID) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_VALID)), st.integers(0, 255)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_archive_gives_extract_or_refusal(mutations: list[tuple[str, int, int]]) -> None:
    data = bytearray(_VALID)
    for op, pos, value in mutations:
        pos = min(pos, len(data))
        if op == "flip" and pos < len(data):
            data[pos] ^= value
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = bytes([value])
    try:
        extract = decrypt_extract(bytes(data), NAME, passphrase=PASS, identity=None)
    except InputRejected as err:
        assert PASS not in str(err)
        assert "F-SECRET" not in str(err)
    else:
        assert isinstance(extract, Extract)
