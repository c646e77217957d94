"""Tests of the synthetic extract generator (tasks/synthetic.py) against extract-v1.md."""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import zipfile
from datetime import UTC, date, datetime

import polars as pl
import pyrage
import pytest
import pyzipper
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codes import (
    CHILDREN,
    CLOSURE_OUTCOME,
    EPISODES,
    ETHNICITY_CODES,
    FAMILIES,
    GENDER,
    GOALS,
    LEAD_CARER_EMPLOYMENT,
    LEAD_WORKER_ROLE,
    NO_VALUES,
    ONWARD_REFERRAL,
    PREFERRED_CONTACT,
    PRESENTING_ISSUES,
    REFERRAL_ROUTE,
    SCHOOL_PHASE,
    SCORE_QUESTIONS,
    SERVICES,
    SPECIALIST_OUTCOME,
    SPECIALIST_REFERRALS,
    SPECIALIST_SERVICE,
    SURVEY_COLUMNS,
    SURVEY_MODE,
    TABLES,
    YES_NO_QUESTIONS,
    YES_VALUES,
)
from schemas.columns import TABLE_COLUMNS
from tasks.demo.render import aes_zip, age_encrypt, new_age_identity, render_members, write_extract, zip_members
from tasks.demo.survey_export import generate_survey_export, survey_export_csv
from tasks.demo.synthetic import generate_tables, marker_strings

CODE_COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    (FAMILIES, "preferred_contact"): PREFERRED_CONTACT,
    (FAMILIES, "lead_carer_employment"): LEAD_CARER_EMPLOYMENT,
    (FAMILIES, "lead_carer_ethnicity"): ETHNICITY_CODES,
    (CHILDREN, "gender"): GENDER,
    (CHILDREN, "ethnicity"): ETHNICITY_CODES,
    (CHILDREN, "school_phase"): SCHOOL_PHASE,
    (EPISODES, "referral_route"): REFERRAL_ROUTE,
    (EPISODES, "primary_issue"): PRESENTING_ISSUES,
    (EPISODES, "lead_worker_role"): LEAD_WORKER_ROLE,
    (EPISODES, "closure_outcome"): CLOSURE_OUTCOME,
    (EPISODES, "onward_referral"): ONWARD_REFERRAL,
    (GOALS, "goal_area"): PRESENTING_ISSUES,
    (SPECIALIST_REFERRALS, "service"): SPECIALIST_SERVICE,
    (SPECIALIST_REFERRALS, "reason"): PRESENTING_ISSUES,
    (SPECIALIST_REFERRALS, "outcome"): SPECIALIST_OUTCOME,
}
CODE_LIST_COLUMNS = {(EPISODES, "presenting_issues"): PRESENTING_ISSUES,
                     (EPISODES, "services"): SERVICES}
