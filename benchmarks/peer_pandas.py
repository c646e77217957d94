"""The peer: the same ingest as a typical team would write it with pandas + pandera.

What a team without this project would write to meet the same extract specification
(shared/spec/extract-v1.md): decrypt the AES-256 ZIP with pyzipper, read each CSV with
``pandas.read_csv`` (all text), type the columns, check them with pandera's pandas API
(``pandera.pandas``: one ``DataFrameSchema`` per table, ``lazy=True`` so every failure is
collected), apply the cross-table rules with pandas joins, pseudonymise the ids with the same
keyed HMAC-SHA-256 (``Series.map``), seal each family's contact details with AES-GCM, derive
the same analysis fields and load the same target tables with ``DataFrame.to_sql`` (executemany)
in one transaction, foreign keys enforced. It is idiomatic pandas, neither tuned nor made slow
on purpose, and it shares no code with the project's pipeline: only the specification's code
lists (schemas/codes.py) and the pseudonym formula.

Its result must equal the project's: the same clean rows, pseudonyms and derived values table
by table, and the same quarantined row keys (tests/test_benchmarks.py checks that). What it
leaves out: replacing families of an earlier extract (it loads into an empty database), the
audit chain and the data-quality report files, which cost little next to the load.

    python benchmarks/peer_pandas.py EXTRACT.zip --home HOME [--database-url URL]

reads the passphrase from CLUSTER_EVAL_EXTRACT_PASSPHRASE and the keys from HOME/keys (made
by ``cluster-eval ingest``), and loads into a fresh SQLite file HOME/peer.sqlite by default.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyzipper
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pandera.errors import SchemaErrors
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import codes  # noqa: E402 - the specification's code lists

TABLES = ("families", "children", "episodes", "goals", "specialist_referrals")
YES = {"y", "yes", "true", "1"}
NO = {"n", "no", "false", "0"}
POSTCODE = r"(?i)^(GIR ?0AA|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
CONTACT_COLUMNS = ["lead_carer_name", "address_line_1", "address_line_2", "town", "postcode", "email",
                   "phone", "preferred_contact", "do_not_contact"]

# The columns read from each file (free text and child_name are never read), by kind.
COLUMNS: dict[str, dict[str, str]] = {
    "families": {
        "family_id": "text", "lead_carer_name": "text", "address_line_1": "text",
        "address_line_2": "text", "town": "text", "postcode": "text", "email": "text",
        "phone": "text", "preferred_contact": "code", "household_size": "integer",
        "adults_in_employment": "integer", "lead_carer_employment": "code",
        "lead_carer_ethnicity": "CODE", "first_language_english": "yes_no",
        "free_school_meals": "yes_no", "imd_decile": "integer", "do_not_contact": "yes_no",
    },
    "children": {
        "child_id": "text", "family_id": "text", "date_of_birth": "date", "gender": "code",
        "ethnicity": "CODE", "school_phase": "code", "sen_support": "yes_no",
    },
    "episodes": {
        "episode_id": "text", "family_id": "text", "referral_date": "date",
        "referral_route": "code", "allocation_date": "date", "presenting_issues": "code_list",
        "primary_issue": "code", "services": "code_list", "lead_worker_role": "code",
        "closure_date": "date", "closure_outcome": "code", "onward_referral": "code",
    },
    "goals": {
        "episode_id": "text", "goal_number": "integer", "goal_area": "code",
        "baseline_score": "integer", "latest_score": "integer", "latest_review_date": "date",
    },
    "specialist_referrals": {
        "referral_id": "text", "episode_id": "text", "service": "code", "reason": "code",
        "start_date": "date", "end_date": "date", "outcome": "code",
    },
}
ROW_KEY = {"families": "family_id", "children": "child_id", "episodes": "episode_id",
           "goals": "episode_id", "specialist_referrals": "referral_id"}
UNIQUE_KEY = {"families": ["family_id"], "children": ["child_id"], "episodes": ["episode_id"],
              "goals": ["episode_id", "goal_number"], "specialist_referrals": ["referral_id"]}
PID_KIND = {"family_id": "family", "child_id": "child", "episode_id": "episode",
            "referral_id": "referral"}


# --------------------------------------------------------------------------- pandera schemas

def _codes(values: tuple[str, ...] | dict[str, str]) -> list[str]:
    return list(values)


def _required(**checks: Any) -> pa.Column:
    return pa.Column(nullable=False, **checks)


def _optional(**checks: Any) -> pa.Column:
    return pa.Column(nullable=True, **checks)


def _not_before(later: str, earlier: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df[later].isna() | df[earlier].isna() | (df[later] >= df[earlier]).fillna(True)


def _all_codes(allowed: tuple[str, ...]) -> Callable[[pd.Series], pd.Series]:
    wanted = set(allowed)
    return lambda s: s.map(lambda items: set(items) <= wanted)


def _primary_in_presenting(df: pd.DataFrame) -> pd.Series:
    return pd.Series([p is None or p is pd.NA or not isinstance(items, list) or p in items
                      for p, items in zip(df["primary_issue"].astype(object), df["presenting_issues"],
                                          strict=True)], index=df.index)


def _closed_has_outcome(df: pd.DataFrame) -> pd.Series:
    return df["closure_date"].isna() | df["closure_outcome"].notna()


def _open_has_no(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df["closure_date"].notna() | df[column].isna()


ISSUES = codes.PRESENTING_ISSUES
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "families": pa.DataFrameSchema({
        "family_id": _required(unique=True),
        "postcode": _optional(checks=pa.Check.str_matches(POSTCODE)),
        "email": _optional(checks=pa.Check.str_matches(EMAIL)),
        "preferred_contact": _required(checks=pa.Check.isin(codes.PREFERRED_CONTACT)),
        "household_size": _required(checks=pa.Check.in_range(1, 20)),
        "adults_in_employment": _required(checks=pa.Check.ge(0)),
        "lead_carer_employment": _required(checks=pa.Check.isin(codes.LEAD_CARER_EMPLOYMENT)),
        "lead_carer_ethnicity": _required(checks=pa.Check.isin(_codes(codes.ETHNICITY))),
        "free_school_meals": _required(),
        "imd_decile": _optional(checks=pa.Check.in_range(1, 10)),
        "do_not_contact": _required(),
    }, checks=[pa.Check(_not_before("household_size", "adults_in_employment"),
                        name="adults_within_household")]),
    "children": pa.DataFrameSchema({
        "child_id": _required(unique=True),
        "family_id": _required(),
        "date_of_birth": _required(),
        "age_at_referral": _optional(checks=pa.Check.in_range(0, 18)),
        "gender": _required(checks=pa.Check.isin(codes.GENDER)),
        "ethnicity": _required(checks=pa.Check.isin(_codes(codes.ETHNICITY))),
        "school_phase": _required(checks=pa.Check.isin(codes.SCHOOL_PHASE)),
    }),
    "episodes": pa.DataFrameSchema({
        "episode_id": _required(unique=True),
        "family_id": _required(),
        "referral_date": _required(),
        "referral_route": _required(checks=pa.Check.isin(codes.REFERRAL_ROUTE)),
        "presenting_issues": _required(checks=pa.Check(_all_codes(ISSUES), name="presenting_issues_codes")),
        "primary_issue": _required(checks=pa.Check.isin(ISSUES)),
        "services": _required(checks=pa.Check(_all_codes(codes.SERVICES), name="services_codes")),
        "lead_worker_role": _required(checks=pa.Check.isin(codes.LEAD_WORKER_ROLE)),
        "closure_outcome": _optional(checks=pa.Check.isin(codes.CLOSURE_OUTCOME)),
        "onward_referral": _optional(checks=pa.Check.isin(codes.ONWARD_REFERRAL)),
    }, checks=[
        pa.Check(_not_before("allocation_date", "referral_date"), name="allocation_after_referral"),
        pa.Check(_not_before("closure_date", "referral_date"), name="closure_after_referral"),
        pa.Check(_primary_in_presenting, name="primary_issue_presenting"),
        pa.Check(_closed_has_outcome, name="outcome_when_closed"),
        pa.Check(_open_has_no("closure_outcome"), name="outcome_empty_when_open"),
        pa.Check(_open_has_no("onward_referral"), name="onward_empty_when_open"),
    ]),
    "goals": pa.DataFrameSchema({
        "episode_id": _required(),
        "goal_number": _required(checks=pa.Check.in_range(1, 3)),
        "goal_area": _required(checks=pa.Check.isin(ISSUES)),
        "baseline_score": _required(checks=pa.Check.in_range(0, 10)),
        "latest_score": _optional(checks=pa.Check.in_range(0, 10)),
    }, unique=["episode_id", "goal_number"]),
    "specialist_referrals": pa.DataFrameSchema({
        "referral_id": _required(unique=True),
        "episode_id": _required(),
        "service": _required(checks=pa.Check.isin(codes.SPECIALIST_SERVICE)),
        "reason": _required(checks=pa.Check.isin(ISSUES)),
        "start_date": _required(),
        "outcome": _required(checks=pa.Check.isin(codes.SPECIALIST_OUTCOME)),
    }, checks=[pa.Check(_not_before("end_date", "start_date"), name="end_after_start")]),
}
# The column reported for each dataframe-wide check.
FRAME_CHECK_COLUMN = {"adults_within_household": "adults_in_employment",
                      "allocation_after_referral": "allocation_date", "closure_after_referral": "closure_date",
                      "primary_issue_presenting": "primary_issue", "outcome_when_closed": "closure_outcome",
                      "outcome_empty_when_open": "closure_outcome", "onward_empty_when_open": "onward_referral",
                      "end_after_start": "end_date", "multiple_fields_uniqueness": "goal_number"}
RULE_OF_CHECK = {"presenting_issues_codes": "code_list", "services_codes": "code_list",
                 "not_nullable": "required", "field_uniqueness": "unique",
                 "multiple_fields_uniqueness": "unique", "isin": "code_list", "in_range": "range",
                 "greater_than_or_equal_to": "range", "str_matches": "shape"}


# --------------------------------------------------------------------------- stages

class Rejected(Exception):
    """The extract is refused as a whole (one line, no values)."""


def decrypt(path: Path, passphrase: str) -> dict[str, bytes]:
    """The archive's members, decrypted in memory."""
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(passphrase.encode("utf-8"))
        return {Path(name).name: archive.read(name) for name in archive.namelist()
                if not name.endswith("/")}


