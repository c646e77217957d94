"""The retention rules table (``deployments/retention-rules.toml``): parsed and checked once.

The rules are configuration, not code: what each rule deletes (tables, file categories,
folders, keys, Prefect history), when (a basis and an offset naming a [retention] setting) and
how. Table and folder names are checked against strict patterns here because they are the only
identifiers ever formatted into SQL or joined to the state folder.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from importlib.resources import files as package_files
from typing import Any

from tasks.core.errors import ConfigError
from tasks.core.settings import RetentionSettings

RULES_FILE = "retention-rules.toml"
BASES = ("ingest", "fieldwork_end", "publication", "rolling")
ALL = "*"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FOLDER = re.compile(r"^[a-z][a-z0-9_-]*$")


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

    @property
    def is_store(self) -> bool:
        """A store is crypto-shredded as one item: its key first, then its rows and files."""
        return bool(self.keys) and ALL not in self.keys


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
    offset = RetentionSettings.model_fields.get(rule.offset)
    if rule.basis not in BASES:
        return f"basis must be one of {', '.join(BASES)}"
    if offset is None or offset.annotation is not int:
        return "offset must name a whole-number setting in [retention]"
    if rule.unit not in ("days", "months"):
        return "unit must be days or months"
    if rule.basis == "publication" and (rule.offset, rule.unit) != ("months_after_publication", "months"):
        return "publication rules use months_after_publication in months"
    if _rolls_wrongly(rule):
        return "only Prefect history rolls; it is rolling or publication"
    return None


def _naming_problem(rule: Rule) -> str | None:
    if any(not IDENTIFIER.match(t) for t in rule.tables):
        return "table names must be lower-case identifiers"
    if any(not _FOLDER.match(f) for f in rule.folders):
        return "folders must be plain folder names under CLUSTER_EVAL_HOME"
    return None


def _rule(raw: Mapping[str, Any], number: int) -> Rule:
    _check_fields(raw, f"{RULES_FILE} rule {number}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
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
