"""Disclosure control across linked tables: one latent cross-tab per set, audited by linear programs.

Tables that share a population (``tasks.analysis.registry.LINKED_SETS``) are all sums over one
latent, never published cross-classification (closed episodes by closure outcome x onward
referral; issued households by wave x stratum x route x response status). Every published count
of the set is a linear equality on the latent cells (non-negative); a suppressed count is free.

The audit asks, for every *quantity* - each suppressed count of the set and each latent cell -
the interval [lo, hi] it can take given every published count of the set (two linear programs,
scipy's HiGHS: minimise and maximise; the LP bounds are rounded inwards to integers, which is
still a superset of the integer interval). A quantity is **disclosed** when the interval could
hold a small positive number and is narrow: ``hi >= 1`` and ``lo <= threshold`` and
``hi - lo <= threshold``. So a suppressed count of 1..threshold is always protected by an
interval wider than the threshold, a cell is never shown to be a small non-zero number, and a
latent cell (an overlap or a non-respondent count falling out by subtraction) is never pinned
down. A quantity pinned at 0 is not a disclosure (zeros are published anyway).

Protection: while the audit finds a disclosed quantity, one more published count is hidden: in
the relation that pins it (the published equations with a non-zero dual value in its LPs;
failing that, the counts sharing a latent cell with it), cells of a table
that only restates others first, then non-zero before zero, smallest value, then set order.
"0 of c" (a subset count published as 0 while its whole is hidden) hides the 0 too. If a
restating table cannot be protected without hiding cells of the other tables, it is withheld
(every count "c") and the set is protected again without it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import linprog

from tasks.analysis.registry import ALL, LINKED_SETS, TABLES_BY_NAME, Box, LinkedCounts, LinkedSet

__all__ = ["SetAudit", "audit_set", "bounds", "linked_columns", "protect_linked", "set_counts"]

#: Column masks of every table: table -> column -> hidden per row.
Masks = dict[str, dict[str, list[bool]]]


@dataclass(frozen=True)
class Count:
    """One count of a linked set: where it is, its value, the latent cells it sums."""

    table: str
    column: str
    row: int
    value: int
    cells: frozenset[int]
    part_of: str | None


@dataclass(frozen=True)
class Model:
    """A linked set on concrete tables: its latent cells and its counts."""

    name: str
    latent: tuple[tuple[str, ...], ...]
    counts: tuple[Count, ...]
    restates: tuple[str, ...]


@dataclass(frozen=True)
class SetAudit:
    """Result of auditing one set: quantities checked, those disclosed, cells hidden, withheld."""

    name: str
    tables: tuple[str, ...]
    checked: int
    disclosed: tuple[str, ...]
    added: tuple[tuple[str, str, int], ...] = ()
    withheld: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether no quantity is disclosed."""
        return not self.disclosed

    def as_dict(self) -> dict[str, Any]:
        """The manifest entry (no figures, only where)."""
        return {"set": self.name, "tables": list(self.tables), "quantities_checked": self.checked,
                "cells_added": [f"{t}.{c}[{r}]" for t, c, r in self.added],
                "withheld": list(self.withheld), "disclosed": list(self.disclosed),
                "pass": self.passed}


# --- the model ----------------------------------------------------------------------------


def _rows(spec: LinkedCounts, df: pl.DataFrame) -> list[int]:
    """Row indexes of the table that this count spec covers."""
    if spec.where is None:
        return list(range(df.height))
    col, value = spec.where
    return [i for i, v in enumerate(df[col].to_list()) if v == value]


def _row_boxes(spec: LinkedCounts, df: pl.DataFrame, row: int) -> tuple[Box, ...]:
    """The union of latent boxes one row of a count column sums over."""
    if spec.by is not None:
        key = str(df[spec.by][row])
        if key not in spec.derived:
            raise ValueError(f"linked set: {spec.table}.{spec.by} value {key!r} has no latent box")
        return spec.derived[key]
    box = dict(spec.fixed)
    for col, dim in spec.keys.items():
        value = df[col][row]
        if value != ALL:
            box[dim] = (str(value),)
    return (box,)


def _categories(linked: LinkedSet, tables: Mapping[str, pl.DataFrame]) -> dict[str, list[str]]:
    """Every latent dimension's categories: declared, then those seen in key columns.

    Only dimensions some present count refers to: the others add nothing to any relation.
    """
    present = [s for s in linked.counts if s.table in tables]
    used = {d for s in present for d in (*s.keys.values(), *s.fixed)}
    used |= {d for s in present for boxes in s.derived.values() for box in boxes for d in box}
    cats = {dim: list(values) for dim, values in linked.dims.items() if dim in used}
    for spec in present:
        df = tables[spec.table]
        for col, dim in spec.keys.items():
            for i in _rows(spec, df):
                value = df[col][i]
                if value != ALL and str(value) not in cats[dim]:
                    cats[dim].append(str(value))
    return cats