def read_table(data: bytes, table: str) -> pd.DataFrame:
    """One CSV as text: headers normalised, cells trimmed, empty = missing, blank rows dropped."""
    encoding = "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        encoding = "cp1252"
    df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding=encoding)
    df.columns = [re.sub(r"[\s_]+", "_", str(c).strip().lower()).strip("_") for c in df.columns]
    wanted = list(COLUMNS[table])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise Rejected(f"{table}.csv has no column {missing[0]}")
    df = df[wanted].apply(lambda s: s.str.strip()).replace("", pd.NA)
    df.insert(0, "row", range(1, len(df) + 1))
    return df.dropna(how="all", subset=wanted)


@dataclass
class Typed:
    """A table with typed columns, and the cells that did not type (row, column, reason)."""

    frame: pd.DataFrame
    type_failures: list[tuple[int, str, str, str]] = field(default_factory=list)


def _integer(s: pd.Series) -> pd.Series:
    cleaned = s.str.removeprefix("+").str.replace(r"\.0+$", "", regex=True)
    whole = cleaned.str.fullmatch(r"-?\d+").fillna(False).astype(bool)
    return pd.to_numeric(cleaned.where(whole), errors="coerce").astype("Int64")


def _yes_no(s: pd.Series) -> pd.Series:
    lower = s.str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[lower.isin(YES)] = True
    out[lower.isin(NO)] = False
    return out


