"""Small-number suppression for published tables (DfE convention: suppressed shown as "c").

Pure functions, no Prefect and no I/O; ``tasks.analysis.publication`` applies them to tables.

Primary suppression hides every count from 1 to ``threshold`` (0 is published). Secondary
suppression then hides further entries so that no hidden value can be worked out from the
published ones. For a cross-tab the check is exact, not just a rule of thumb: the table
with its margins is a network flow (grand total -> row totals -> cells -> column totals ->
grand total), and a hidden entry can be worked out exactly when no cycle of hidden entries
lets it move by one unit while every entry stays a non-negative integer and every published
entry keeps its value. See :func:`suppress_two_way`.

These rules see one table at a time; tables that share a population are protected together
afterwards by ``tasks.analysis.linked`` (``registry.LINKED_SETS``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "SUPPRESSED",
    "TwoWaySuppression",
    "suppress_one_way",
    "suppress_two_way",
]

#: The marker shown in place of a suppressed count or percentage.
SUPPRESSED = "c"


def _check_counts(counts: Sequence[int], what: str) -> list[int]:
    """Return the counts as a list, refusing anything but non-negative ints."""
    out: list[int] = []
    for value in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what} must be non-negative integers, got {value!r}")
        out.append(value)
    return out


def _check_threshold(threshold: int) -> int:
    """Return the threshold, refusing anything but a non-negative int."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    return threshold


def suppress_one_way(
    counts: Sequence[int], *, threshold: int = 5, total_published: bool = True
) -> list[bool]:
    """Which cells of a one-way table to suppress (True = show "c").

    1. If the total is published and is itself 1..threshold, every cell is suppressed
       (the caller must hide the total too).
    2. Primary: every count in 1..threshold.
    3. Secondary (total published only): if exactly one cell is suppressed, also suppress
       the smallest other cell, preferring non-zero cells; ties go to the first such cell.
       Two hidden cells with a published total cannot be separated by subtraction.
    """
    values = _check_counts(counts, "counts")
    threshold = _check_threshold(threshold)
    if total_published and 1 <= sum(values) <= threshold:
        return [True] * len(values)
    mask = [1 <= value <= threshold for value in values]
    if total_published and sum(mask) == 1:
        candidates = [i for i, hidden in enumerate(mask) if not hidden]
        pick = min(candidates, key=lambda i: (values[i] == 0, values[i], i))
        mask[pick] = True
    return mask


@dataclass(frozen=True)
class TwoWaySuppression:
    """Suppression pattern of a cross-tab: cells plus its row, column and grand totals."""

    cells: list[list[bool]]
    row_totals: list[bool]
    col_totals: list[bool]
    grand_total: bool


# --- the extended table ------------------------------------------------------------------
# E is (r+1) x (c+1): E[i][j] cells, E[i][c] row totals, E[r][j] column totals, E[r][c] the
# grand total. Line constraints: every row and every column of E sums (over its first
# entries) to its last entry. As a flow network with nodes R_i (rows), C_j (columns), GI and
# GO: cell (i, j) is the arc R_i -> C_j, row total (i, c) is GO -> R_i, column total (r, j)
# is C_j -> GI and the grand total is GI -> GO; conservation at each node is exactly one
# line constraint (R_i: row line i, C_j: column line j, GI: row line r, GO: column line c).

_Entry = tuple[int, int]


def _arc(entry: _Entry, r: int, c: int) -> tuple[str, str]:
    """The (tail, head) nodes of an entry of the extended table."""
    i, j = entry
    if i < r and j < c:
        return f"R{i}", f"C{j}"
    if i < r:
        return "GO", f"R{i}"
    if j < c:
        return f"C{j}", "GI"
    return "GI", "GO"