DATE_COLUMNS = {
    CHILDREN: ("date_of_birth",),
    EPISODES: ("referral_date", "allocation_date", "closure_date"),
    GOALS: ("latest_review_date",),
    SPECIALIST_REFERRALS: ("start_date", "end_date"),
}
YES_NO_COLUMNS = {
    FAMILIES: ("first_language_english", "free_school_meals", "do_not_contact"),
    CHILDREN: ("sen_support",),
}
INT_RANGES = {
    (FAMILIES, "household_size"): (1, 20),
    (FAMILIES, "imd_decile"): (1, 10),
    (GOALS, "goal_number"): (1, 3),
    (GOALS, "baseline_score"): (0, 10),
    (GOALS, "latest_score"): (0, 10),
}
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UK_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")
# Generic UK postcode shape: A9 / A99 / AA9 / AA99 / A9A / AA9A, space, 9AA.
POSTCODE = re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}$")
EMAIL = re.compile(r"^[^@\s]+@example\.(invalid|org|net|com)$")
PHONE = re.compile(r"^07700 900\d{3}$")
ID_PATTERNS = {
    (FAMILIES, "family_id"): r"^F\d{6,}$",
    (CHILDREN, "child_id"): r"^C\d{6,}$",
    (EPISODES, "episode_id"): r"^E\d{6,}$",
    (SPECIALIST_REFERRALS, "referral_id"): r"^R\d{6,}$",
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return generate_tables(2000, 11)


@pytest.fixture(scope="module")
def marked() -> dict[str, pl.DataFrame]:
    return generate_tables(60, 5, markers=True)


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _normalise_header(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def check_column_rules(t: dict[str, pl.DataFrame]) -> None:
    """Assert the per-column rules (order, text, ids, codes, dates, yes/no, ranges)."""
    assert list(t) == list(TABLES)
    for table in TABLES:
        df = t[table]
        assert df.columns == list(TABLE_COLUMNS[table]), table
        assert all(dtype == pl.String for dtype in df.dtypes), table
        for column in df.columns:  # empty string is always written as null
            assert (df.get_column(column) == "").sum() == 0, (table, column)
    for (table, column), pattern in ID_PATTERNS.items():
        ids = t[table].get_column(column)
        assert ids.null_count() == 0 and ids.is_unique().all(), (table, column)
        assert ids.str.contains(pattern).all(), (table, column)
    for (table, column), allowed in CODE_COLUMNS.items():
        values = set(t[table].get_column(column).drop_nulls().to_list())
        assert values <= set(allowed), (table, column, values - set(allowed))
    for (table, column), allowed in CODE_LIST_COLUMNS.items():
        for value in t[table].get_column(column).to_list():
            items = value.split(";")
            assert 1 <= len(items) == len(set(items)) and set(items) <= set(allowed), value
    for table, columns in DATE_COLUMNS.items():
        for column in columns:
            assert t[table].get_column(column).drop_nulls().str.contains(ISO_DATE.pattern).all()
    for table, columns in YES_NO_COLUMNS.items():
        for column in columns:
            assert set(t[table].get_column(column).drop_nulls().to_list()) <= {"Y", "N"}
    for (table, column), (low, high) in INT_RANGES.items():
        values = t[table].get_column(column).drop_nulls().cast(pl.Int64)
        assert values.len() == 0 or (low <= values.min() and values.max() <= high), column


def check_invariants(t: dict[str, pl.DataFrame]) -> None:
    """Assert every spec rule (and the generator's own promises) on a set of clean tables."""
    check_column_rules(t)
    fam = t[FAMILIES].with_columns(pl.col("household_size", "adults_in_employment").cast(pl.Int64))
    assert (fam["adults_in_employment"] >= 0).all()
    assert (fam["adults_in_employment"] <= fam["household_size"]).all()
    assert fam["household_size"].max() <= 10
    assert fam["postcode"].str.contains(POSTCODE.pattern).all()
    assert fam["email"].drop_nulls().str.contains(EMAIL.pattern).all()
    assert fam["phone"].drop_nulls().str.contains(PHONE.pattern).all()
    assert fam.filter(pl.col("preferred_contact") == "email")["email"].null_count() == 0
    assert fam.filter(pl.col("preferred_contact") == "phone")["phone"].null_count() == 0

    family_ids = set(fam["family_id"].to_list())
    assert set(t[CHILDREN]["family_id"].to_list()) <= family_ids
    assert set(t[EPISODES]["family_id"].to_list()) == family_ids  # every family has an episode
    episode_ids = set(t[EPISODES]["episode_id"].to_list())
    assert set(t[GOALS]["episode_id"].to_list()) <= episode_ids
    assert set(t[SPECIALIST_REFERRALS]["episode_id"].to_list()) <= episode_ids
    assert fam.join(t[CHILDREN], on="family_id", how="anti").height == 0  # 1-3 children each
    per_family = t[CHILDREN].group_by("family_id").len()["len"]
    assert 1 <= per_family.min() and per_family.max() <= 3
    eps_per_family = t[EPISODES].group_by("family_id").len()["len"]
    assert eps_per_family.max() <= 2

    ep = t[EPISODES]
    assert (ep["closure_date"].is_null() | (ep["closure_date"] >= ep["referral_date"])).all()
    assert (ep["allocation_date"].is_null() | (ep["allocation_date"] >= ep["referral_date"])).all()
    closed = ep["closure_date"].is_not_null()
    assert (ep["closure_outcome"].is_not_null() == closed).all()
    assert (ep["onward_referral"].is_not_null() == closed).all()
    for issues, primary in zip(ep["presenting_issues"], ep["primary_issue"], strict=True):
        assert primary in issues.split(";")
    stepped = ep.filter(pl.col("closure_outcome") == "stepped_up_to_social_care")
    assert (stepped["onward_referral"] == "childrens_social_care").all()

    goals = t[GOALS].join(ep.select("episode_id", "referral_date", "presenting_issues"),
                          on="episode_id")
    numbers = goals.group_by("episode_id").agg(pl.col("goal_number").cast(pl.Int64).sort())
    for nums in numbers["goal_number"].to_list():
        assert nums == list(range(1, len(nums) + 1)) and len(nums) <= 3
    assert set(numbers["episode_id"].to_list()) == episode_ids  # 1-3 goals per episode
    assert (goals["latest_review_date"].is_null()
            | (goals["latest_review_date"] >= goals["referral_date"])).all()
    assert (goals["latest_score"].is_null() == goals["latest_review_date"].is_null()).all()
    for area, issues in zip(goals["goal_area"], goals["presenting_issues"], strict=True):
        assert area in issues.split(";")

    refs = t[SPECIALIST_REFERRALS].join(ep.select("episode_id", "referral_date"), on="episode_id")
    assert (refs["start_date"] >= refs["referral_date"]).all()
    assert (refs["end_date"].is_null() | (refs["end_date"] >= refs["start_date"])).all()
    assert (refs["end_date"].is_null() == (refs["outcome"] == "ongoing")).all()
    assert refs["episode_id"].is_unique().all()

    ages = t[CHILDREN].join(ep.select("family_id", "referral_date"), on="family_id")
    for born, referred in zip(ages["date_of_birth"], ages["referral_date"], strict=True):
        assert 0 <= _age(date.fromisoformat(born), date.fromisoformat(referred)) <= 18


# --- tables ------------------------------------------------------------------------------------
def test_tables_follow_the_spec(tables: dict[str, pl.DataFrame]) -> None:
    check_invariants(tables)
    assert tables[FAMILIES].height == 2000


@settings(max_examples=25, deadline=None)
@given(
    families=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    start=st.dates(date(2015, 1, 1), date(2030, 1, 1)),
    length=st.integers(0, 400),
    markers=st.booleans(),
)
def test_invariants_hold_for_any_size_seed_and_window(
    families: int, seed: int, start: date, length: int, markers: bool
) -> None:
    window_end = date.fromordinal(start.toordinal() + length)
    check_invariants(generate_tables(families, seed, window_start=start, window_end=window_end,
                                     markers=markers))


def test_distributions_are_realistic(tables: dict[str, pl.DataFrame]) -> None:
    fam, ep = tables[FAMILIES], tables[EPISODES]
    in_window = ep.filter(
        (pl.col("referral_date") <= "2021-06-30")
        & (pl.col("closure_date").is_null() | (pl.col("closure_date") >= "2021-01-01"))
    )
    share = in_window.height / ep.height
    assert 0.60 <= share <= 0.75, share  # measured 0.68 across seeds
    assert in_window.height < ep.height  # some episodes fall outside the window
    open_share = ep["closure_date"].null_count() / ep.height
    assert 0.10 <= open_share <= 0.20, open_share
    ethnicities = set(fam["lead_carer_ethnicity"].to_list())
    assert {"WROM", "WIRT", "WBRI", "APKN", "BAFR"} <= ethnicities
    routes = ep["referral_route"].value_counts(sort=True)["referral_route"].to_list()
    assert routes == list(REFERRAL_ROUTE)  # school most common ... other least
    size = fam["household_size"].cast(pl.Int64)
    assert 3.5 <= size.mean() <= 4.5 and size.min() >= 1
    imd = fam["imd_decile"].cast(pl.Int64)
    assert imd.null_count() > 0 and (imd.drop_nulls() <= 3).mean() > 0.6
    assert 0.45 <= (fam["free_school_meals"] == "Y").mean() <= 0.75
    assert 0.01 <= (fam["do_not_contact"] == "Y").mean() <= 0.05
    assert fam["email"].null_count() > 0 and fam["phone"].null_count() > 0
    assert set(fam["preferred_contact"].to_list()) == set(PREFERRED_CONTACT)
    assert (ep["closure_outcome"] == "stepped_up_to_social_care").sum() > 0
    issues = ep["presenting_issues"].str.split(";").list.len()
    assert issues.min() == 1 and issues.max() == 4
    referral_months = ep["referral_date"].str.slice(0, 7)
    assert ((referral_months >= "2020-09") & (referral_months <= "2021-09")).mean() > 0.7
    spec_share = tables[SPECIALIST_REFERRALS].height / ep.height
    assert 0.07 <= spec_share <= 0.13, spec_share
    goals = tables[GOALS].drop_nulls("latest_score").with_columns(
        pl.col("baseline_score", "latest_score").cast(pl.Int64))
    assert (goals["latest_score"] > goals["baseline_score"]).mean() > 0.5
    assert tables[GOALS]["latest_score"].null_count() > 0
    assert set(tables[CHILDREN]["school_phase"].to_list()) == set(SCHOOL_PHASE)


def test_same_seed_same_bytes_other_seed_differs() -> None:
    first = render_members(generate_tables(300, 7))
    assert first == render_members(generate_tables(300, 7))
    assert first != render_members(generate_tables(300, 8))
    assert list(first) == [f"{t}.csv" for t in TABLES]
    messy = render_members(generate_tables(300, 7), messy=True, encoding="cp1252", seed=3)
    assert messy == render_members(generate_tables(300, 7), messy=True, encoding="cp1252", seed=3)
    assert zip_members(first) == zip_members(first)


def test_clean_csv_round_trips(tables: dict[str, pl.DataFrame]) -> None:
    members = render_members(tables)
    for table in TABLES:
        back = pl.read_csv(members[f"{table}.csv"], infer_schema=False)
        assert back.equals(tables[table]), table


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_tiny_extract_renders_messy(fmt: str) -> None:
    tiny = generate_tables(1, 0)
    members = render_members(tiny, fmt=fmt, messy=True, encoding="cp1252", seed=2)
    if fmt == "csv":
        assert pl.read_csv(members["families.csv"].decode("cp1252").encode(),
                           infer_schema=False).height == 1
    else:
        sheets = pl.read_excel(io.BytesIO(members["extract.xlsx"]), sheet_id=0)
        assert list(sheets) == list(TABLES) and sheets[FAMILIES].height == 1


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        generate_tables(0, 1)
    with pytest.raises(ValueError):
        generate_tables(5, 1, window_start=date(2021, 2, 1), window_end=date(2021, 1, 1))
    with pytest.raises(ValueError):
        generate_tables(400_001, 1, markers=True)


# --- markers -----------------------------------------------------------------------------------
def test_markers_are_unique_and_listed(marked: dict[str, pl.DataFrame]) -> None:
    check_invariants(marked)
    markers = marker_strings(marked)
    assert len(markers) == len(set(markers))
    fam = marked[FAMILIES]
    expected = (
        fam["lead_carer_name"].to_list() + fam["address_line_1"].to_list()
        + fam["email"].drop_nulls().to_list() + fam["postcode"].to_list()
        + marked[CHILDREN]["child_name"].to_list() + marked[EPISODES]["case_notes"].to_list()
        + marked[GOALS]["goal_text"].to_list()
    )
    assert sorted(markers) == sorted(expected)
    assert fam["lead_carer_name"][0] == "ZQXNAME000001"
    assert fam["address_line_1"][0] == "ZQXADDR000001 Street"
    assert fam["email"].drop_nulls().str.contains(r"^zqxmail\d{6}@example\.invalid$").all()
    assert fam["postcode"].str.contains(r"^QZ\d{2} \d[A-Z]{2}$").all()
    assert fam["postcode"].is_unique().all()
    for a in markers:  # no marker hides inside another one
        assert sum(a in b for b in markers) == 1, a
    assert marker_strings(generate_tables(60, 5)) == []


def test_markers_survive_rendering(marked: dict[str, pl.DataFrame]) -> None:
    markers = marker_strings(marked)
    for kwargs in ({}, {"messy": True, "encoding": "cp1252"}):
        text = "".join(v.decode("cp1252") for v in render_members(marked, **kwargs).values())
        missing = [m for m in markers if m not in text]
        assert missing == [], kwargs


# --- messy rendering ---------------------------------------------------------------------------
def _normalise_value(table: str, column: str, value: str | None) -> str | None:
    if value is None:
        return None
    if (table, column) in CODE_COLUMNS or (table, column) in CODE_LIST_COLUMNS:
        return value.strip().lower()
    if column in YES_NO_COLUMNS.get(table, ()):
        lowered = value.strip().lower()
        assert lowered in YES_VALUES + NO_VALUES, value
        return "Y" if lowered in YES_VALUES else "N"
    if column in DATE_COLUMNS.get(table, ()):
        if UK_DATE.match(value):
            day, month, year = value.split("/")
            return f"{year}-{month}-{day}"
        assert ISO_DATE.match(value), value
    return value


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_messy_csv_is_still_a_valid_extract(encoding: str) -> None:
    clean = generate_tables(400, 21)
    members = render_members(clean, messy=True, encoding=encoding, seed=9)
    raw_headers, spellings, date_styles = [], set(), set()
    for table in TABLES:
        data = members[f"{table}.csv"]
        assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
        text = data.decode("utf-8-sig" if encoding != "cp1252" else "cp1252")
        back = pl.read_csv(text.encode("utf-8"), infer_schema=False)
        raw_headers += back.columns
        normalised = [_normalise_header(c) for c in back.columns]
        extra = ["notes_internal"] if table in (FAMILIES, EPISODES) else []
        assert normalised == list(TABLE_COLUMNS[table]) + extra
        back.columns = normalised
        for column in TABLE_COLUMNS[table]:
            if column in ("lead_carer_name", "child_name", "address_line_2", "case_notes"):
                continue  # deliberately altered free text / names
            got = [_normalise_value(table, column, v) for v in back[column].to_list()]
            want = [_normalise_value(table, column, v) for v in clean[table][column].to_list()]
            assert got == want, (table, column)
        for column in YES_NO_COLUMNS.get(table, ()):
            spellings |= set(back[column].drop_nulls().to_list())
        for column in DATE_COLUMNS.get(table, ()):
            values = back[column].drop_nulls()
            date_styles |= {"uk" if UK_DATE.match(v) else "iso" for v in values}
    assert any(h not in {c for cols in TABLE_COLUMNS.values() for c in cols} for h in raw_headers)
    assert len(spellings) >= 4
    assert date_styles == {"uk", "iso"}


def test_cp1252_bytes_are_cp1252() -> None:
    members = render_members(generate_tables(200, 4), messy=True, encoding="cp1252", seed=1)
    non_ascii = 0
    for data in members.values():
        data.decode("cp1252")
        if any(b > 0x7F for b in data):
            non_ascii += 1
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
    assert non_ascii >= 2
    assert "O’Brien".encode("cp1252") in members["families.csv"] + members["children.csv"]
    utf8 = render_members(generate_tables(200, 4), messy=True, encoding="utf-8", seed=1)
    assert all(v.decode("utf-8") for v in utf8.values())


# --- xlsx --------------------------------------------------------------------------------------
def test_xlsx_sheets_round_trip() -> None:
    clean = generate_tables(150, 2)
    members = render_members(clean, fmt="xlsx")
    assert list(members) == ["extract.xlsx"]
    sheets = pl.read_excel(io.BytesIO(members["extract.xlsx"]), sheet_id=0, engine="calamine")
    assert list(sheets) == list(TABLES)
    for table in TABLES:
        back = sheets[table].with_columns(pl.all().cast(pl.String))
        assert back.equals(clean[table]), table


def test_messy_xlsx_has_native_dates_and_spec_headers() -> None:
    clean = generate_tables(150, 2)
    data = render_members(clean, fmt="xlsx", messy=True, seed=5)["extract.xlsx"]
    sheets = pl.read_excel(io.BytesIO(data), sheet_id=0, engine="calamine")
    assert list(sheets) == list(TABLES)
    for table, sheet in sheets.items():
        normalised = [_normalise_header(c) for c in sheet.columns]
        assert normalised[: len(TABLE_COLUMNS[table])] == list(TABLE_COLUMNS[table])
        assert sheet.height == clean[table].height
    episodes = sheets[EPISODES]
    referral = episodes[[c for c in episodes.columns if _normalise_header(c) == "referral_date"][0]]
    assert referral.dtype in (pl.Date, pl.Datetime)
    as_text = referral.cast(pl.Date).cast(pl.String)
    assert as_text.to_list() == clean[EPISODES]["referral_date"].to_list()


# --- packaging ---------------------------------------------------------------------------------
def test_aes_zip_round_trips_and_rejects_wrong_password() -> None:
    members = render_members(generate_tables(30, 3))
    phrase = secrets.token_urlsafe(16)
    data = aes_zip(members, phrase)
    with zipfile.ZipFile(io.BytesIO(data)) as plain:  # AES (method 99), not ZipCrypto
        assert all(i.compress_type == 99 and i.flag_bits & 0x1 for i in plain.infolist())
    with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
        assert all(i.wz_aes_strength == 3 for i in archive.infolist())  # 3 = AES-256
        archive.setpassword(phrase.encode())
        assert {n: archive.read(n) for n in archive.namelist()} == members
    with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
        archive.setpassword(b"wrong")
        with pytest.raises(RuntimeError, match="[Bb]ad password"):
            archive.read("families.csv")


def test_plain_zip_is_unencrypted() -> None:
    members = {"a.csv": b"x\n1\n", "b.csv": b"y\n2\n"}
    with zipfile.ZipFile(io.BytesIO(zip_members(members))) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == members
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())


def test_age_x25519_round_trip() -> None:
    secret, public = new_age_identity()
    assert secret.startswith("AGE-SECRET-KEY-1") and public.startswith("age1")
    plaintext = zip_members(render_members(generate_tables(20, 1)))
    data = age_encrypt(plaintext, recipient=public)
    assert data.startswith(b"age-encryption.org/v1")
    assert pyrage.decrypt(data, [pyrage.x25519.Identity.from_str(secret)]) == plaintext
    other_secret, _ = new_age_identity()
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(data, [pyrage.x25519.Identity.from_str(other_secret)])
    with pytest.raises(ValueError):
        age_encrypt(plaintext)
    with pytest.raises(ValueError):
        age_encrypt(plaintext, passphrase=secrets.token_urlsafe(8), recipient=public)


def test_age_passphrase_round_trip() -> None:  # scrypt: about 3 s per operation, so only once
    phrase = secrets.token_urlsafe(16)
    data = age_encrypt(b"PK-plaintext", passphrase=phrase)
    assert data.startswith(b"age-encryption.org/v1") and b"PK-plaintext" not in data
    assert pyrage.passphrase.decrypt(data, phrase) == b"PK-plaintext"


def test_write_extract_aes_with_sidecar(tmp_path) -> None:
    target, phrase = tmp_path / "inbox" / "extract.zip", secrets.token_urlsafe(16)
    written = write_extract(target, families=40, seed=2, passphrase=phrase, markers=True,
                            messy=True, encoding="cp1252", sidecar=True)
    assert written == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["extract.zip", "extract.zip.sha256"]
    data = target.read_bytes()
    sidecar = (tmp_path / "inbox" / "extract.zip.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(data).hexdigest()}  extract.zip\n"
    markers = marker_strings(generate_tables(40, 2, markers=True))
    assert not any(m.encode("cp1252") in data for m in markers)
    with pyzipper.AESZipFile(io.BytesIO(data)) as archive:
        archive.setpassword(phrase.encode())
        assert archive.namelist() == [f"{t}.csv" for t in TABLES]
        text = "".join(archive.read(n).decode("cp1252") for n in archive.namelist())
    assert all(m in text for m in markers)
    with pytest.raises(ValueError):
        write_extract(tmp_path / "x.zip", families=5)


def test_write_extract_age_x25519_xlsx(tmp_path) -> None:
    secret, public = new_age_identity()
    target = write_extract(tmp_path / "extract.age", families=25, seed=3, fmt="xlsx",
                           encryption="age-x25519", recipient=public)
    assert [p.name for p in tmp_path.iterdir()] == ["extract.age"]
    plain = pyrage.decrypt(target.read_bytes(), [pyrage.x25519.Identity.from_str(secret)])
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        assert archive.namelist() == ["extract.xlsx"]
        sheets = pl.read_excel(io.BytesIO(archive.read("extract.xlsx")), sheet_id=0)
    assert list(sheets) == list(TABLES)
    assert sheets[FAMILIES].height == 25


# --- survey export -----------------------------------------------------------------------------
def test_survey_export() -> None:
    tokens = [f"TOK{i:05d}" for i in range(2000)]
    invited = {t: datetime(2022, 2, 1, 9, 30, 0, 500, tzinfo=UTC) for t in tokens[:1000]}  # others: at until
    when = {"invited": invited, "until": datetime(2022, 3, 1, 12, 0, 0, 900, tzinfo=UTC)}
    df = generate_survey_export(tokens, seed=4, response_rate=0.4, **when)
    assert df.columns == list(SURVEY_COLUMNS)
    assert df.height == 800
    assert df["token"].is_unique().all() and set(df["token"].to_list()) <= set(tokens)
    assert set(df["mode"].to_list()) <= set(SURVEY_MODE)
    submitted = df.select("token", pl.col("submitted_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%z"))
    early = submitted.filter(pl.col("token").is_in(list(invited)))["submitted_at"]
    assert early.min() >= datetime(2022, 2, 1, 9, 30, tzinfo=UTC) and early.min().date() < date(2022, 2, 3)
    assert submitted["submitted_at"].max() <= datetime(2022, 3, 1, 12, 0, tzinfo=UTC)
    assert submitted["submitted_at"].max().date() > date(2022, 2, 25)  # spread over the whole window
    assert df["submitted_at"].str.ends_with("+00:00").all()
    late = submitted.filter(~pl.col("token").is_in(list(invited)))["submitted_at"]
    assert late.unique().to_list() == [datetime(2022, 3, 1, 12, 0, tzinfo=UTC)]
    for question in SCORE_QUESTIONS:
        scores = df[question]
        assert scores.dtype == pl.Int64
        assert 0 <= scores.min() and scores.max() <= 10
        assert 0 < scores.null_count() < 0.1 * df.height
    assert 6.0 <= df["q1_life_satisfaction"].mean() <= 7.0
    assert 3.5 <= df["q4_anxious_yesterday"].mean() <= 4.5
    for question in YES_NO_QUESTIONS:
        assert set(df[question].drop_nulls().to_list()) == {"Y", "N"}
    assert df.equals(generate_survey_export(tokens, seed=4, response_rate=0.4, **when))
    assert not df.equals(generate_survey_export(tokens, seed=5, response_rate=0.4, **when))
    back = pl.read_csv(survey_export_csv(df), infer_schema=False)
    assert back.columns == list(SURVEY_COLUMNS)
    assert back["token"].to_list() == df["token"].to_list()
    assert back["q1_life_satisfaction"].to_list() == df["q1_life_satisfaction"].cast(
        pl.String).to_list()
    assert generate_survey_export(tokens[:5], seed=1, response_rate=0.5).height == round(2.5)
    assert generate_survey_export([], seed=1).height == 0
