"""Tables as published: text with fixed decimals, and small-number suppression shown as "c".

Each table is suppressed by its rules in ``tasks.analysis.registry.TABLES``: one-way counts by
``tasks.analysis.disclosure.suppress_one_way`` (linked percentages and statistics hidden with
their count), cross-tabs by ``suppress_two_way``, survey figures below the survey minimum.
Tables that share a population (``registry.LINKED_SETS``) are then protected together by
``tasks.analysis.linked`` (a linear-programme audit per suppressed count and per cell of the
set's latent cross-tab); ``disclosure_audit`` re-audits the tables as published for the
manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import polars as pl

from tasks.analysis.disclosure import SUPPRESSED, suppress_one_way, suppress_two_way
from tasks.analysis.linked import Masks, audit_set, protect_linked, set_counts
from tasks.analysis.registry import TABLES_BY_NAME, CrossTab, MinBase, OneWay, Rule, TableInfo

#: Survey means (and spreads) from fewer respondents than this are never published.
SURVEY_MIN_RESPONDENTS = 5


def _text(value: Any, places: int | None) -> str | None:
    """One cell as text: floats with ``places`` decimals, NaN and null as null."""
    if value is None:
        return None
    if isinstance(value, float):
        if places is None:
            raise ValueError("a float column needs its number of decimals in TableInfo.decimals")
        if math.isnan(value):
            return None
        return f"{value:.{places}f}"
    return str(value)


def format_table(info: TableInfo, df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text: floats with the table's fixed decimals, null stays null.

    Percentages of a base under 100 are whole numbers (:func:`whole_percents`).
    """
    whole = whole_percents(info, df)
    return pl.DataFrame(
        {col: [whole[col][i] if i in whole.get(col, {})
               else _text(v, info.decimals.get(col)) if df.schema[col] != pl.String else v
               for i, v in enumerate(df[col].to_list())] for col in df.columns},
        schema={col: pl.String for col in df.columns},
    )


#: Percentages of a base below this are published as whole numbers, one decimal otherwise.
WHOLE_PERCENT_BELOW = 100


def _small_base(pairs: Sequence[tuple[Any, Any]]) -> int | None:
    """The group's base if it is under 100, recovered from its (count, percent) pairs.

    Tables do not all hold their base (multiple counting, answered-only bases), so it is the
    base 1..99 that gives every percent to within 0.05 (one decimal): the sum of the counts
    when that fits, else the smallest that fits; None when none does (a base of 100 or more).
    Only a group whose counts are all under 5 can fit a base under 100 when its own is 100 to
    125; it is then shown whole, the side that claims less precision.
    """
    known = [(c, p) for c, p in pairs if c is not None and p is not None and not math.isnan(p)]
    if not known:
        return None
    low = max(1, *(c for c, _ in known))
    fits = [base for base in range(low, WHOLE_PERCENT_BELOW)
            if all(abs(100 * c / base - p) <= 0.05 + 1e-9 for c, p in known)]
    total = sum(c for c, _ in known)
    return total if total in fits else (fits[0] if fits else None)


def whole_percents(info: TableInfo, df: pl.DataFrame) -> dict[str, dict[int, str]]:
    """Whole-percent text of percentage cells whose group's base is under 100, by column and row.

    Percentage columns are ``percent`` and ``*_percent`` linked to a one-way count rule; the
    whole percent is ``100 * count / base`` rounded half up, computed exactly (not by
    rounding the one-decimal figure again).
    """
    out: dict[str, dict[int, str]] = {}
    for rule in info.rules:
        if not isinstance(rule, OneWay) or rule.column not in df.columns:
            continue
        for col in rule.linked:
            if col in out or col not in df.columns or not (
                    col == "percent" or col.endswith("_percent")):
                continue
            out[col] = {}
            for group in _groups(df, rule.group_by):
                out[col].update(_whole_group(rule, df, col, group))
    return out


