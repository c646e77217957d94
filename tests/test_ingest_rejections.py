"""Every file-level error of the spec through ``cluster-eval ingest`` (a corpus of 33 files).

Each case builds one bad file from a valid synthetic extract and asserts the whole contract:
exit 1, ``"status": "rejected"``, one sentence naming the file, the same line on stderr, no
traceback, nothing in the database, the file in quarantine beside a reason file that holds
only that sentence. A hypothesis test then feeds random mutations of a valid extract's
plaintext members (re-encrypted) through the plain pipeline: a clean ingest or a clean
rejection, never a crash.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import pyzipper
import xlsxwriter
from conftest import make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyzipper.zipfile_aes import AESZipInfo
from sqlalchemy import Engine, create_engine, text
from test_archive import zipcrypto_zip

from cli.main import main
from schemas.codes import EPISODES, GOALS, TABLES
from tasks.core.runtime import Runtime, open_runtime
from tasks.core.secrets import Secrets
from tasks.demo.render import aes_zip, age_encrypt, new_age_identity, render_members, zip_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.pipeline import ingest_file, load_ingest_secrets

PASS = "rejection-corpus-passphrase"  # noqa: S105 - test passphrase
STORE_TABLES = ("extracts", "families", "children", "episodes", "episode_issues",
                "episode_services", "goals", "specialist_referrals", "quarantined_rows",
                "contacts", "stored_files", "audit_log")
Members = dict[str, bytes]
TABLES_40 = generate_tables(40, seed=17)
BASE: Members = render_members(TABLES_40)
OTHER_ID, OTHER_PUBLIC = new_age_identity()
OWN_ID, OWN_PUBLIC = new_age_identity()


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()  # noqa: S608
                for t in STORE_TABLES}


# --------------------------------------------------------------------------- builders


def with_members(**changes: bytes | None) -> Members:
    members = dict(BASE)
    for name, data in changes.items():
        key = name.replace("__", ".")
        if data is None:
            members.pop(key, None)
        else:
            members[key] = data
    return members


def aes(members: Members, *, nbits: int = 256) -> bytes:
    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES, encryption_kwargs={"nbits": nbits}) as zf:
        zf.setpassword(PASS.encode())
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def aes_infos(items: list[tuple[AESZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(PASS.encode())
        for info, data in items:
            zf.writestr(info, data)
    return buf.getvalue()


def zipcrypto(name: str, data: bytes) -> bytes:
    """A one-member ZIP under legacy PKWARE ZipCrypto (the archive tests' hand-written builder)."""
    return zipcrypto_zip(name, data, PASS.encode())


def flipped() -> bytes:
    data = bytearray(aes(BASE))
    # local header (30) + "families.csv" (12) + AES extra (11) + salt (16) + verifier (2)
    data[30 + 12 + 11 + 16 + 2 + 40] ^= 0x01
    return bytes(data)


def symlink() -> bytes:
    link = AESZipInfo("families.csv")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    items: list[tuple[AESZipInfo | str, bytes]] = [(link, b"/etc/passwd")]
    items += [(name, data) for name, data in BASE.items() if name != "families.csv"]
    return aes_infos(items)


def renamed(old: str, new: str) -> bytes:
    placeholder = "x" * len(new)
    members = {placeholder if n == old else n: d for n, d in BASE.items()}
    return aes(members).replace(placeholder.encode(), new.encode())


def csv_of(df: pl.DataFrame) -> bytes:
    return df.write_csv().encode()


def bad_goal_rows(share: float) -> bytes:
    goals = TABLES_40[GOALS]
    bad = int(goals.height * share) + 1
    goals = goals.with_columns(
        pl.when(pl.int_range(pl.len()) < bad).then(pl.lit("x")).otherwise(pl.col("baseline_score"))
        .alias("baseline_score"))
    return aes(with_members(goals__csv=csv_of(goals)))


def us_dates() -> bytes:
    episodes = TABLES_40[EPISODES].with_columns(
        pl.col("referral_date").str.to_date().dt.strftime("%m/%d/%Y").alias("referral_date"))
    return aes(with_members(episodes__csv=csv_of(episodes)))


def workbook(sheets: list[str]) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    for name in sheets:
        df = TABLES_40[name]
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, df.columns)
        for i, row in enumerate(df.iter_rows(), start=1):
            sheet.write_row(i, 0, ["" if v is None else v for v in row])
    book.close()
    return buf.getvalue()


