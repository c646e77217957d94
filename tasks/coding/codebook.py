"""The study codebook (``qualitative.codebook``): a CSV of theme, subtheme, research_question, description.

Each row is a code: a theme (``subtheme`` empty) or one of its subthemes. ``qual_codes`` holds
one theme row (subtheme ``''``) per theme plus a row per subtheme, each with a GUID that is
stable for the cluster (uuid5), so a re-export gives the QDA tool the same codes.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from tasks.core.errors import ConfigError, InputRejected

RESEARCH_QUESTIONS = ("1a", "1b", "1c", "2a", "2b", "2c")
COLUMNS = ("theme", "subtheme", "research_question", "description")
MAX_NAME = 200
CODEBOOK, CODING = "codebook", "coding"  # qual_codes.origin
#: Namespace of every GUID this project writes into a REFI-QDA project.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cluster-eval:refi-qda")


@dataclass(frozen=True)
class CodeRow:
    """One code of the codebook: a theme (subtheme ``''``) or a subtheme of it."""

    theme: str
    subtheme: str
    research_question: str | None
    description: str | None
    origin: str = CODEBOOK


def stable_guid(cluster: str, *parts: str) -> str:
    """A GUID that is the same for the same cluster and parts (uuid5), lower-case with dashes."""
    return str(uuid.uuid5(GUID_NAMESPACE, "\x1f".join((cluster, *parts))))


def code_guid(cluster: str, theme: str, subtheme: str) -> str:
    """The GUID of a code of this cluster (theme, subtheme ``''`` for the theme itself)."""
    return stable_guid(cluster, "code", theme, subtheme)


def codebook_path(path: Path | None) -> Path:
    """The configured codebook, or a one-line ConfigError telling the user to set it."""
    if path is None:
        raise ConfigError("no codebook is set: set qualitative.codebook in cluster-eval.toml "
                          "(or CLUSTER_EVAL_QUALITATIVE__CODEBOOK) to the study codebook CSV "
                          "(theme, subtheme, research_question, description)")
    return path


def load_codebook(path: Path) -> list[CodeRow]:
    """Read and validate the codebook CSV; every theme gets a theme row (subtheme ``''``) first.

    A bad row rejects the codebook with one line naming the row (the spreadsheet row: the
    header is row 1) and the column.
    """
    name = path.name
    try:
        data = path.read_bytes()
    except OSError:
        raise ConfigError(f"the codebook {path} cannot be read; check qualitative.codebook") from None
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputRejected("the codebook is not UTF-8 text; save it as CSV UTF-8", file=name) from None
    reader = csv.reader(io.StringIO(body, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    for column in COLUMNS:
        if column not in header:
            raise InputRejected("the codebook has no column of this name", file=name, column=column)
    index = {column: header.index(column) for column in COLUMNS}
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        values = {c: (" ".join(cells[i].split()) if i < len(cells) else "") for c, i in index.items()}
        rows.append((number, values))
    return _codebook_rows(rows, name)


def _codebook_rows(rows: Sequence[tuple[int, dict[str, str]]], name: str) -> list[CodeRow]:
    """Validated rows in file order, each theme's own row first (inheriting the first RQ given)."""
    seen: dict[tuple[str, str], int] = {}
    theme_rq: dict[str, str] = {}
    parsed: list[tuple[int, dict[str, str]]] = []
    for number, values in rows:
        _check_row(number, values, name)
        key = (values["theme"].casefold(), values["subtheme"].casefold())
        if key in seen:
            raise InputRejected(f"the same theme and subtheme are already on row {seen[key]}",
                                file=name, row_key=str(number), column="subtheme")
        seen[key] = number
        if values["research_question"]:
            theme_rq.setdefault(values["theme"], values["research_question"])
        parsed.append((number, values))
    if not parsed:
        raise InputRejected("the codebook has no codes; add a row per theme and subtheme", file=name)
    for number, values in parsed:
        if values["theme"] not in theme_rq:
            raise InputRejected("no row of this theme gives its research question (1a 1b 1c 2a 2b 2c)",
                                file=name, row_key=str(number), column="research_question")
    codes: dict[tuple[str, str], CodeRow] = {}
    for _, values in parsed:
        theme, subtheme, description = values["theme"], values["subtheme"], values["description"] or None
        codes.setdefault((theme, ""), CodeRow(theme, "", theme_rq[theme], None))
        if subtheme:
            codes[(theme, subtheme)] = CodeRow(theme, subtheme, values["research_question"] or theme_rq[theme],
                                               description)
        else:  # the theme's own row: its research question and description
            codes[(theme, "")] = CodeRow(theme, "", values["research_question"] or theme_rq[theme], description)
    return _theme_order(list(codes.values()))


def _check_row(number: int, values: dict[str, str], name: str) -> None:
    """One row's rules: theme required, names not too long, a known research question."""
    if not values["theme"]:
        raise InputRejected("a theme is required on every row", file=name, row_key=str(number),
                            column="theme")
    for column in ("theme", "subtheme"):
        if len(values[column]) > MAX_NAME:
            raise InputRejected(f"longer than {MAX_NAME} characters", file=name,
                                row_key=str(number), column=column)
    if values["research_question"] and values["research_question"].lower() not in RESEARCH_QUESTIONS:
        raise InputRejected(f"not one of the research questions {' '.join(RESEARCH_QUESTIONS)}",
                            file=name, row_key=str(number), column="research_question")
    values["research_question"] = values["research_question"].lower()


def _theme_order(codes: list[CodeRow]) -> list[CodeRow]:
    """Themes in first-seen order, each theme row followed by its subthemes in file order."""
    themes = list(dict.fromkeys(c.theme for c in codes))
    return [c for theme in themes for c in codes if c.theme == theme]


def store_codebook(conn: Connection, cluster: str, rows: Iterable[CodeRow]) -> int:
    """Replace the cluster's codebook codes with these (codes added while coding stay); count stored."""
    rows = list(rows)
    conn.execute(text("DELETE FROM qual_codes WHERE cluster_id = :c AND origin = :o"),
                 {"c": cluster, "o": CODEBOOK})
    # A code the codebook now holds is no longer one added while coding.
    conn.execute(text("DELETE FROM qual_codes WHERE cluster_id = :c AND theme = :t AND subtheme = :s"),
                 [{"c": cluster, "t": r.theme, "s": r.subtheme} for r in rows])
    insert_codes(conn, cluster, rows)
    return len(rows)


def insert_codes(conn: Connection, cluster: str, rows: Sequence[CodeRow]) -> None:
    """Insert codes (none may exist yet) with their stable GUIDs."""
    if not rows:
        return
    conn.execute(text(
        "INSERT INTO qual_codes (cluster_id, theme, subtheme, research_question, description, origin, guid)"
        " VALUES (:c, :theme, :subtheme, :rq, :description, :origin, :guid)"),
        [{"c": cluster, "theme": r.theme, "subtheme": r.subtheme, "rq": r.research_question,
          "description": r.description, "origin": r.origin,
          "guid": code_guid(cluster, r.theme, r.subtheme)} for r in rows])


def stored_codes(conn: Connection, cluster: str) -> list[CodeRow]:
    """The cluster's codes: codebook first, then codes added while coding (by theme, subtheme)."""
    result = conn.execute(text(
        "SELECT theme, subtheme, research_question, description, origin FROM qual_codes"
        " WHERE cluster_id = :c ORDER BY theme, subtheme"), {"c": cluster})
    return [CodeRow(r.theme, r.subtheme, r.research_question, r.description, r.origin) for r in result]
