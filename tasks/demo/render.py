"""Render synthetic tables as archive members and write encrypted extracts (tests, demo, benchmarks).

``render_members`` turns the tables of ``tasks.demo.synthetic.generate_tables`` into archive
members (CSV per table or one workbook), optionally with the messiness the spec allows;
``zip_members``/``aes_zip``/``age_encrypt`` package them and ``write_extract`` writes one
encrypted extract (never any plaintext) to disk.

Rendering: clean CSVs hold the canonical strings (LF line ends, empty cell = missing). A clean
workbook holds integer columns as numbers and everything else (dates too) as text. ``messy=True``
adds only what the spec allows: header variants (``Family ID``, `` family_id ``, ``FAMILY_ID``),
code case/whitespace variants, UK ``DD/MM/YYYY`` dates mixed with ISO (in a workbook, some date
columns, always ``referral_date``, as native Excel dates), yes/no spellings (Y/N, Yes/No,
TRUE/FALSE, 1/0), an extra ``notes_internal`` column in families and episodes, CRLF line ends,
multi-line quoted case notes and cp1252-encodable non-ASCII text (``Zoë``, ``Siân``, ``O’Brien``,
``£``). Marker values are never altered. ``encoding`` applies to CSV members only. Which column
is a code, date, integer or yes/no comes from the rules table (``schemas/columns.py``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyrage
import xlsxwriter

from schemas.codes import EPISODES, FAMILIES, TABLES
from schemas.columns import RULES, columns_for, rules_for
from tasks.core.archive import aes_zip_bytes
from tasks.demo.synthetic import MARKER_RE, generate_tables
from tasks.demo.values import choice, gather

__all__ = [
    "aes_zip",
    "age_encrypt",
    "new_age_identity",
    "render_members",
    "write_extract",
    "zip_members",
]

Fmt = Literal["csv", "xlsx"]
Encoding = Literal["utf-8", "utf-8-sig", "cp1252"]
Encryption = Literal["aes-zip", "age-passphrase", "age-x25519"]

# Column kinds, used only to render (the canonical tables are all strings).
_DATE_COLUMNS: dict[str, tuple[str, ...]] = {table: columns_for(table, kind="date") for table in TABLES}
_INT_COLUMNS = frozenset(r.column for r in RULES if r.kind == "integer")
_YES_NO_COLUMNS = frozenset(r.column for r in RULES if r.kind == "yes_no")
_CODE_COLUMNS: dict[str, frozenset[str]] = {
    table: frozenset(r.column for r in rules_for(table) if r.kind in ("code", "code_list"))
    for table in TABLES
}
_EXTRA_COLUMN = "notes_internal"
_EXTRA_NOTES = ("checked", "awaiting consent", "dup? see CRM", "n/a")
# cp1252-encodable non-ASCII values used by messy rendering.
_ACCENTED_CARERS = ("Zoë Brontë", "Siân O’Brien", "Renée Müller", "José Núñez", "Chloé Dubois",
                    "Máire Ní Bhriain")
_ACCENTED_CHILDREN = ("Zoë O’Neill", "Esmé Horváth", "Siân Davies", "Noël Dupré")
_ACCENTED_LINE2 = ("Brontë Court", "Café Row", "St Mark’s", "Rosé House")
_MESSY_NOTES = ("Voucher £15 given.", "Follow-up booked – carer agreed.", "Seen at “the hub”.")
_YES_NO_STYLES = (("Y", "N"), ("Yes", "No"), ("TRUE", "FALSE"), ("1", "0"), ("yes", "no"))


# ---------------------------------------------------------------------------------------------
# Messy rendering: one function per kind of mess, each drawing from the table's random stream.
def _header_variant(name: str, style: int) -> str:
    if style == 1:  # "Family ID"
        return " ".join(w.upper() if w == "id" else w.capitalize() for w in name.split("_"))
    if style == 2:
        return f" {name} "
    if style == 3:
        return name.upper()
    return name


def _flags(rng: np.random.Generator, n: int, share: float) -> pl.Expr:
    return pl.lit(pl.Series(rng.random(n) < share, dtype=pl.Boolean))


def _messy_code(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
    """Codes in upper, title case or padded with spaces."""
    v = pl.lit(pl.Series(choice(rng, n, (0.6, 0.15, 0.1, 0.1, 0.05))))
    return (
        pl.when(v == 1).then(col.str.to_uppercase())
        .when(v == 2).then(col.str.to_titlecase())
        .when(v == 3).then(pl.concat_str([pl.lit(" "), col, pl.lit(" ")]))
        .when(v == 4).then(col + " ")
        .otherwise(col)
    )


def _messy_yes_no(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
    """Yes/no in one main spelling per column, a fifth of the rows in another."""
    main = int(rng.integers(0, len(_YES_NO_STYLES)))
    pick = np.where(rng.random(n) < 0.8, main, rng.integers(0, len(_YES_NO_STYLES), n))
    yes = pl.lit(gather([s[0] for s in _YES_NO_STYLES], pick))
    no = pl.lit(gather([s[1] for s in _YES_NO_STYLES], pick))
    return pl.when(col == "Y").then(yes).when(col == "N").then(no).otherwise(col)


def _messy_date(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
    """None, half or all of a column's dates as UK DD/MM/YYYY."""
    uk_share = float(rng.choice([0.0, 0.5, 1.0]))
    uk = pl.lit(pl.Series(rng.random(n) < uk_share, dtype=pl.Boolean))
    return pl.when(uk).then(col.str.to_date("%Y-%m-%d").dt.strftime("%d/%m/%Y")).otherwise(col)


