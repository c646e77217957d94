"""The retention rules table (``deployments/retention-rules.toml``): parsed and checked once.

The rules are configuration, not code: what each rule deletes (tables, file categories,
folders, keys, Prefect history) or clears (``null_columns``), when (a basis and an offset naming
a whole-number setting: ``name`` in [retention], or ``section.name`` in another section) and how.
Table, column and folder names are checked against strict patterns here because they are the
only identifiers ever formatted into SQL or joined to the state folder.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from importlib.resources import files as package_files
from typing import Any

from tasks.core.errors import ConfigError
from tasks.core.settings import RetentionSettings, Settings

RULES_FILE = "retention-rules.toml"
BASES = ("ingest", "fieldwork_end", "publication", "rolling", "approval", "last_approval")
#: Bases counted from the approval of qualitative transcripts (qual_sessions.approved_at).
APPROVAL_BASES = ("approval", "last_approval")
ALL = "*"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FOLDER = re.compile(r"^[a-z][a-z0-9_-]*(/[a-z][a-z0-9_-]*)*$")


@dataclass(frozen=True)
class NullColumns:
    """Columns a rule sets to NULL in every row of this cluster (the rows themselves stay)."""

    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """One row of the retention table: what is deleted, when (basis + offset) and how."""

    name: str
    category: str
    what: str
    basis: str
    offset: str
    unit: str
    how: str
    tables: tuple[str, ...] = ()
    file_categories: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    keys_when_empty: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()
    prefect: bool = False
    # Columns cleared (set to NULL) in every row of this cluster; the rows stay for a later rule.
    null_columns: NullColumns | None = None
    # Tables whose rows the store's key encrypts (None: everything the rule deletes).
    key_protects: tuple[str, ...] | None = None

    @property
    def is_store(self) -> bool:
        """A store is crypto-shredded as one item: its key first, then its rows and files."""
        return bool(self.keys) and ALL not in self.keys


def offset_field(offset: str) -> tuple[str, str]:
    """The settings section and field an offset names: ``name`` in [retention], or ``section.name``."""
    section, _, name = offset.rpartition(".")
    return section or "retention", name


def offset_value(rule: Rule, settings: Settings) -> int:
    """The rule's offset (days or months) as configured."""
    section, name = offset_field(rule.offset)
    return int(getattr(getattr(settings, section), name))


def _offset_is_whole_number(offset: str) -> bool:
    section, name = offset_field(offset)
    if section == "retention":
        found = RetentionSettings.model_fields.get(name)
    else:
        model = Settings.model_fields.get(section)
        annotation = model.annotation if model is not None else None
        found = getattr(annotation, "model_fields", {}).get(name)
    return found is not None and found.annotation is int


def _check_fields(raw: Mapping[str, Any], where: str) -> None:
    known = {f.name: f for f in fields(Rule)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [n for n, f in known.items() if f.default is MISSING and n not in raw]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")


def _rolls_wrongly(rule: Rule) -> bool:
    # Only Prefect history rolls, and Prefect history is either rolling or goes at publication.
    return (rule.basis == "rolling" and not rule.prefect) or (
        rule.prefect and rule.basis not in ("rolling", "publication")
    )


def _timing_problem(rule: Rule) -> str | None:
    if rule.basis not in BASES:
        return f"basis must be one of {', '.join(BASES)}"
    if not _offset_is_whole_number(rule.offset):
        return "offset must name a whole-number setting in [retention] (or section.name in another section)"
    if rule.unit not in ("days", "months"):
        return "unit must be days or months"
    if rule.basis == "publication" and (rule.offset, rule.unit) != ("months_after_publication", "months"):
        return "publication rules use months_after_publication in months"
    if rule.basis in APPROVAL_BASES and rule.unit != "days":
        return "approval rules count days"
    if _rolls_wrongly(rule):
        return "only Prefect history rolls; it is rolling or publication"
    return None


def _naming_problem(rule: Rule) -> str | None:
    nulled = (rule.null_columns.table, *rule.null_columns.columns) if rule.null_columns else ()
    if any(not IDENTIFIER.match(t) for t in (*rule.tables, *nulled, *(rule.key_protects or ()))):
        return "table and column names must be lower-case identifiers"
    if any(not _FOLDER.match(f) for f in rule.folders):
        return "folders must be plain folder names under CLUSTER_EVAL_HOME"
    if rule.null_columns and not rule.null_columns.columns:
        return "null_columns needs a table and one or more columns"
    return None


def _null_columns(raw: Any, where: str) -> NullColumns:
    if not isinstance(raw, Mapping) or set(raw) != {"table", "columns"} or not isinstance(raw["columns"], list):
        raise ConfigError(f"{where}: null_columns must be {{table = \"...\", columns = [\"...\"]}}")
    return NullColumns(str(raw["table"]), tuple(str(c) for c in raw["columns"]))


def _rule(raw: Mapping[str, Any], number: int) -> Rule:
    where = f"{RULES_FILE} rule {number}"
    _check_fields(raw, where)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    if "null_columns" in values:
        values["null_columns"] = _null_columns(values["null_columns"], where)
    rule = Rule(**values)
    problem = _timing_problem(rule) or _naming_problem(rule)
    if problem:
        raise ConfigError(f"{RULES_FILE} rule {rule.name}: {problem}")
    return rule


def load_rules(source: str | None = None) -> tuple[Rule, ...]:
    """Parse and check the retention rules table (default: the packaged TOML file)."""
    if source is None:
        source = (package_files("deployments") / RULES_FILE).read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{RULES_FILE} is not valid TOML: {exc}") from None
    rules = tuple(_rule(item, n) for n, item in enumerate(raw.get("rule", []), start=1))
    names = [r.name for r in rules]
    tables = [t for r in rules for t in r.tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"{RULES_FILE}: rule names must be unique")
    if len(set(tables)) != len(tables):
        raise ConfigError(f"{RULES_FILE}: a table may be named by one rule only")
    if not rules:
        raise ConfigError(f"{RULES_FILE}: no [[rule]] entries")
    return rules