def _date(s: pd.Series) -> pd.Series:
    iso = pd.to_datetime(s.where(s.str.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}").fillna(False).astype(bool)),
                         format="%Y-%m-%d", errors="coerce")
    uk = pd.to_datetime(s.where(s.str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}").fillna(False).astype(bool)),
                        format="%d/%m/%Y", errors="coerce")
    parsed = iso.fillna(uk)
    return parsed.where(parsed.dt.year.between(1900, 2100))


def _code_list(s: pd.Series) -> pd.Series:
    def split(value: Any) -> list[str] | None:
        if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
            return None
        items = list(dict.fromkeys(v.strip().lower() for v in value.split(";") if v.strip()))
        return items or None

    return s.map(split).astype(object)


def type_table(table: str, raw: pd.DataFrame) -> Typed:
    """Convert each column to its kind; a present value that does not convert is a type failure."""
    df = raw.copy()
    failures: list[tuple[int, str, str, str]] = []
    for column, kind in COLUMNS[table].items():
        s = raw[column]
        if kind == "code":
            df[column] = s.str.lower()
        elif kind == "CODE":
            df[column] = s.str.upper()
        elif kind == "code_list":
            df[column] = _code_list(s)
        elif kind in ("integer", "yes_no", "date"):
            converted = {"integer": _integer, "yes_no": _yes_no, "date": _date}[kind](s)
            bad = s.notna() & converted.isna()
            failures += [(row, column, "type", f"not a valid {kind} value") for row in raw.loc[bad, "row"]]
            df[column] = converted
    return Typed(df, failures)