def _whole_group(rule: OneWay, df: pl.DataFrame, col: str, group: Sequence[int]) -> dict[int, str]:
    """Whole-percent text of one group's cells of ``col``; none when its base is 100 or more."""
    counts, shares = df[rule.column].to_list(), df[col].to_list()
    total_at = _total_row(rule, df, group)
    base = _small_base([(counts[i], shares[i]) for i in group if i != total_at])
    if base is None:
        return {}
    return {i: str(math.floor(Fraction(100 * counts[i], base) + Fraction(1, 2)))
            for i in group if counts[i] is not None and _text(shares[i], 1) is not None}


def _groups(df: pl.DataFrame, keys: Sequence[str]) -> list[list[int]]:
    """Row indexes per group of ``keys`` in first-appearance order (one group without keys)."""
    if not keys:
        return [list(range(df.height))]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(df.select(keys).iter_rows()):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def survey_minimum(threshold: int) -> int:
    """Smallest base from which a survey mean is published: 5, or threshold + 1 if higher."""
    return max(SURVEY_MIN_RESPONDENTS, threshold + 1)


#: A cell of a table: (column, row index).
Cell = tuple[str, int]


def suppression_mask(info: TableInfo, df: pl.DataFrame, threshold: int) -> dict[str, list[bool]]:
    """Which cells of a restricted table to publish as "c", column by column."""
    mask = {col: [False] * df.height for col in df.columns}
    for rule in info.rules:
        for col, index in _hidden_cells(info.name, rule, df, threshold):
            mask[col][index] = True
    return mask


def _hidden_cells(table: str, rule: Rule, df: pl.DataFrame, threshold: int) -> list[Cell]:
    """The cells one rule of a table hides."""
    if isinstance(rule, OneWay):
        return _one_way_cells(table, rule, df, threshold)
    if isinstance(rule, CrossTab):
        return _wide_cells(rule, df, threshold) if rule.values else _long_cells(rule, df, threshold)
    return _min_base_cells(rule, df, threshold)


def _one_way_counts(table: str, rule: OneWay, df: pl.DataFrame) -> list[int]:
    """The rule's counts, refusing a missing column, a non-integer count or a null."""
    if rule.column not in df.columns:
        raise ValueError(f"table {table}: count column {rule.column!r} not in frame")
    missing = [col for col in rule.linked if col not in df.columns]
    if missing:  # a misspelt name must never leave the percentage of a hidden count on show
        raise ValueError(f"table {table}: linked column(s) {missing} not in frame; "
                         "leave them out of the rule's linked columns if there are none")
    if not df.schema[rule.column].is_integer():
        raise ValueError(f"table {table}: count column {rule.column!r} must be integer, "
                         f"is {df.schema[rule.column]}")
    counts = df[rule.column].to_list()
    if any(value is None for value in counts):
        raise ValueError(f"table {table}: count column {rule.column!r} has null values")
    return counts


def _one_way_cells(table: str, rule: OneWay, df: pl.DataFrame, threshold: int) -> list[Cell]:
    """One-way suppression per group; a hidden count hides its linked columns too."""
    counts = _one_way_counts(table, rule, df)
    flagged: list[int] = []
    for group in _groups(df, rule.group_by):
        flagged += _one_way_group(table, rule, df, counts, group, threshold)
    return [(col, index) for index in flagged for col in (rule.column, *rule.linked)]


def _total_row(rule: OneWay, df: pl.DataFrame, group: Sequence[int]) -> int | None:
    """The index of the group's own total row, if the rule names one and it is there."""
    if rule.total is None:
        return None
    col, value = rule.total
    return next((i for i in group if df[col][i] == value), None)


def _one_way_group(table: str, rule: OneWay, df: pl.DataFrame, counts: Sequence[int],
                   group: Sequence[int], threshold: int) -> list[int]:
    """Rows of one group whose count is hidden: its cells by ``suppress_one_way``, its total alone."""
    total_at = _total_row(rule, df, group)
    cells = [i for i in group if i != total_at]
    hidden = suppress_one_way([counts[i] for i in cells], threshold=threshold,
                              total_published=True)
    flagged = [i for i, h in zip(cells, hidden, strict=True) if h]
    if total_at is not None:
        others = sum(counts[i] for i in cells)
        if counts[total_at] != others:
            raise ValueError(f"table {table}: total row {total_at} holds {counts[total_at]} but "
                             f"the other rows sum to {others}")
        if 1 <= counts[total_at] <= threshold:
            flagged.append(total_at)
    return flagged