def build_model(linked: LinkedSet, tables: Mapping[str, pl.DataFrame]) -> Model:
    """The set's latent cells and counts on these tables."""
    cats = _categories(linked, tables)
    dims = list(cats)
    impossible = [box for box in linked.impossible if set(box) <= set(dims)]
    latent = tuple(cell for cell in itertools.product(*(cats[d] for d in dims)) if not any(
        all(cell[dims.index(d)] in allowed for d, allowed in box.items()) for box in impossible))
    counts: list[Count] = []
    for spec in linked.counts:
        if spec.table not in tables:
            continue
        df = tables[spec.table]
        values = df[spec.column].to_list()
        for row in _rows(spec, df):
            boxes = _row_boxes(spec, df, row)
            cells = frozenset(k for k, cell in enumerate(latent) if any(
                all(cell[dims.index(d)] in allowed for d, allowed in box.items()) for box in boxes))
            counts.append(Count(spec.table, spec.column, row, int(values[row]), cells,
                                spec.part_of))
    return Model(linked.name, latent, tuple(counts), linked.restates)


# --- the audit ----------------------------------------------------------------------------


def _hidden(masks: Masks, count: Count) -> bool:
    return masks[count.table][count.column][count.row]


@dataclass(frozen=True)
class Bounds:
    """[lo, hi] of a quantity and the published counts whose equations bind either bound."""

    lo: float
    hi: float
    binding: frozenset[int] = frozenset()


def bounds(model: Model, published: Sequence[Count], cells: frozenset[int]) -> Bounds:
    """[lo, hi] of the sum of ``cells`` given the published counts (LP bounds rounded inwards).

    ``binding``: indexes into ``published`` of the equations with a non-zero dual value at
    either optimum - the relation that pins the quantity.
    """
    n = len(model.latent)
    a_eq = np.zeros((len(published), n))
    for i, count in enumerate(published):
        a_eq[i, sorted(count.cells)] = 1.0
    b_eq = np.array([c.value for c in published], dtype=float)
    objective = np.zeros(n)
    objective[sorted(cells)] = 1.0
    ends: list[float] = []
    binding: set[int] = set()
    for sign in (1.0, -1.0):
        result = linprog(sign * objective, A_eq=a_eq if len(published) else None,
                         b_eq=b_eq if len(published) else None, bounds=(0, None), method="highs")
        if result.status == 3:  # unbounded (only the maximum can be)
            ends.append(math.inf)
        elif result.status != 0:
            raise RuntimeError(f"linked set {model.name}: LP failed ({result.message})")
        else:
            ends.append(sign * float(result.fun))
            if len(published):
                duals = np.asarray(result.eqlin.marginals)
                binding |= {int(i) for i in np.flatnonzero(np.abs(duals) > 1e-9)}
    lo, hi = math.ceil(ends[0] - 1e-6), ends[1] if math.isinf(ends[1]) else math.floor(ends[1] + 1e-6)
    return Bounds(lo, hi, frozenset(binding))


def interval(model: Model, published: Sequence[Count], cells: frozenset[int]) -> tuple[float, float]:
    """[lo, hi] of the sum of ``cells`` given the published counts (LP bounds rounded inwards)."""
    found = bounds(model, published, cells)
    return found.lo, found.hi


def disclosed(lo: float, hi: float, threshold: int) -> bool:
    """Could be a small positive number and is pinned to within the threshold."""
    return hi >= 1 and lo <= threshold and hi - lo <= threshold


def _quantities(model: Model, masks: Masks) -> list[tuple[str, frozenset[int]]]:
    """Suppressed counts first (set order), then every latent cell."""
    out = [(f"{c.table}.{c.column}[{c.row}]", c.cells) for c in model.counts if _hidden(masks, c)]
    out += [("latent(" + ",".join(cell) + ")", frozenset({k}))
            for k, cell in enumerate(model.latent)]
    return out


@dataclass(frozen=True)
class Disclosure:
    """A disclosed quantity: its name, latent cells and the published counts that pin it."""

    name: str
    cells: frozenset[int]
    relation: tuple[Count, ...]


def first_disclosure(model: Model, masks: Masks, threshold: int) -> tuple[int, Disclosure | None]:
    """How many quantities were checked and the first disclosed one (None if none)."""
    published = [c for c in model.counts if not _hidden(masks, c)]
    checked = 0
    for name, cells in _quantities(model, masks):
        checked += 1
        if not cells:
            continue
        found = bounds(model, published, cells)
        if disclosed(found.lo, found.hi, threshold):
            return checked, Disclosure(name, cells,
                                       tuple(published[i] for i in sorted(found.binding)))
    return checked, None