def with_age(children: pd.DataFrame, episodes: pd.DataFrame, window: tuple[date, date]) -> pd.DataFrame:
    """age_at_referral: whole years at the family's latest in-window referral (else latest referral)."""
    start, end = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    inside = (episodes["referral_date"] <= end) & (episodes["closure_date"].isna()
                                                   | (episodes["closure_date"] >= start))
    latest_in = episodes[inside].groupby("family_id")["referral_date"].max()
    latest = episodes.groupby("family_id")["referral_date"].max()
    reference = latest_in.reindex(latest.index).fillna(latest).rename("reference")
    out = children.merge(reference, left_on="family_id", right_index=True, how="left")
    dob, ref = out["date_of_birth"], out["reference"]
    before_birthday = (ref.dt.month * 100 + ref.dt.day) < (dob.dt.month * 100 + dob.dt.day)
    out["age_at_referral"] = (ref.dt.year - dob.dt.year - before_birthday.astype(int)).astype("Int64")
    out.loc[ref.isna() | dob.isna(), "age_at_referral"] = pd.NA
    return out.drop(columns="reference")


def schema_failures(table: str, df: pd.DataFrame) -> list[tuple[int, str, str, str]]:
    """pandera failures of one table as (row, column, rule, reason)."""
    try:
        SCHEMAS[table].validate(df, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return []
    out = []
    for case in cases[["column", "check", "index"]].dropna(subset=["index"]).itertuples(index=False):
        check = str(case.check).split("(")[0]
        column = str(case.column)
        if check in FRAME_CHECK_COLUMN:  # a dataframe check fails every column of the row: report one
            column = FRAME_CHECK_COLUMN[check]
        if column == "age_at_referral":
            column, check = "date_of_birth", "age_at_referral"
        rule = RULE_OF_CHECK.get(check, check)
        out.append((int(df.at[int(case.index), "row"]), column, rule, f"failed {rule}"))
    return list(dict.fromkeys(out))


def _cells(rows: pd.Series, column: str, rule: str) -> list[tuple[int, str, str, str]]:
    return [(int(r), column, rule, f"failed {rule}") for r in rows]


@dataclass
class Validated:
    """Passing rows per table (typed), and every failure (table, row, row_key, column, rule, reason)."""

    tables: dict[str, pd.DataFrame]
    failures: pd.DataFrame
    rows_read: dict[str, int]
    quarantined: dict[str, int]


def validate(raw: dict[str, pd.DataFrame], window: tuple[date, date]) -> Validated:
    """Type, check with pandera, then the cross-table rules (parents first, orphans cascade)."""
    passing: dict[str, pd.DataFrame] = {}
    all_failures = []
    for table in ("families", "episodes", "children", "goals", "specialist_referrals"):
        typed = type_table(table, raw[table])
        df = typed.frame
        if table == "children":
            df = with_age(df, passing["episodes"], window)
        untyped = {(row, column) for row, column, _rule, _reason in typed.type_failures}
        found = typed.type_failures + [  # a cell that did not type is not also reported missing
            f for f in schema_failures(table, df) if f[2] not in ("required", "unique") or f[:2] not in untyped]
        parent = {"children": "families", "episodes": "families", "goals": "episodes",
                  "specialist_referrals": "episodes"}.get(table)
        if parent:
            fk = "family_id" if parent == "families" else "episode_id"
            orphan = df[fk].notna() & ~df[fk].isin(passing[parent][fk])
            found += _cells(df.loc[orphan, "row"], fk, "foreign_key")
        if table in ("goals", "specialist_referrals"):
            column, rule = (("latest_review_date", "review_after_referral") if table == "goals"
                            else ("start_date", "start_after_referral"))
            referral = df["episode_id"].map(passing["episodes"].set_index("episode_id")["referral_date"])
            early = (df[column] < referral).fillna(False).astype(bool)
            found += _cells(df.loc[early, "row"], column, rule)
        if table == "goals":
            nth = df[df["episode_id"].notna()].sort_values("row").groupby("episode_id").cumcount()
            found += _cells(df.loc[nth[nth >= 3].index, "row"], "goal_number", "max_goals")
        failures = pd.DataFrame(found, columns=["row", "column", "rule", "reason"]).drop_duplicates()
        keys = df[UNIQUE_KEY[table]]
        by_row = df[ROW_KEY[table]].astype(object).where(df[ROW_KEY[table]].notna()
                                                          & ~keys.duplicated(keep=False), None)
        row_key = by_row.fillna("row " + df["row"].astype(str))
        failures["row_key"] = failures["row"].map(pd.Series(row_key.values, index=df["row"]))
        failures.insert(0, "table", table)
        all_failures.append(failures)
        passing[table] = df[~df["row"].isin(failures["row"])]
    failures = pd.concat(all_failures, ignore_index=True)
    rows_read = {t: len(raw[t]) for t in TABLES}
    quarantined = failures.groupby("table")["row"].nunique().reindex(list(TABLES), fill_value=0).to_dict()
    return Validated(passing, failures, rows_read, quarantined)


def pseudonym(key: bytes, cluster: str, kind: str, value: str) -> str:
    """HMAC-SHA-256(key, "cluster-eval/pid/v1" 0x1F cluster 0x1F kind 0x1F id), first 32 hex digits."""
    message = b"\x1f".join([b"cluster-eval/pid/v1", cluster.encode(), kind.encode(), value.encode("utf-8")])
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def pseudonymise(validated: Validated, key: bytes, cluster: str) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Every id column replaced by its *_pid column; failures' row keys too (``row n`` stays)."""
    out = {}
    for table, df in validated.tables.items():
        df = df.copy()
        for column, kind in PID_KIND.items():
            if column in df.columns:
                df[column] = df[column].map(lambda v, k=kind: pseudonym(key, cluster, k, v))
                df = df.rename(columns={column: f"{kind}_pid"})
        out[table] = df
    failures = validated.failures.copy()
    kinds = failures["table"].map(lambda t: PID_KIND[ROW_KEY[t]])
    plain = failures["row_key"] == "row " + failures["row"].astype(str)
    failures["row_key"] = [k if keep else pseudonym(key, cluster, kind, k)
                           for k, kind, keep in zip(failures["row_key"], kinds, plain, strict=True)]
    return out, failures


def seal_contacts(families: pd.DataFrame, key: bytes, cluster: str, sha256: str) -> pd.DataFrame:
    """One AES-GCM ciphertext of each family's contact details (bound to cluster and family)."""
    key_id = hashlib.sha256(b"cluster-eval contact key id:" + key).hexdigest()[:16]
    aes = AESGCM(key)
    records = families[["family_pid", *CONTACT_COLUMNS]].astype(object)
    records = records.where(records.notna(), None)
    rows = []
    for record in records.to_dict("records"):
        pid = record.pop("family_pid")
        record["do_not_contact"] = True if record["do_not_contact"] is None else bool(record["do_not_contact"])
        nonce = os.urandom(12)
        sealed = aes.encrypt(nonce, json.dumps(record, separators=(",", ":")).encode("utf-8"),
                             f"{cluster}:{pid}".encode())
        rows.append({"cluster_id": cluster, "family_pid": pid, "key_id": key_id,
                     "nonce": base64.b64encode(nonce).decode(), "ciphertext": base64.b64encode(sealed).decode(),
                     "extract_sha256": sha256})
    return pd.DataFrame(rows, columns=["cluster_id", "family_pid", "key_id", "nonce", "ciphertext",
                                       "extract_sha256"])


AGE_BANDS = [(0, 4, "0-4"), (5, 10, "5-10"), (11, 15, "11-15"), (16, 18, "16-18")]


def transform(tables: dict[str, pd.DataFrame], window: tuple[date, date]) -> dict[str, pd.DataFrame]:
    """The analysis tables with their derived fields."""
    start, end = pd.Timestamp(window[0]), pd.Timestamp(window[1])
    goals = tables["goals"].copy()
    goals["score_change"] = goals["latest_score"] - goals["baseline_score"]
    referrals = tables["specialist_referrals"]
    episodes = tables["episodes"].copy()
    episodes["in_window"] = (episodes["referral_date"] <= end) & (
        episodes["closure_date"].isna() | (episodes["closure_date"] >= start))
    episodes["length_of_support_days"] = (episodes["closure_date"] - episodes["referral_date"]).dt.days.astype("Int64")
    episodes["days_to_allocation"] = (episodes["allocation_date"] - episodes["referral_date"]).dt.days.astype("Int64")
    episodes["goal_count"] = episodes["episode_pid"].map(goals.groupby("episode_pid").size()).fillna(0).astype("int64")
    flags = pd.DataFrame({
        "episode_pid": referrals["episode_pid"],
        "stepped_up_res_team": referrals["service"] == "res_team",
        "stepped_up_early_help_hub": referrals["service"] == "early_help_hub",
        "_specialist_step_up": referrals["outcome"] == "stepped_up_to_social_care",
    }).groupby("episode_pid").any()
    for column in flags.columns:
        episodes[column] = episodes["episode_pid"].map(flags[column]).fillna(False).astype(bool)
    episodes["stepped_up_social_care"] = ((episodes["closure_outcome"] == "stepped_up_to_social_care").fillna(False)
                                          | (episodes["onward_referral"] == "childrens_social_care").fillna(False)
                                          | episodes.pop("_specialist_step_up"))
    families = tables["families"].copy()
    families["in_population"] = families["family_pid"].isin(episodes.loc[episodes["in_window"], "family_pid"])
    children = tables["children"].copy()
    children["age_band"] = None
    for low, high, label in AGE_BANDS:
        children.loc[children["age_at_referral"].between(low, high).fillna(False).astype(bool), "age_band"] = label
    lists = {}
    for name, column, value in (("episode_issues", "presenting_issues", "issue"),
                                ("episode_services", "services", "service")):
        rows = episodes[["episode_pid", column]].explode(column).dropna().drop_duplicates()
        lists[name] = rows.rename(columns={column: value}).sort_values(["episode_pid", value])
    return {"families": families, "children": children, "episodes": episodes, **lists, "goals": goals,
            "specialist_referrals": referrals}


# --------------------------------------------------------------------------- load

DDL = """
CREATE TABLE extracts (cluster_id TEXT NOT NULL, sha256 TEXT NOT NULL, file_name TEXT NOT NULL,
  received_at TEXT NOT NULL, PRIMARY KEY (cluster_id, sha256));
CREATE TABLE families (cluster_id TEXT NOT NULL, family_pid TEXT NOT NULL, extract_sha256 TEXT NOT NULL,
  household_size INTEGER NOT NULL, adults_in_employment INTEGER, lead_carer_employment TEXT,
  lead_carer_ethnicity TEXT, first_language_english BOOLEAN, free_school_meals BOOLEAN, imd_decile INTEGER,
  in_population BOOLEAN NOT NULL, PRIMARY KEY (cluster_id, family_pid),
  FOREIGN KEY (cluster_id, extract_sha256) REFERENCES extracts (cluster_id, sha256));
CREATE TABLE children (cluster_id TEXT NOT NULL, child_pid TEXT NOT NULL, family_pid TEXT NOT NULL,
  gender TEXT, ethnicity TEXT, school_phase TEXT, sen_support BOOLEAN, age_at_referral INTEGER, age_band TEXT,
  PRIMARY KEY (cluster_id, child_pid),
  FOREIGN KEY (cluster_id, family_pid) REFERENCES families (cluster_id, family_pid) ON DELETE CASCADE);
CREATE TABLE episodes (cluster_id TEXT NOT NULL, episode_pid TEXT NOT NULL, family_pid TEXT NOT NULL,
  referral_date DATE NOT NULL, referral_route TEXT NOT NULL, allocation_date DATE, primary_issue TEXT NOT NULL,
  lead_worker_role TEXT, closure_date DATE, closure_outcome TEXT, onward_referral TEXT,
  in_window BOOLEAN NOT NULL, length_of_support_days INTEGER, days_to_allocation INTEGER,
  goal_count INTEGER NOT NULL, stepped_up_res_team BOOLEAN NOT NULL, stepped_up_early_help_hub BOOLEAN NOT NULL,
  stepped_up_social_care BOOLEAN NOT NULL, PRIMARY KEY (cluster_id, episode_pid),
  FOREIGN KEY (cluster_id, family_pid) REFERENCES families (cluster_id, family_pid) ON DELETE CASCADE);
CREATE TABLE episode_issues (cluster_id TEXT NOT NULL, episode_pid TEXT NOT NULL, issue TEXT NOT NULL,
  PRIMARY KEY (cluster_id, episode_pid, issue),
  FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE);
CREATE TABLE episode_services (cluster_id TEXT NOT NULL, episode_pid TEXT NOT NULL, service TEXT NOT NULL,
  PRIMARY KEY (cluster_id, episode_pid, service),
  FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE);
CREATE TABLE goals (cluster_id TEXT NOT NULL, episode_pid TEXT NOT NULL, goal_number INTEGER NOT NULL,
  goal_area TEXT NOT NULL, baseline_score INTEGER NOT NULL, latest_score INTEGER, latest_review_date DATE,
  score_change INTEGER, PRIMARY KEY (cluster_id, episode_pid, goal_number),
  FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE);
CREATE TABLE specialist_referrals (cluster_id TEXT NOT NULL, referral_pid TEXT NOT NULL,
  episode_pid TEXT NOT NULL, service TEXT NOT NULL, reason TEXT NOT NULL, start_date DATE NOT NULL,
  end_date DATE, outcome TEXT NOT NULL, PRIMARY KEY (cluster_id, referral_pid),
  FOREIGN KEY (cluster_id, episode_pid) REFERENCES episodes (cluster_id, episode_pid) ON DELETE CASCADE);
CREATE TABLE quarantined_rows (cluster_id TEXT NOT NULL, source_sha256 TEXT NOT NULL, table_name TEXT NOT NULL,
  row_key TEXT NOT NULL, column_name TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE contacts (cluster_id TEXT NOT NULL, family_pid TEXT NOT NULL, key_id TEXT NOT NULL,
  nonce TEXT NOT NULL, ciphertext TEXT NOT NULL, extract_sha256 TEXT NOT NULL, PRIMARY KEY (cluster_id, family_pid));
CREATE INDEX children_family ON children (cluster_id, family_pid);
CREATE INDEX episodes_family ON episodes (cluster_id, family_pid);
CREATE INDEX specialist_referrals_episode ON specialist_referrals (cluster_id, episode_pid);
"""
# The columns loaded into each analysis table, in order (cluster_id first).
TARGET_COLUMNS: dict[str, list[str]] = {
    "families": ["family_pid", "household_size", "adults_in_employment", "lead_carer_employment",
                 "lead_carer_ethnicity", "first_language_english", "free_school_meals", "imd_decile",
                 "in_population"],
    "children": ["child_pid", "family_pid", "gender", "ethnicity", "school_phase", "sen_support",
                 "age_at_referral", "age_band"],
    "episodes": ["episode_pid", "family_pid", "referral_date", "referral_route", "allocation_date",
                 "primary_issue", "lead_worker_role", "closure_date", "closure_outcome", "onward_referral",
                 "in_window", "length_of_support_days", "days_to_allocation", "goal_count",
                 "stepped_up_res_team", "stepped_up_early_help_hub", "stepped_up_social_care"],
    "episode_issues": ["episode_pid", "issue"],
    "episode_services": ["episode_pid", "service"],
    "goals": ["episode_pid", "goal_number", "goal_area", "baseline_score", "latest_score",
              "latest_review_date", "score_change"],
    "specialist_referrals": ["referral_pid", "episode_pid", "service", "reason", "start_date", "end_date",
                             "outcome"],
}


def make_engine(database_url: str) -> Engine:
    """An engine with foreign keys enforced (SQLite needs the pragma on every connection)."""
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys=ON"))
    return engine


def create_schema(conn: Connection) -> None:
    """The target tables, as the team's migration would create them."""
    for statement in DDL.split(";"):
        if statement.strip():
            conn.execute(text(statement))


def load(engine: Engine, analysis: dict[str, pd.DataFrame], contacts: pd.DataFrame, failures: pd.DataFrame,
         cluster: str, sha256: str, file_name: str) -> None:
    """Everything in one transaction with DataFrame.to_sql (executemany)."""
    with engine.begin() as conn:
        create_schema(conn)
        pd.DataFrame([{"cluster_id": cluster, "sha256": sha256, "file_name": file_name,
                       "received_at": pd.Timestamp.now(tz="UTC").isoformat()}]).to_sql(
            "extracts", conn, if_exists="append", index=False)
        for table, columns in TARGET_COLUMNS.items():
            df = analysis[table][columns].copy()
            for column in df.columns:
                if pd.api.types.is_datetime64_any_dtype(df[column]):
                    df[column] = df[column].dt.date
            df.insert(0, "cluster_id", cluster)
            if table == "families":
                df.insert(2, "extract_sha256", sha256)
            df.to_sql(table, conn, if_exists="append", index=False, chunksize=50_000)
        contacts.to_sql("contacts", conn, if_exists="append", index=False, chunksize=50_000)
        quarantined = failures.rename(columns={"table": "table_name", "column": "column_name"})[
            ["table_name", "row_key", "column_name", "rule", "reason"]]
        quarantined.insert(0, "cluster_id", cluster)
        quarantined.insert(1, "source_sha256", sha256)
        quarantined.to_sql("quarantined_rows", conn, if_exists="append", index=False, chunksize=50_000)


# --------------------------------------------------------------------------- the whole ingest

@dataclass
class PeerResult:
    """Stage seconds, rows read/loaded/quarantined per table."""

    stages: dict[str, float]
    rows_read: dict[str, int]
    loaded: dict[str, int]
    quarantined: dict[str, int]

    @property
    def total(self) -> float:
        return sum(self.stages.values())


def ingest(path: Path, database_url: str, *, passphrase: str, pseudonym_key: bytes, contact_key: bytes,
           cluster: str = "pilot", window: tuple[date, date] = (date(2021, 1, 1), date(2021, 6, 30)),
           max_bad_row_fraction: float = 0.05) -> PeerResult:
    """Decrypt, read, validate, pseudonymise, transform and load one extract; time each stage."""
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    members = decrypt(path, passphrase)
    lap("decrypt")
    raw = {table: read_table(members.pop(f"{table}.csv"), table) for table in TABLES}
    del members
    lap("read")
    validated = validate(raw, window)
    for table in TABLES:
        rows = validated.rows_read[table]
        if rows and validated.quarantined[table] / rows > max_bad_row_fraction:
            raise Rejected(f"too many rows of {table} failed validation")
    lap("validate")
    tables, failures = pseudonymise(validated, pseudonym_key, cluster)
    contacts = seal_contacts(tables["families"], contact_key, cluster, sha256)
    lap("pseudonymise")
    analysis = transform(tables, window)
    lap("transform")
    engine = make_engine(database_url)
    try:
        load(engine, analysis, contacts, failures, cluster, sha256, path.name)
    finally:
        engine.dispose()
    lap("load")
    return PeerResult(stages, validated.rows_read, {t: len(analysis[t]) for t in TARGET_COLUMNS},
                      validated.quarantined)


def read_key(home: Path, name: str) -> bytes:
    """A key file written by cluster-eval (urlsafe base64 under HOME/keys)."""
    return base64.urlsafe_b64decode((home / "keys" / name).read_bytes().strip())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ingest one extract the pandas way and print the stage times."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("extract", type=Path)
    parser.add_argument("--home", type=Path, required=True, help="a cluster-eval home holding keys/")
    parser.add_argument("--database-url", default=None, help="an empty database (default HOME/peer.sqlite)")
    parser.add_argument("--cluster", default="pilot")
    args = parser.parse_args(argv)
    url = args.database_url or f"sqlite:///{args.home / 'peer.sqlite'}"
    result = ingest(args.extract, url, passphrase=os.environ["CLUSTER_EVAL_EXTRACT_PASSPHRASE"],
                    pseudonym_key=read_key(args.home, "pseudonym_key"),
                    contact_key=read_key(args.home, "contact_key"), cluster=args.cluster)
    print(json.dumps({"stages": result.stages, "total_s": result.total, "rows_read": result.rows_read,
                      "loaded": result.loaded, "quarantined": result.quarantined}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