def _messy_name(pool: tuple[str, ...]) -> Callable[[pl.Expr, int, np.random.Generator], pl.Expr]:
    """Some names replaced by accented ones (marker values are never replaced)."""

    def mess(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
        swap = _flags(rng, n, 0.08)
        fancy = pl.lit(gather(pool, rng.integers(0, len(pool), n)))
        return pl.when(swap & ~col.str.contains(MARKER_RE)).then(fancy).otherwise(col)

    return mess


def _messy_line2(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
    """Some address lines replaced by accented ones."""
    swap = _flags(rng, n, 0.1)
    fancy = pl.lit(gather(_ACCENTED_LINE2, rng.integers(0, len(_ACCENTED_LINE2), n)))
    return pl.when(swap).then(fancy).otherwise(col)


def _messy_notes(col: pl.Expr, n: int, rng: np.random.Generator) -> pl.Expr:
    """Some case notes continued on a second line (CRLF inside a quoted cell)."""
    add = _flags(rng, n, 0.15)
    extra = pl.lit(gather(_MESSY_NOTES, rng.integers(0, len(_MESSY_NOTES), n)))
    return pl.when(add).then(pl.concat_str([col, pl.lit("\r\n"), extra])).otherwise(col)


Mess = Callable[[pl.Expr, int, np.random.Generator], pl.Expr]
_MESS_BY_COLUMN: dict[str, Mess] = {
    "lead_carer_name": _messy_name(_ACCENTED_CARERS),
    "child_name": _messy_name(_ACCENTED_CHILDREN),
    "address_line_2": _messy_line2,
    "case_notes": _messy_notes,
}


def _mess_for(table: str, column: str, native_dates: frozenset[str]) -> Mess | None:
    """How a column is made messy, or None when it is left as it is."""
    if column in _CODE_COLUMNS[table]:
        return _messy_code
    if column in _YES_NO_COLUMNS:
        return _messy_yes_no
    if column in _DATE_COLUMNS[table]:
        return None if column in native_dates else _messy_date
    return _MESS_BY_COLUMN.get(column)


def _messy_frame(table: str, df: pl.DataFrame, rng: np.random.Generator,
                 native_dates: frozenset[str]) -> pl.DataFrame:
    """Apply the messiness the spec allows to one clean table (values and headers)."""
    n = df.height
    exprs: list[pl.Expr] = []
    for column in df.columns:
        mess = _mess_for(table, column, native_dates)
        exprs.append(pl.col(column) if mess is None else mess(pl.col(column), n, rng).alias(column))
    out = df.select(exprs) if n else df
    if table in (FAMILIES, EPISODES):
        extra_notes = gather(_EXTRA_NOTES, rng.integers(0, 4, n), rng.random(n) < 0.3)
        out = out.with_columns(extra_notes.alias(_EXTRA_COLUMN))
    styles = rng.choice(4, size=out.width, p=(0.4, 0.3, 0.15, 0.15))
    return out.rename({c: _header_variant(c, int(s)) for c, s in zip(out.columns, styles,
                                                                      strict=True)})


# ---------------------------------------------------------------------------------------------
# Members.
def _write_cell(sheet: xlsxwriter.worksheet.Worksheet, row: int, column: int, kind: str,
                value: str, date_format: xlsxwriter.format.Format) -> None:
    if kind == "int":
        sheet.write_number(row, column, int(value))
    elif kind == "date":
        sheet.write_datetime(row, column, date.fromisoformat(value), date_format)
    else:
        sheet.write_string(row, column, value)


def _xlsx_bytes(sheets: Mapping[str, tuple[pl.DataFrame, Sequence[str]]]) -> bytes:
    buf = io.BytesIO()
    workbook = xlsxwriter.Workbook(buf, {
        "in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
        "strings_to_urls": False,
    })
    workbook.set_properties({"created": datetime(2022, 1, 1)})
    date_format = workbook.add_format({"num_format": "dd/mm/yyyy"})
    for name, (frame, kinds) in sheets.items():
        sheet = workbook.add_worksheet(name)
        for ci, (column, kind) in enumerate(zip(frame.columns, kinds, strict=True)):
            sheet.write_string(0, ci, column)
            for ri, value in enumerate(frame.get_column(column).to_list(), start=1):
                if value is not None:
                    _write_cell(sheet, ri, ci, kind, value, date_format)
    workbook.close()
    return buf.getvalue()


def _csv_member(frame: pl.DataFrame, messy: bool, encoding: Encoding) -> bytes:
    """One table as CSV bytes in the given encoding (CRLF line ends when messy)."""
    text = frame.write_csv(line_terminator="\r\n" if messy else "\n")
    data = text.encode("cp1252" if encoding == "cp1252" else "utf-8")
    return (b"\xef\xbb\xbf" + data) if encoding == "utf-8-sig" else data


def _native_dates(table: str, rng: np.random.Generator) -> frozenset[str]:
    """Date columns written as native Excel dates in a messy workbook (always referral_date)."""
    return frozenset(c for c in _DATE_COLUMNS[table] if c == "referral_date" or rng.random() < 0.5)


def _sheet_kinds(clean_columns: Sequence[str], width: int, native: frozenset[str]) -> list[str]:
    """How each column of a sheet is written: int, date (native) or text (extra columns too)."""
    kinds = ["int" if c in _INT_COLUMNS else "date" if c in native else "text" for c in clean_columns]
    return kinds + ["text"] * (width - len(kinds))


def render_members(
    tables: Mapping[str, pl.DataFrame],
    *,
    fmt: Fmt = "csv",
    messy: bool = False,
    encoding: Encoding = "utf-8",
    seed: int = 0,
) -> dict[str, bytes]:
    """Render tables as archive members: ``<table>.csv`` each, or one ``extract.xlsx``."""
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown format {fmt!r}")
    if encoding not in ("utf-8", "utf-8-sig", "cp1252"):
        raise ValueError(f"unknown encoding {encoding!r}")
    members: dict[str, bytes] = {}
    sheets: dict[str, tuple[pl.DataFrame, list[str]]] = {}
    for ti, table in enumerate(TABLES):
        df = tables[table]
        rng = np.random.default_rng([seed, ti, 7])
        native = _native_dates(table, rng) if messy and fmt == "xlsx" else frozenset()
        frame = _messy_frame(table, df, rng, native) if messy else df
        if fmt == "csv":
            members[f"{table}.csv"] = _csv_member(frame, messy, encoding)
        else:
            sheets[table] = (frame, _sheet_kinds(df.columns, frame.width, native))
    if fmt == "xlsx":
        members["extract.xlsx"] = _xlsx_bytes(sheets)
    return members


# ---------------------------------------------------------------------------------------------
# Packaging.
_ZIP_TIME = (2022, 1, 1, 0, 0, 0)


def zip_members(members: Mapping[str, bytes]) -> bytes:
    """Pack members into a plain deflated ZIP archive in memory (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buf.getvalue()


def aes_zip(members: Mapping[str, bytes], passphrase: str) -> bytes:
    """Pack members into a WinZip AES-256 encrypted ZIP archive in memory."""
    if not passphrase:
        raise ValueError("an AES ZIP needs a non-empty passphrase")
    return aes_zip_bytes(members, passphrase)


def age_encrypt(plaintext: bytes, *, passphrase: str | None = None,
                recipient: str | None = None) -> bytes:
    """Encrypt bytes with age, to a passphrase (scrypt) or an X25519 recipient (``age1...``)."""
    if (passphrase is None) == (recipient is None):
        raise ValueError("give exactly one of passphrase or recipient")
    if recipient is not None:
        return pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(recipient)])
    if not passphrase:
        raise ValueError("an age passphrase must not be empty")
    return pyrage.passphrase.encrypt(plaintext, passphrase)


def new_age_identity() -> tuple[str, str]:
    """Create an X25519 age identity: (secret ``AGE-SECRET-KEY-1...``, public ``age1...``)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def _encrypt(members: Mapping[str, bytes], encryption: Encryption, passphrase: str | None,
             recipient: str | None) -> bytes:
    """The members as one encrypted archive (AES-256 ZIP, or a ZIP inside age)."""
    if encryption == "aes-zip":
        if passphrase is None:
            raise ValueError("encryption 'aes-zip' needs a passphrase")
        return aes_zip(members, passphrase)
    if encryption == "age-passphrase":
        if passphrase is None:
            raise ValueError("encryption 'age-passphrase' needs a passphrase")
        return age_encrypt(zip_members(members), passphrase=passphrase)
    if encryption == "age-x25519":
        if recipient is None:
            raise ValueError("encryption 'age-x25519' needs a recipient")
        return age_encrypt(zip_members(members), recipient=recipient)
    raise ValueError(f"unknown encryption {encryption!r}")


def write_extract(
    path: Path,
    *,
    families: int = 200,
    seed: int = 1,
    fmt: Fmt = "csv",
    encryption: Encryption = "aes-zip",
    passphrase: str | None = None,
    recipient: str | None = None,
    messy: bool = False,
    encoding: Encoding = "utf-8",
    markers: bool = False,
    sidecar: bool = False,
) -> Path:
    """Write one encrypted synthetic extract (plus optional ``.sha256``); no plaintext on disk."""
    path = Path(path)
    tables = generate_tables(families, seed, markers=markers)
    members = render_members(tables, fmt=fmt, messy=messy, encoding=encoding, seed=seed)
    data = _encrypt(members, encryption, passphrase, recipient)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    if sidecar:
        digest = hashlib.sha256(data).hexdigest()
        _atomic_write(path.with_name(path.name + ".sha256"),
                      f"{digest}  {path.name}\n".encode("ascii"))
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
