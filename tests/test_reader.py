"""Reading extract members into string frames: forms, encodings, headers, Excel dates."""

from __future__ import annotations

import io
from datetime import date, datetime

import polars as pl
import pytest
import xlsxwriter

from schemas.codes import TABLES
from schemas.columns import READ_COLUMNS, REQUIRED_COLUMNS, TABLE_COLUMNS, columns_for
from tasks.core.errors import InputRejected
from tasks.demo.render import render_members
from tasks.demo.synthetic import generate_tables
from tasks.ingest.reader import ROW, detect_encoding, normalise_header, read_tables

FILE = "extract.zip"


@pytest.fixture(scope="module")
def small_tables() -> dict[str, pl.DataFrame]:
    return generate_tables(12, seed=5)


def csv_members(tables: dict[str, pl.DataFrame]) -> dict[str, bytes]:
    return {f"{t}.csv": tables[t].write_csv().encode() for t in TABLES}


def test_header_normalisation() -> None:
    assert normalise_header(" Family ID ") == "family_id"
    assert normalise_header("FAMILY_ID") == "family_id"
    assert normalise_header("family  id") == "family_id"
    assert normalise_header("Family\u00a0Id") == "family_id"
    assert normalise_header("date_of__birth") == "date_of_birth"


def test_header_variants_map_to_canonical_names(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    families = small_tables["families"].rename(
        {"family_id": " Family ID ", "household_size": "HOUSEHOLD_SIZE", "imd_decile": "imd decile"}
    ).with_columns(pl.lit("x").alias("Internal Notes"))
    members["families.csv"] = families.write_csv().encode()
    raw = read_tables(members, FILE)
    frame = raw.frames["families"]
    assert frame.columns == [ROW, *READ_COLUMNS["families"]]
    assert frame["family_id"].to_list() == small_tables["families"]["family_id"].to_list()
    assert frame["household_size"].to_list() == small_tables["families"]["household_size"].to_list()
    assert raw.extra_columns == {"families": ["Internal Notes"], "children": [], "episodes": [],
                                 "goals": [], "specialist_referrals": []}
    assert raw.rows_read == {t: small_tables[t].height for t in TABLES}
    assert raw.source == "csv"


def test_free_text_and_child_name_are_never_in_frames(small_tables: dict[str, pl.DataFrame]) -> None:
    raw = read_tables(csv_members(small_tables), FILE)
    assert "case_notes" in small_tables["episodes"].columns  # present in the file...
    assert "case_notes" not in raw.frames["episodes"].columns  # ...but never read
    assert "goal_text" not in raw.frames["goals"].columns
    assert "child_name" not in raw.frames["children"].columns
    for table in TABLES:
        assert set(raw.frames[table].columns) == {ROW, *READ_COLUMNS[table]}
        assert all(dtype == pl.String for name, dtype in raw.frames[table].schema.items()
                   if name != ROW)


def test_never_read_columns_may_be_absent(small_tables: dict[str, pl.DataFrame]) -> None:
    tables = dict(small_tables)
    tables["episodes"] = tables["episodes"].drop("case_notes")
    tables["goals"] = tables["goals"].drop("goal_text")
    tables["children"] = tables["children"].drop("child_name")
    raw = read_tables(csv_members(tables), FILE)
    assert raw.rows_read["episodes"] == small_tables["episodes"].height


def test_trims_empty_to_null_numbers_rows_and_drops_blank_rows() -> None:
    tables = generate_tables(2, seed=1)
    header = ",".join(TABLE_COLUMNS["goals"])
    g = tables["goals"]
    lines = [header]
    for i, values in enumerate(g.iter_rows()):
        cells = ["" if v is None else v for v in values]
        if i == 0:
            cells[2] = f"  {cells[2]}  "  # goal_area padded
            cells[4] = "   "  # latest_score blank
        lines.append(",".join(f'"{c}"' for c in cells))
        if i == 0:
            lines.append(",,,,,,")  # an empty row Excel leaves behind
    members = csv_members(tables)
    members["goals.csv"] = ("\r\n".join(lines) + "\r\n").encode()
    frame = read_tables(members, FILE).frames["goals"]
    assert frame.height == g.height
    assert frame[ROW].to_list() == [1, *range(3, g.height + 2)]
    assert frame["goal_area"][0] == g["goal_area"][0]
    assert frame["latest_score"][0] is None


def test_encodings_detected_from_bytes(small_tables: dict[str, pl.DataFrame]) -> None:
    families = small_tables["families"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("Zoë Brontë"))
        .otherwise(pl.col("lead_carer_name")).alias("lead_carer_name"))
    text = families.write_csv()
    members = csv_members(small_tables)
    for encoding, data in (("cp1252", text.encode("cp1252")),
                           ("utf-8-sig", b"\xef\xbb\xbf" + text.encode()),
                           ("utf-8", text.encode())):
        members["families.csv"] = data
        assert detect_encoding(data) == encoding
        raw = read_tables(members, FILE)
        assert raw.encodings["families"] == encoding
        frame = raw.frames["families"]
        assert frame["lead_carer_name"][0] == "Zoë Brontë"
        assert frame["family_id"].to_list() == small_tables["families"]["family_id"].to_list()