def header_edit(table: str, edit: Callable[[list[str]], list[str]]) -> bytes:
    lines = BASE[f"{table}.csv"].decode().split("\n")
    lines[0] = ",".join(edit(lines[0].split(",")))
    return aes(with_members(**{f"{table}__csv": "\n".join(lines).encode()}))


def ragged() -> bytes:
    lines = BASE["goals.csv"].decode().split("\n")
    lines[2] += ",extra,cells"
    return aes(with_members(goals__csv="\n".join(lines).encode()))


def hex_padding(size: int) -> bytes:
    return os.urandom(size // 2).hex().encode()


# Case: (file name, builder, environment overrides, phrase expected in the error).
CASES: list[tuple[str, Callable[[], bytes], dict[str, str | None], str]] = [
    ("wrong-pass.zip", lambda: aes_zip(BASE, "other-passphrase"), {}, "wrong passphrase"),
    ("no-pass.zip", lambda: aes(BASE), {"CLUSTER_EVAL_EXTRACT_PASSPHRASE": None},
     "no passphrase"),
    ("wrong-identity.age", lambda: age_encrypt(zip_members(BASE), recipient=OTHER_PUBLIC),
     {"identity": OWN_ID}, "wrong age identity"),
    ("no-identity.age", lambda: age_encrypt(zip_members(BASE), recipient=OWN_PUBLIC), {},
     "no age identity"),
    ("age-not-zip.age", lambda: age_encrypt(BASE["families.csv"], recipient=OWN_PUBLIC),
     {"identity": OWN_ID}, "not a ZIP archive"),
    ("corrupt.zip", flipped, {}, "corrupt or truncated"),
    ("truncated.zip", lambda: aes(BASE)[: len(aes(BASE)) // 2], {}, "corrupt or truncated"),
    ("checksum.zip", lambda: aes(BASE), {"sidecar": "0" * 64 + "  checksum.zip\n"},
     "checksum mismatch"),
    ("bad-sidecar.zip", lambda: aes(BASE), {"sidecar": "not a checksum\n"},
     "not in sha256sum format"),
    ("plain.zip", lambda: zip_members(BASE), {}, "not encrypted"),
    ("zipcrypto.zip", lambda: zipcrypto("families.csv", BASE["families.csv"]), {}, "ZipCrypto"),
    ("aes128.zip", lambda: aes(BASE, nbits=128), {}, "too weak"),
    ("zip-slip.zip", lambda: renamed("families.csv", "../families.csv"), {}, "unsafe path"),
    ("absolute.zip", lambda: renamed("families.csv", "/tmp/families.csv"), {},  # noqa: S108
     "unsafe path"),
    ("symlink.zip", symlink, {}, "symbolic link"),
    ("many.zip", lambda: aes({**BASE, **{f"t{i}.csv": b"a\n1\n" for i in range(46)}}), {},
     "more than 50 members"),
    ("oversize.zip", lambda: aes(with_members(padding__csv=hex_padding(1_500_000))),
     {"CLUSTER_EVAL_INGEST__MAX_TOTAL_MB": "1"}, "over the limit"),
    ("big-file.zip", lambda: aes(with_members(padding__csv=os.urandom(1_200_000))),
     {"CLUSTER_EVAL_INGEST__MAX_TOTAL_MB": "1"}, "larger than 1 MB"),
    ("bomb.zip", lambda: aes(with_members(families__csv=BASE["families.csv"] + b" " * 3_000_000)),
     {}, "zip bomb"),
    ("nested.zip", lambda: aes(with_members(inner__zip=zip_members(BASE))), {},
     "nested archives"),
    ("missing-table.zip", lambda: aes(with_members(goals__csv=None)), {},
     "goals.csv is missing"),
    ("missing-column.zip",
     lambda: aes(with_members(families__csv=csv_of(TABLES_40["families"].drop("household_size")))),
     {}, "column household_size: required column is missing"),
    ("not-csv.zip", lambda: aes(with_members(readme__txt=b"hello")), {}, "is not a CSV or XLSX"),
    ("unknown-table.zip", lambda: aes(with_members(notes__csv=b"a,b\n1,2\n")), {},
     "is not one of the tables"),
    ("empty.zip", lambda: aes({}), {}, "contains no tables"),
    ("empty-file.zip", lambda: b"", {}, "not an AES-256 ZIP or age file"),
    ("pdf.zip", lambda: b"%PDF-1.7\n" + os.urandom(2000), {}, "not an AES-256 ZIP or age file"),
    ("bad-rows.zip", lambda: bad_goal_rows(0.08), {}, "of rows failed validation (limit 5%)"),
    ("us-dates.zip", us_dates, {}, "table episodes:"),
    ("both-forms.zip", lambda: aes(with_members(extract__xlsx=workbook(list(TABLES)))), {},
     "both a workbook and CSV"),
    ("no-sheet.zip", lambda: aes({"extract.xlsx": workbook(list(TABLES[:3]))}), {},
     "no sheet named exactly goals"),
    ("dup-header.zip", lambda: header_edit("families", lambda h: h + ["Family ID"]), {},
     "two columns are both named family_id"),
    ("undecodable.zip",
     lambda: aes(with_members(families__csv=BASE["families.csv"] + b"F9,\x81\x8d\n")), {},
     "neither UTF-8 nor Windows-1252"),
    ("ragged.zip", ragged, {}, "cannot be read"),
]


@pytest.fixture
def corpus_home(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Path]:
    home = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTER_EVAL_HOME", str(home))
    monkeypatch.setenv("CLUSTER_EVAL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CLUSTER_EVAL_EXTRACT_PASSPHRASE", PASS)
    yield home


# A secret that is not configured is a setup mistake, not a bad file: the file stays put.
LEFT_IN_PLACE = {"no-pass.zip", "no-identity.age"}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "build", "env", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_rejected_and_quarantined(
    prefect_harness: None, corpus_home: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str, build: Callable[[], bytes],
    env: dict[str, str | None], phrase: str,
) -> None:
    inbox = corpus_home.parent / "inbox"
    inbox.mkdir()
    source = inbox / name
    source.write_bytes(build())
    for key, value in env.items():
        if key == "sidecar":
            (inbox / f"{name}.sha256").write_text(str(value))
        elif key == "identity":
            identity = corpus_home.parent / "identity.txt"
            identity.write_text(f"# test identity\n{value}\n")
            monkeypatch.setenv("CLUSTER_EVAL_AGE_IDENTITY", str(identity))
        elif value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)

    code = main(["ingest", str(source), "--json"])
    out, err = capsys.readouterr()

    assert code == 1, err
    result = json.loads(out)
    assert result["status"] == "rejected"
    error = result["error"]
    assert phrase in error
    assert error.startswith(f"file {name}") and "\n" not in error and len(error) < 400
    assert err.rstrip("\n").splitlines()[-1] == f"cluster-eval: error: {error}"
    assert "Traceback" not in err + out
    assert "unexpected" not in error
    assert PASS not in out + err
    engine = create_engine(sqlite_url)
    try:
        assert all(v == 0 for v in table_counts(engine).values())
    finally:
        engine.dispose()
    if name in LEFT_IN_PLACE:
        assert source.exists() and error.endswith("the file was left in place")
        assert list((corpus_home / "quarantine").iterdir()) == []
        return
    assert not source.exists()
    [kept] = [p for p in (corpus_home / "quarantine").iterdir() if p.name.endswith(f"-{name}")]
    assert (kept.parent / f"{kept.name}.reason.txt").read_text() == error + "\n"
    if "sidecar" in env:
        assert (kept.parent / f"{kept.name}.sha256").exists()
    report = corpus_home / "outputs" / "data-quality" / f"{result['sha256'][:12]}.csv"
    assert pl.read_csv(report).columns == ["section", "table", "column", "rule", "count"]


def test_bad_row_rejection_reports_counts(prefect_harness: None, corpus_home: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = corpus_home.parent / "bad.zip"
    source.write_bytes(bad_goal_rows(0.08))
    assert main(["ingest", str(source), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    goals = TABLES_40[GOALS].height
    bad = int(goals * 0.08) + 1
    assert result["tables"][GOALS] == {"rows": goals, "loaded": 0, "quarantined": bad}
    assert result["error"] == (f"file bad.zip, table goals: {100 * bad / goals:.1f}% of rows "
                               "failed validation (limit 5%); see the data-quality report")
    assert result["population"] == {"families": 0, "episodes": 0}
    report = pl.read_csv(corpus_home / "outputs" / "data-quality" / f"{result['sha256'][:12]}.csv")
    quarantined = report.filter((pl.col("section") == "rows_quarantined")
                                & (pl.col("table") == GOALS)).get_column("count").item()
    assert quarantined == bad
    assert report.filter(pl.col("section") == "failures").get_column("rule").to_list() == ["type"]


# --------------------------------------------------------------------------- hypothesis

_runtime_cache: dict[str, Runtime] = {}


def _shared_runtime(root: Path) -> Runtime:
    if "rt" not in _runtime_cache:
        _runtime_cache["rt"] = open_runtime(make_settings(root / "var",
                                                          f"sqlite:///{root / 'fuzz.db'}"))
    return _runtime_cache["rt"]


@pytest.fixture(scope="module")
def fuzz_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = _shared_runtime(tmp_path_factory.mktemp("fuzz"))
    yield rt
    rt.engine.dispose()
    _runtime_cache.clear()


SMALL = render_members(generate_tables(12, seed=2))
MUTATION_TEXT = st.sampled_from(["", ",", ";", '"', "\n", "\r\n", "x", "99", "-1", "Y",
                                 "31/02/2021", "02/13/2021", "2021-13-01", "ZZZ", "é", "\x00",
                                 "family_id", "F000001", "E000001", "  ", "1e9"])
Mutation = tuple[str, str, int, Any]


@st.composite
def mutations(draw: st.DrawFn) -> list[Mutation]:
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        member = draw(st.sampled_from(sorted(SMALL)))
        kind = draw(st.sampled_from(["byte", "truncate", "insert", "delete_line",
                                     "duplicate_line", "cell", "header"]))
        position = draw(st.integers(0, 10_000))
        payload = draw(st.binary(max_size=3) if kind == "byte" else MUTATION_TEXT)
        steps.append((member, kind, position, payload))
    return steps


def mutate(members: Members, steps: list[Mutation]) -> Members:
    out = dict(members)
    for member, kind, position, payload in steps:
        data = out[member]
        at = position % (len(data) + 1)
        lines = data.split(b"\n")
        line = position % len(lines)
        if kind == "byte":
            data = data[:at] + payload + data[at + 1:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + payload.encode() + data[at:]
        elif kind == "delete_line":
            data = b"\n".join(lines[:line] + lines[line + 1:])
        elif kind == "duplicate_line":
            data = b"\n".join(lines[:line + 1] + lines[line:])
        elif kind == "cell":
            cells = lines[line].split(b",")
            cells[position % len(cells)] = payload.encode()
            data = b"\n".join(lines[:line] + [b",".join(cells)] + lines[line + 1:])
        else:  # rename a header cell
            cells = lines[0].split(b",")
            cells[position % len(cells)] = payload.encode()
            data = b"\n".join([b",".join(cells)] + lines[1:])
        out[member] = data
    return out


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=mutations())
def test_mutated_extract_is_ingested_or_rejected_cleanly(fuzz_runtime: Runtime,
                                                         steps: list[Mutation]) -> None:
    rt = fuzz_runtime
    inbox = rt.home.root / "inbox"
    inbox.mkdir(exist_ok=True)
    path = inbox / "mutated.zip"
    path.write_bytes(aes_zip(mutate(SMALL, steps), PASS))
    before = table_counts(rt.engine)
    secrets = load_ingest_secrets(Secrets(rt.home, {"CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASS}))

    outcome = ingest_file(path, rt, secrets)

    assert outcome.status in ("ingested", "rejected")
    assert not path.exists()
    after = table_counts(rt.engine)
    if outcome.status == "rejected":
        assert outcome.error and "\n" not in outcome.error and "unexpected" not in outcome.error
        assert after == before
        assert outcome.kept_at is not None and outcome.kept_at.parent == rt.home.quarantine
    else:
        assert outcome.error is None
        assert after["extracts"] == before["extracts"] + 1
        for counts in outcome.tables.values():
            assert counts.loaded == counts.rows - counts.quarantined
            assert counts.quarantined <= 0.05 * counts.rows
        assert after["quarantined_rows"] >= before["quarantined_rows"]


def test_missing_file_is_rejected_without_a_traceback(prefect_harness: None, corpus_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    missing = corpus_home.parent / "nowhere.zip"
    assert main(["ingest", str(missing), "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["status"] == "rejected" and result["sha256"] is None
    assert result["error"] == f"file {missing} does not exist or is not a file; check the path"
    assert "Traceback" not in err