def _wide_cells(rule: CrossTab, df: pl.DataFrame, threshold: int) -> list[Cell]:
    """Two-way suppression of a wide cross-tab (one count column per category)."""
    matrix = [list(row) for row in df.select(rule.values).iter_rows()]
    result = suppress_two_way(matrix, threshold=threshold)
    return [(rule.values[j], i) for i, line in enumerate(result.cells)
            for j, hidden in enumerate(line) if hidden]


def _long_cells(rule: CrossTab, df: pl.DataFrame, threshold: int) -> list[Cell]:
    """Two-way suppression of a long cross-tab (a row per pair, absent pairs count 0)."""
    assert rule.cols is not None and rule.value is not None
    row_keys = list(dict.fromkeys(df[rule.rows].to_list()))
    col_keys = list(dict.fromkeys(df[rule.cols].to_list()))
    where = {(r, c): i for i, (r, c) in enumerate(df.select(rule.rows, rule.cols).iter_rows())}
    values = df[rule.value].to_list()
    matrix = [[values[where[(r, c)]] if (r, c) in where else 0 for c in col_keys]
              for r in row_keys]
    result = suppress_two_way(matrix, threshold=threshold)
    return [(rule.value, where[(r, c)]) for a, r in enumerate(row_keys)
            for b, c in enumerate(col_keys) if result.cells[a][b] and (r, c) in where]


def _min_base_cells(rule: MinBase, df: pl.DataFrame, threshold: int) -> list[Cell]:
    """Figures whose base is below the survey minimum."""
    minimum = survey_minimum(threshold)
    return [(col, i) for i, base in enumerate(df[rule.column].to_list())
            if base and base < minimum for col in rule.hides]


def publication_table(info: TableInfo, df: pl.DataFrame, threshold: int,
                      mask: Mapping[str, list[bool]] | None = None) -> pl.DataFrame:
    """The table as published: text, with suppressed cells shown as "c" (``mask`` if given)."""
    if mask is None:
        mask = suppression_mask(info, df, threshold)
    text = format_table(info, df)
    return pl.DataFrame(
        {col: [SUPPRESSED if hidden else value
               for value, hidden in zip(text[col].to_list(), mask[col], strict=True)]
         for col in text.columns},
        schema={col: pl.String for col in text.columns},
    )


def publication_tables(tables: Mapping[str, pl.DataFrame],
                       threshold: int) -> dict[str, pl.DataFrame]:
    """Every restricted table with small-number suppression applied (same names and columns).

    Within-table suppression first; then the linked sets of ``registry.LINKED_SETS`` are
    protected together by ``tasks.analysis.linked.protect_linked``.
    """
    masks: Masks = {name: suppression_mask(TABLES_BY_NAME[name], df, threshold)
                    for name, df in tables.items()}
    masks, _ = protect_linked(tables, masks, threshold)
    return {name: publication_table(TABLES_BY_NAME[name], df, threshold, masks[name])
            for name, df in tables.items()}


def disclosure_audit(tables: Mapping[str, pl.DataFrame],
                     publication: Mapping[str, pl.DataFrame], threshold: int) -> dict[str, Any]:
    """The audit of the tables as published ("c" read back), for the manifest.

    Per linked set: its tables, quantities checked, disclosed quantities (none when it passes)
    and the counts hidden beyond within-table suppression (cross-table protection).
    """
    masks: Masks = {name: {col: [v == SUPPRESSED for v in df[col].to_list()]
                           for col in df.columns} for name, df in publication.items()}
    sets = []
    for model in set_counts(tables):
        result = audit_set(model, masks, threshold).as_dict()
        own = {t: suppression_mask(TABLES_BY_NAME[t], tables[t], threshold)
               for t in result["tables"]}
        result["cells_added"] = [f"{c.table}.{c.column}[{c.row}]" for c in model.counts
                                 if masks[c.table][c.column][c.row]
                                 and not own[c.table][c.column][c.row]]
        sets.append(result)
    return {"threshold": threshold, "method": "linear programme per quantity (scipy HiGHS)",
            "sets": sets, "pass": all(s["pass"] for s in sets)}

