"""Tests for tasks.analysis.disclosure: one-way and two-way small-number suppression.

The key property: nothing in 1..threshold is published, and no suppressed entry (cell or
total) can be worked out from what is published. "Cannot be worked out" is checked here
independently of the module by exhibiting, for every suppressed entry, a *witness*: another
table of non-negative integers that agrees with every published cell and total and satisfies
every row/column sum, yet differs in that entry. The witness search enumerates the
suppressed interior cells over [v - 1, v + 1]; if an entry can change at all it can change
along a single +-1 cycle, so this box contains a witness whenever one exists, and a witness
that is found is a proof on its own.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.analysis.disclosure import (
    TwoWaySuppression,
    suppress_one_way,
    suppress_two_way,
)
from tasks.analysis.publication import publication_table
from tasks.analysis.registry import OneWay, TableInfo

# --- helpers (independent of the module) ---------------------------------------------------


def extended(matrix: list[list[int]]) -> np.ndarray:
    """Cells plus row totals (last column), column totals (last row) and grand total."""
    cells = np.array(matrix, dtype=np.int64)
    r, c = cells.shape
    table = np.zeros((r + 1, c + 1), dtype=np.int64)
    table[:r, :c] = cells
    table[:r, c] = cells.sum(axis=1)
    table[r, :c] = cells.sum(axis=0)
    table[r, c] = cells.sum()
    return table


def extended_mask(result: TwoWaySuppression) -> np.ndarray:
    """The suppression pattern laid out like :func:`extended`."""
    r, c = len(result.cells), len(result.cells[0])
    mask = np.zeros((r + 1, c + 1), dtype=bool)
    mask[:r, :c] = np.array(result.cells, dtype=bool)
    mask[:r, c] = result.row_totals
    mask[r, :c] = result.col_totals
    mask[r, c] = result.grand_total
    return mask


def movable_entries(table: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Entries that differ in at least one witness table (see the module docstring)."""
    r, c = table.shape[0] - 1, table.shape[1] - 1
    unknown = [(i, j) for i in range(r) for j in range(c) if mask[i, j]]
    ranges = [range(max(0, table[i, j] - 1), table[i, j] + 2) for i, j in unknown]
    combos = np.array(list(itertools.product(*ranges)), dtype=np.int64)
    combos = combos.reshape(len(combos), len(unknown))
    cells = np.broadcast_to(table[:r, :c], (len(combos), r, c)).copy()
    for k, (i, j) in enumerate(unknown):
        cells[:, i, j] = combos[:, k]
    full = np.zeros((len(combos), r + 1, c + 1), dtype=np.int64)
    full[:, :r, :c] = cells
    full[:, :r, c] = cells.sum(axis=2)
    full[:, r, :c] = cells.sum(axis=1)
    full[:, r, c] = cells.sum(axis=(1, 2))
    published = ~mask
    consistent = np.all(full[:, published] == table[published], axis=1)
    return np.any(full[consistent] != table, axis=0)


def line_counts(mask: np.ndarray) -> list[int]:
    """Number of suppressed entries on every row and column of the extended table."""
    return [int(n) for n in mask.sum(axis=1)] + [int(n) for n in mask.sum(axis=0)]


def small(threshold: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, threshold + 1), st.integers(0, 30))


@st.composite
def cross_tab(draw: st.DrawFn, max_side: int = 5) -> tuple[list[list[int]], int]:
    threshold = draw(st.integers(3, 5))
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    values = small(threshold)
    matrix = [[draw(values) for _ in range(cols)] for _ in range(rows)]
    return matrix, threshold


# --- one-way -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "kwargs", "expected"),
    [
        ([10, 3, 20], {}, [True, True, False]),  # secondary: the smallest other cell
        ([0, 3, 2, 40], {}, [False, True, True, False]),  # two primaries: done
        ([0, 3, 40], {}, [False, True, True]),  # a zero is not used as secondary
        ([3, 10, 10], {}, [True, True, False]),  # tie -> first
        ([3, 0, 0], {}, [True, True, True]),  # total 3 is small: everything hidden
        ([0, 0, 4], {}, [True, True, True]),
        ([3, 0, 9], {}, [True, False, True]),
        ([10, 3, 20], {"total_published": False}, [False, True, False]),
        ([10, 3, 20], {"threshold": 2}, [False, False, False]),
        ([0, 0], {}, [False, False]),
        ([], {}, []),
        ([7], {}, [False]),
    ],
)
def test_one_way_examples(counts: list[int], kwargs: dict, expected: list[bool]) -> None:
    assert suppress_one_way(counts, **kwargs) == expected