def test_undecodable_csv_is_rejected_naming_table(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    # 0x81 is undefined in Windows-1252 and invalid UTF-8 here.
    members["children.csv"] = members["children.csv"].replace(b"C0", b"\x81C0", 1)
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert (err.value.file, err.value.table) == (FILE, "children")


@pytest.mark.parametrize(
    ("members", "table", "message"),
    [
        ({"families.csv": b"", "notes.txt": b"x"}, None, "not a CSV or XLSX"),
        ({"extract.xlsx": b"PK", "families.csv": b"a"}, None, "both a workbook and CSV"),
        ({"a.xlsx": b"PK", "b.xlsx": b"PK"}, None, "more than one workbook"),
        ({"households.csv": b"a"}, None, "is not one of the tables"),
        ({}, None, "no tables"),
        ({"extract.xlsx": b"not a workbook"}, None, "cannot be opened"),
    ],
)
def test_member_forms_rejected(members: dict[str, bytes], table: str | None,
                               message: str) -> None:
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert err.value.file == FILE
    assert err.value.table == table
    assert message in str(err.value)


def test_missing_table_rejected(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    del members["goals.csv"]
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert (err.value.table, err.value.column) == ("goals", None)


def test_missing_required_column_rejected(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    members["episodes.csv"] = small_tables["episodes"].drop("referral_route").write_csv().encode()
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert (err.value.file, err.value.table, err.value.column) == (
        FILE, "episodes", "referral_route")
    assert str(err.value) == (
        "file extract.zip, table episodes, column referral_route: required column is missing")


def test_duplicate_header_after_normalisation_rejected(
        small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    text = members["families.csv"].decode()
    members["families.csv"] = text.replace("family_id", "Family ID,family_id", 1).replace(
        "\nF", "\nX,F").encode()
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert (err.value.table, err.value.column) == ("families", "family_id")


def test_unreadable_csv_rejected_without_quoting_content(
        small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    members["goals.csv"] = members["goals.csv"] + b'E999,"ZQXSECRET unterminated\n'
    with pytest.raises(InputRejected) as err:
        read_tables(members, FILE)
    assert err.value.table == "goals"
    assert "ZQXSECRET" not in str(err.value)


def test_required_columns_are_all_read_columns() -> None:
    assert REQUIRED_COLUMNS == READ_COLUMNS
    assert "case_notes" not in REQUIRED_COLUMNS["episodes"]
    assert "date_of_birth" in REQUIRED_COLUMNS["children"]


def _workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    fmt = book.add_format({"num_format": "dd/mm/yyyy"})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if isinstance(value, date | datetime):
                    sheet.write_datetime(r, c, value, fmt)
                elif isinstance(value, int | float):
                    sheet.write_number(r, c, value)
                elif value is not None:
                    sheet.write_string(r, c, value)
    book.close()
    return buf.getvalue()


def _sheets(tables: dict[str, pl.DataFrame]) -> dict[str, list[list[object]]]:
    return {t: [list(tables[t].columns), *map(list, tables[t].iter_rows())] for t in TABLES}


def test_xlsx_native_dates_and_numbers_read_as_iso_text(
        small_tables: dict[str, pl.DataFrame]) -> None:
    sheets = _sheets(small_tables)
    episodes = sheets["episodes"]
    ref = episodes[0].index("referral_date")
    clo = episodes[0].index("closure_date")
    for row in episodes[1:]:
        row[ref] = date.fromisoformat(row[ref])  # native date cell
        if row[clo] is not None:
            row[clo] = datetime.fromisoformat(row[clo]).replace(hour=14, minute=30)
    fam = sheets["families"]
    size = fam[0].index("household_size")
    for row in fam[1:]:
        row[size] = float(row[size])  # 3.0 in Excel
    sheets["Notes"] = [["anything"]]
    raw = read_tables({"Extract.XLSX": _workbook(sheets)}, FILE)
    assert raw.source == "xlsx"
    assert raw.ignored_sheets == ["Notes"]
    assert raw.frames["episodes"]["referral_date"].to_list() == (
        small_tables["episodes"]["referral_date"].to_list())
    assert raw.frames["episodes"]["closure_date"].to_list() == (
        small_tables["episodes"]["closure_date"].to_list())
    assert raw.frames["families"]["household_size"].to_list() == (
        small_tables["families"]["household_size"].to_list())
    for table in TABLES:
        assert raw.frames[table].drop(ROW).equals(small_tables[table].select(READ_COLUMNS[table]))


def test_xlsx_from_synthetic_messy_workbook(small_tables: dict[str, pl.DataFrame]) -> None:
    members = render_members(small_tables, fmt="xlsx", messy=True, seed=9)
    raw = read_tables(members, FILE)
    episodes = raw.frames["episodes"]
    assert episodes["referral_date"].to_list() == (
        small_tables["episodes"]["referral_date"].to_list())
    assert raw.frames["goals"]["goal_number"].to_list() == (
        small_tables["goals"]["goal_number"].to_list())
    assert raw.extra_columns["families"] == ["notes_internal"]
    assert "case_notes" not in episodes.columns
    for column in columns_for("episodes", kind="date"):
        values = episodes[column].drop_nulls()
        assert values.str.contains(r"^(\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4})$").all()


def test_xlsx_missing_sheet_rejected(small_tables: dict[str, pl.DataFrame]) -> None:
    sheets = _sheets(small_tables)
    sheets["Specialist Referrals"] = sheets.pop("specialist_referrals")
    with pytest.raises(InputRejected) as err:
        read_tables({"extract.xlsx": _workbook(sheets)}, FILE)
    assert (err.value.file, err.value.table) == (FILE, "specialist_referrals")


def test_xlsx_missing_column_rejected(small_tables: dict[str, pl.DataFrame]) -> None:
    sheets = _sheets(small_tables)
    sheets["children"] = [row[:3] + row[4:] for row in sheets["children"]]  # no date_of_birth
    with pytest.raises(InputRejected) as err:
        read_tables({"extract.xlsx": _workbook(sheets)}, FILE)
    assert (err.value.table, err.value.column) == ("children", "date_of_birth")


def test_utf16_and_semicolon_csvs_rejected(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    members["families.csv"] = small_tables["families"].write_csv().encode("utf-16")
    with pytest.raises(InputRejected, match="UTF-16") as err:
        read_tables(members, FILE)
    assert err.value.table == "families"
    members = csv_members(small_tables)
    members["goals.csv"] = small_tables["goals"].write_csv(separator=";").encode()
    with pytest.raises(InputRejected, match="not comma separated") as err:
        read_tables(members, FILE)
    assert err.value.table == "goals"


def test_header_only_table_reads_as_empty(small_tables: dict[str, pl.DataFrame]) -> None:
    members = csv_members(small_tables)
    members["specialist_referrals.csv"] = (
        ",".join(TABLE_COLUMNS["specialist_referrals"]) + "\r\n").encode()
    raw = read_tables(members, FILE)
    assert raw.rows_read["specialist_referrals"] == 0
    assert raw.frames["specialist_referrals"].columns == [
        ROW, *READ_COLUMNS["specialist_referrals"]]