def audit_set(model: Model, masks: Masks, threshold: int) -> SetAudit:
    """Every disclosed quantity of the set under these masks (no changes), "0 of c" included."""
    published = [c for c in model.counts if not _hidden(masks, c)]
    bad = [name for name, cells in _quantities(model, masks)
           if cells and disclosed(*interval(model, published, cells), threshold)]
    bad += [f"0 of c: {c.table}.{c.column}[{c.row}]" for c in published
            if c.part_of and c.value == 0 and masks[c.table][c.part_of][c.row]]
    tables = tuple(dict.fromkeys(c.table for c in model.counts))
    return SetAudit(model.name, tables, len(_quantities(model, masks)), tuple(bad))


# --- protection ---------------------------------------------------------------------------


def linked_columns(table: str, column: str) -> tuple[str, ...]:
    """The count column and the columns its table's rules hide with it (percent, rate)."""
    out = [column]
    info = TABLES_BY_NAME.get(table)
    for rule in info.rules if info else ():
        if getattr(rule, "column", None) == column:
            out += [c for c in getattr(rule, "linked", ()) if c not in out]
    return tuple(out)


def _hide(masks: Masks, count: Count) -> None:
    for col in linked_columns(count.table, count.column):
        masks[count.table][col][count.row] = True


def _zero_of_c(model: Model, masks: Masks) -> list[Count]:
    """Hide a subset count published as 0 whose whole is hidden; the counts hidden."""
    added = []
    for count in model.counts:
        if count.part_of and count.value == 0 and not _hidden(masks, count) \
                and masks[count.table][count.part_of][count.row]:
            _hide(masks, count)
            added.append(count)
    return added


def _pick(model: Model, masks: Masks, found: Disclosure) -> Count | None:
    """The published count to hide next: from the relation that pins ``found`` (LP duals),
    else from the counts sharing a latent cell with it, else any published count."""
    published = [(k, c) for k, c in enumerate(model.counts) if not _hidden(masks, c)]
    related = ([(k, c) for k, c in published if c in found.relation]
               or [(k, c) for k, c in published if c.cells & found.cells] or published)
    if not related:
        return None
    return min(related, key=lambda kc: (kc[1].table not in model.restates, kc[1].value == 0,
                                        kc[1].value, kc[0]))[1]


def _protect(model: Model, masks: Masks, threshold: int) -> tuple[list[Count], int, bool]:
    """Hide counts until the audit passes; the counts hidden, quantities checked, passed."""
    added = _zero_of_c(model, masks)
    checked = 0
    while True:
        n, found = first_disclosure(model, masks, threshold)
        checked += n
        if found is None:
            return added, checked, True
        pick = _pick(model, masks, found)
        if pick is None:
            return added, checked, False
        _hide(masks, pick)
        added += [pick, *_zero_of_c(model, masks)]


def _withhold(model: Model, masks: Masks) -> None:
    for count in model.counts:
        if count.table in model.restates:
            _hide(masks, count)


def _copy(masks: Masks) -> Masks:
    return {t: {c: list(m) for c, m in cols.items()} for t, cols in masks.items()}


def protect_set(model: Model, masks: Masks, threshold: int) -> tuple[Masks, SetAudit]:
    """The masks with the set protected, and what was done."""
    trial = _copy(masks)
    added, checked, passed = _protect(model, trial, threshold)
    withheld: tuple[str, ...] = ()
    if model.restates and (not passed or any(c.table not in model.restates for c in added)):
        trial = _copy(masks)
        _withhold(model, trial)
        withheld = model.restates
        added, checked, passed = _protect(model, trial, threshold)
    if not withheld:  # a restating table left with every count hidden is withheld in effect
        withheld = tuple(t for t in model.restates if all(
            _hidden(trial, c) for c in model.counts if c.table == t))
    final = audit_set(model, trial, threshold)
    return trial, SetAudit(model.name, final.tables, checked + final.checked, final.disclosed,
                           tuple((c.table, c.column, c.row) for c in added), withheld)


def set_counts(tables: Mapping[str, pl.DataFrame]) -> list[Model]:
    """The model of every linked set with at least two of its tables present (on those)."""
    models = [build_model(s, tables) for s in LINKED_SETS
              if len({spec.table for spec in s.counts} & set(tables)) >= 2
              or {spec.table for spec in s.counts} <= set(tables)]
    return [m for m in models if m.counts]


def protect_linked(tables: Mapping[str, pl.DataFrame], masks: Masks, threshold: int
                   ) -> tuple[Masks, list[SetAudit]]:
    """Every linked set protected in turn.

    Sets may share a population total (``population.episodes``, ``closed_episodes``); hiding
    more only widens intervals, so a set protected earlier stays protected. Not modelled: a
    shared total hidden in one set but derivable in another (totals are large and hidden last).
    """
    audits = []
    for model in set_counts(tables):
        masks, result = protect_set(model, masks, threshold)
        audits.append(result)
    return masks, audits