def test_one_way_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        suppress_one_way([1, -1])
    with pytest.raises(ValueError):
        suppress_one_way([1.5])  # type: ignore[list-item]


@given(st.integers(3, 5).flatmap(lambda t: st.tuples(st.lists(small(t), max_size=8), st.just(t))))
def test_one_way_properties(case: tuple[list[int], int]) -> None:
    counts, threshold = case
    mask = suppress_one_way(counts, threshold=threshold)
    total = sum(counts)
    shown = [v for v, hidden in zip(counts, mask, strict=True) if not hidden]
    assert all(not 1 <= v <= threshold for v in shown)
    if 1 <= total <= threshold:
        assert all(mask)
        return
    hidden = [i for i, h in enumerate(mask) if h]
    assert len(hidden) != 1  # with a published total one hidden cell is a subtraction away
    for i in hidden:
        # witness: move one unit between i and another hidden cell
        assert any(counts[i] >= 1 or counts[j] >= 1 for j in hidden if j != i)
    # secondary suppression only when needed
    primary = sum(1 <= v <= threshold for v in counts)
    assert len(hidden) == (primary + 1 if primary == 1 else primary)


# --- two-way -------------------------------------------------------------------------------


def test_two_way_hand_example() -> None:
    # 3 is primary; the line rule then hides 10 (row 0), 20 (column 0), 30 (column 1)
    result = suppress_two_way([[10, 3], [20, 30]])
    assert result == TwoWaySuppression(
        cells=[[True, True], [True, True]],
        row_totals=[False, False],
        col_totals=[False, False],
        grand_total=False,
    )


def test_two_way_nothing_small() -> None:
    result = suppress_two_way([[10, 0, 12], [6, 20, 0]])
    assert not any(extended_mask(result).ravel())


def test_two_way_small_margin_is_suppressed_with_partner() -> None:
    # row 0 total is 4 (primary); it needs a partner in its column of totals and the 2 and
    # 2 in row 0 are primary anyway
    result = suppress_two_way([[2, 2], [10, 10]], threshold=5)
    mask = extended_mask(result)
    assert mask[0].tolist() == [True, True, True]
    assert all(n != 1 for n in line_counts(mask))
    assert movable_entries(extended([[2, 2], [10, 10]]), mask)[mask].all()


def test_two_way_tiny_grand_total() -> None:
    result = suppress_two_way([[0, 3], [0, 0]])
    assert result.grand_total and result.row_totals[0] and result.col_totals[1]
    assert result.cells == [[False, True], [False, False]]


def test_two_way_single_column_and_row() -> None:
    column = suppress_two_way([[3], [10], [20]])
    mask = extended_mask(column)
    assert mask[0].all()  # the 3 and its row total (also 3)
    assert all(n != 1 for n in line_counts(mask))
    row = suppress_two_way([[3, 10, 20]])
    assert row.cells == [[True, True, False]]
    assert row.col_totals == [True, True, False]


def test_exact_audit_catches_what_the_line_rule_misses() -> None:
    # After primary suppression and the line rule alone, every line has 0 or >= 2 hidden
    # entries, yet cell (0, 2) = 3 can be worked out: the hidden entries form no cycle through
    # it. The exact audit hides one more entry (the column 1 total, 12) so that it can move.
    matrix = [[0, 1, 3], [23, 0, 3], [0, 11, 0]]
    table = extended(matrix)
    line_rule_only = np.array(
        [
            [0, 1, 1, 1],
            [1, 0, 1, 0],
            [0, 1, 0, 1],
            [1, 0, 1, 0],
        ],
        dtype=bool,
    )
    assert all(n != 1 for n in line_counts(line_rule_only))
    assert not movable_entries(table, line_rule_only)[0, 2]  # derivable
    mask = extended_mask(suppress_two_way(matrix, threshold=4))
    assert (mask & ~line_rule_only).tolist() == [
        [False] * 4,
        [False] * 4,
        [False] * 4,
        [False, True, False, False],
    ]
    assert (mask >= line_rule_only).all()
    assert movable_entries(table, mask)[mask].all()


def test_two_way_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        suppress_two_way([])
    with pytest.raises(ValueError):
        suppress_two_way([[1, 2], [3]])
    with pytest.raises(ValueError):
        suppress_two_way([[1, -2]])