def _reachable(arcs: list[tuple[str, str, _Entry]], start: str, goal: str, skip: _Entry) -> bool:
    """Whether goal can be reached from start along arcs not belonging to entry ``skip``."""
    seen = {start}
    stack = [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for tail, head, entry in arcs:
            if tail == node and entry != skip and head not in seen:
                seen.add(head)
                stack.append(head)
    return False


def _determined(table: list[list[int]], mask: list[list[bool]]) -> list[_Entry]:
    """Suppressed entries whose value follows from the published entries (exact test).

    Residual graph of the true table: every suppressed entry u->v can go up (arc u->v) and,
    if its value is at least 1, down (arc v->u). A suppressed entry can change iff a cycle
    through one of its own arcs exists in that graph (the difference of two feasible integer
    tables is a sum of such unit cycles).
    """
    r, c = len(table) - 1, len(table[0]) - 1
    hidden = [(i, j) for i in range(r + 1) for j in range(c + 1) if mask[i][j]]
    arcs: list[tuple[str, str, _Entry]] = []
    for entry in hidden:
        tail, head = _arc(entry, r, c)
        arcs.append((tail, head, entry))
        if table[entry[0]][entry[1]] >= 1:
            arcs.append((head, tail, entry))
    out: list[_Entry] = []
    for entry in hidden:
        tail, head = _arc(entry, r, c)
        can_rise = _reachable(arcs, head, tail, entry)
        can_fall = table[entry[0]][entry[1]] >= 1 and _reachable(arcs, tail, head, entry)
        if not (can_rise or can_fall):
            out.append(entry)
    return out


def _is_margin(entry: _Entry, r: int, c: int) -> bool:
    """Whether an entry of the extended table is a total rather than a cell."""
    return entry[0] == r or entry[1] == c


def _close_lines(table: list[list[int]], mask: list[list[bool]]) -> None:
    """Line rule: until no line of the extended table has exactly one suppressed entry.

    Lines are scanned rows first (top to bottom) then columns (left to right); the first
    line with exactly one suppressed entry gets one more, chosen by, in order: non-zero
    before zero, cell before total, an entry whose crossing line already has a suppression
    (so the pattern closes) before one whose crossing line has none, smaller value, then
    position (row, column). Then the scan restarts.
    """
    r, c = len(table) - 1, len(table[0]) - 1
    rows = [[(i, j) for j in range(c + 1)] for i in range(r + 1)]
    cols = [[(i, j) for i in range(r + 1)] for j in range(c + 1)]
    lines = [(line, False) for line in rows] + [(line, True) for line in cols]

    def hidden_in(line: list[_Entry]) -> int:
        return sum(mask[i][j] for i, j in line)

    while True:
        open_line = next(((ln, col) for ln, col in lines if hidden_in(ln) == 1), None)
        if open_line is None:
            return
        line, is_column = open_line

        def key(entry: _Entry, is_column: bool = is_column) -> tuple[bool, bool, bool, int, _Entry]:
            i, j = entry
            crossing = rows[i] if is_column else cols[j]
            value = table[i][j]
            return (value == 0, _is_margin(entry, r, c), hidden_in(crossing) == 0, value, entry)

        pick = min((e for e in line if not mask[e[0]][e[1]]), key=key)
        mask[pick[0]][pick[1]] = True


def _open_cycle(table: list[list[int]], mask: list[list[bool]], entry: _Entry) -> None:
    """Suppress the cheapest set of entries that puts ``entry`` on a cycle (so it can rise).

    Dijkstra from the head of ``entry`` to its tail over all other entries: a suppressed
    entry is free, an unsuppressed one costs (zero?, total?, value + 1) summed
    component-wise and compared lexicographically; an entry may be walked backwards only
    if its value is at least 1. Every entry on the found path is then suppressed. The
    complete graph is strongly connected, so a path always exists.
    """
    r, c = len(table) - 1, len(table[0]) - 1
    start, goal = _arc(entry, r, c)[1], _arc(entry, r, c)[0]
    edges: list[tuple[str, str, _Entry]] = []
    for i in range(r + 1):
        for j in range(c + 1):
            if (i, j) == entry:
                continue
            tail, head = _arc((i, j), r, c)
            edges.append((tail, head, (i, j)))
            if table[i][j] >= 1:
                edges.append((head, tail, (i, j)))

    def cost(e: _Entry) -> tuple[int, int, int]:
        if mask[e[0]][e[1]]:
            return (0, 0, 0)
        value = table[e[0]][e[1]]
        return (int(value == 0), int(_is_margin(e, r, c)), value + 1)

    best: dict[str, tuple[int, int, int]] = {start: (0, 0, 0)}
    via: dict[str, tuple[str, _Entry]] = {}
    queue: list[tuple[tuple[int, int, int], str]] = [((0, 0, 0), start)]
    done: set[str] = set()
    while queue:
        dist, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        if node == goal:
            break
        for tail, head, e in edges:
            if tail != node or head in done:
                continue
            step = cost(e)
            new = (dist[0] + step[0], dist[1] + step[1], dist[2] + step[2])
            if head not in best or new < best[head]:
                best[head] = new
                via[head] = (node, e)
                heapq.heappush(queue, (new, head))
    node = goal
    while node != start:
        node, e = via[node]
        mask[e[0]][e[1]] = True


def suppress_two_way(matrix: Sequence[Sequence[int]], *, threshold: int = 5) -> TwoWaySuppression:
    """Suppression pattern for a cross-tab published with row, column and grand totals.

    Works on the extended (r+1) x (c+1) table of cells plus margins, where each row and
    column "line" sums to its total; margins are entries like any other.

    1. Primary: every entry (cell or total) in 1..threshold.
    2. Line rule, repeated until stable: a line with exactly one suppressed entry gets one
       more (preference: non-zero, a cell rather than a total, an entry whose crossing line
       already has a suppression, the smallest value, then position).
    3. Exact audit: a suppressed entry is "derivable" if it takes the same value in every
       non-negative integer table that agrees with the published entries. For each
       derivable entry the cheapest cycle through it is opened (suppressing the fewest and
       smallest further entries, cells before totals, non-zero before zero); then back to 2.
       Adding suppressions never makes another entry derivable, so this ends.

    Guarantees: no published entry is in 1..threshold; every line has 0 or >= 2 suppressed
    entries; no suppressed entry is uniquely determined by the published ones (it can move
    by at least one unit). It does not guarantee a wide feasible interval, nor a minimal
    (optimal) pattern. Raises ValueError for an empty or ragged matrix or a negative or
    non-integer count.
    """
    threshold = _check_threshold(threshold)
    rows = [_check_counts(row, "matrix") for row in matrix]
    if not rows or not rows[0]:
        raise ValueError("matrix must have at least one row and one column")
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        raise ValueError("matrix rows must all have the same length")
    col_totals = [sum(row[j] for row in rows) for j in range(width)]
    table = [[*row, sum(row)] for row in rows] + [[*col_totals, sum(col_totals)]]
    mask = [[1 <= value <= threshold for value in line] for line in table]

    while True:
        _close_lines(table, mask)
        derivable = _determined(table, mask)
        if not derivable:
            break
        _open_cycle(table, mask, derivable[0])

    r = len(rows)
    return TwoWaySuppression(
        cells=[line[:width] for line in mask[:r]],
        row_totals=[line[width] for line in mask[:r]],
        col_totals=list(mask[r][:width]),
        grand_total=mask[r][width],
    )