def check_two_way(matrix: list[list[int]], threshold: int, exact_limit: int) -> None:
    table = extended(matrix)
    mask = extended_mask(suppress_two_way(matrix, threshold=threshold))
    # (a) nothing published is in 1..threshold
    published = table[~mask]
    assert not np.any((published >= 1) & (published <= threshold))
    # nothing is hidden when nothing is small
    if not np.any((table >= 1) & (table <= threshold)):
        assert not mask.any()
    # (b1) every line of the extended table has 0 or >= 2 suppressed entries
    assert all(n != 1 for n in line_counts(mask))
    # (b2) exact: every suppressed entry has a witness table in which it differs
    hidden_cells = int(mask[:-1, :-1].sum())
    if hidden_cells <= exact_limit:
        movable = movable_entries(table, mask)
        stuck = [tuple(map(int, e)) for e in np.argwhere(mask & ~movable)]
        assert not stuck, f"derivable suppressed entries {stuck}"


@settings(max_examples=400, deadline=None)
@given(cross_tab(max_side=3))
def test_two_way_up_to_3x3_exact(case: tuple[list[list[int]], int]) -> None:
    matrix, threshold = case
    check_two_way(matrix, threshold, exact_limit=9)


@settings(max_examples=250, deadline=None)
@given(cross_tab(max_side=5))
def test_two_way_up_to_5x5(case: tuple[list[list[int]], int]) -> None:
    matrix, threshold = case
    check_two_way(matrix, threshold, exact_limit=10)


@settings(max_examples=100, deadline=None)
@given(cross_tab(max_side=5))
def test_two_way_deterministic(case: tuple[list[list[int]], int]) -> None:
    matrix, threshold = case
    assert suppress_two_way(matrix, threshold=threshold) == suppress_two_way(
        [list(row) for row in matrix], threshold=threshold
    )


# --- one-way tables as the pipeline publishes them (tasks.analysis.publication) ----------------


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "group": ["x", "y", "z"],
            "n": [10, 3, 20],
            "percent": [30.3, 9.1, 60.6],
        }
    )


def one_way(df: pl.DataFrame, rule: OneWay) -> TableInfo:
    """A table of the registry's kind holding ``df``, suppressed by one one-way rule."""
    return TableInfo("t", "t", "test", "t", "t", tuple(df.columns), {"percent": 1}, (rule,))


def test_publication_one_way_counts_and_percent() -> None:
    original = frame()
    out = publication_table(one_way(original, OneWay("n", ("percent",))), original, threshold=5)
    assert out.schema["n"] == pl.Utf8 and out.schema["percent"] == pl.Utf8
    assert out["n"].to_list() == ["c", "c", "20"]
    assert out["percent"].to_list() == ["c", "c", "61"]  # base 33 < 100: whole percent (issue 10)
    assert out["group"].to_list() == ["x", "y", "z"]
    assert original.equals(frame())  # input untouched


def test_publication_one_way_total_row() -> None:
    df = pl.DataFrame(
        {
            "group": ["x", "y", "z", "Total"],
            "n": [10, 3, 20, 33],
            "percent": [30.3, 9.1, 60.6, 100.0],
        }
    )
    rule = OneWay("n", ("percent",), total=("group", "Total"))
    out = publication_table(one_way(df, rule), df, threshold=5)
    assert out["n"].to_list() == ["c", "c", "20", "33"]
    assert out["percent"].to_list() == ["c", "c", "61", "100"]  # base 33: whole (issue 10)
    bad = df.with_columns(pl.Series("n", [10, 3, 20, 34]))
    with pytest.raises(ValueError, match="total row"):
        publication_table(one_way(bad, rule), bad, threshold=5)
    tiny = pl.DataFrame({"n": [0, 2, 2], "percent": [0.0, 100.0, None]})
    # the total is the row of index 1, the first whose n is 2
    out = publication_table(one_way(tiny, OneWay("n", ("percent",), total=("n", 2))), tiny, threshold=5)
    assert out["n"].to_list() == ["c", "c", "c"]
    assert out["percent"].to_list() == ["c", "c", "c"]


def test_publication_one_way_columns_checked() -> None:
    df = frame().drop("percent")
    with pytest.raises(ValueError, match="linked"):
        publication_table(one_way(df, OneWay("n", ("percent",))), df, threshold=5)
    out = publication_table(one_way(df, OneWay("n")), df, threshold=5)
    assert out["n"].to_list() == ["c", "c", "20"]
    with pytest.raises(ValueError, match="count column"):
        publication_table(one_way(df, OneWay("count")), df, threshold=5)
    with pytest.raises(ValueError, match="null"):
        nulls = pl.DataFrame({"n": [1, None]})
        publication_table(one_way(nulls, OneWay("n")), nulls, threshold=5)
    with pytest.raises(ValueError, match="integer"):
        floats = pl.DataFrame({"n": [1.0, 2.0]})
        publication_table(one_way(floats, OneWay("n")), floats, threshold=5)
