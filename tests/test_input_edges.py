"""Survey input edges (issue 13 items 9-11): submitted_at bounds, tokens never starting with
'-', ``withdraw --token``, mixed line endings in extract CSVs and the survey export."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from test_fieldwork import drawn, households
from test_responses import line, write
from test_sampling import survey_settings

import cli.survey as survey_cli
from cli.main import build_parser
from schemas.codes import TABLES
from tasks.core.errors import UserFacingError
from tasks.core.runtime import Runtime
from tasks.demo.synthetic import generate_tables
from tasks.ingest.reader import normalise_line_endings, read_tables
from tasks.survey import sampling
from tasks.survey.responses import (
    import_responses,
    parse_submitted_at,
    read_export,
    submission_window,
    token_digest,
)

NOW = datetime(2022, 3, 1, 12, 0, tzinfo=UTC)


# --- item 9: submitted_at must lie in the window -------------------------------------------------

def test_out_of_range_years_are_not_real_times() -> None:
    assert parse_submitted_at("0001-01-01T00:00:00+01:00") is None  # before year 1 in UTC
    assert parse_submitted_at("9999-12-31T23:59:00-01:00") is None  # after year 9999 in UTC
    assert parse_submitted_at("9999-01-01T10:00:00") == "9999-01-01T10:00:00+00:00"  # real, but out of the window


def test_window_is_study_start_to_now_or_fieldwork_end_plus_grace(runtime: Runtime) -> None:
    window = submission_window(runtime.settings, NOW)
    assert (window.earliest, window.latest) == ("2021-01-01T00:00:00+00:00", "2022-03-01T12:00:00+00:00")
    ended = survey_settings(runtime.settings, fieldwork_end=date(2022, 1, 31), response_grace_days=7)
    window = submission_window(ended, NOW)
    assert window.latest == "2022-02-07T23:59:59+00:00"  # GMT: UK midnight is UTC midnight
    summer = survey_settings(runtime.settings, fieldwork_end=date(2022, 6, 30), response_grace_days=0)
    assert submission_window(summer, datetime(2022, 9, 1, tzinfo=UTC)).latest == "2022-06-30T22:59:59+00:00"
    # fieldwork still running with its grace: now is the bound
    assert submission_window(summer, NOW).latest == "2022-03-01T12:00:00+00:00"


def test_rows_outside_the_window_are_quarantined_and_never_win(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20, fieldwork_end=date(2022, 2, 20),
                        response_grace_days=3)
    drawn(runtime, s)
    a, b, c, d = sorted(households(runtime.engine, 1))[:4]
    export = write(tmp_path, "export.csv", [
        line(a, "2022-02-01T10:00:00"),            # row 2 kept: the 9999 row below must not win
        line(a, "9999-12-31T10:00:00"),            # row 3 far future
        line(b, "0001-01-01T00:00:00"),            # row 4 year 1
        line(c, "2022-02-23T23:59:00"),            # row 5 last minute of the grace period: kept
        line(d, "24/02/2022 00:30"),               # row 6 after fieldwork end + 3 days
        line(d, "31/12/2020 23:59"),               # row 7 before the study window
    ])
    out = import_responses(runtime.engine, s, export, now=NOW).as_json()
    assert (out["rows"], out["accepted"], out["quarantined"]) == (6, 2, 4)
    assert out["duplicates"] == []
    late = "submitted_at is after the end of fieldwork plus survey.response_grace_days"
    early = "submitted_at is before the start of the study window"
    assert out["quarantine"] == [
        {"row": 3, "column": "submitted_at", "reason": late},
        {"row": 4, "column": "submitted_at", "reason": early},
        {"row": 6, "column": "submitted_at", "reason": late},
        {"row": 7, "column": "submitted_at", "reason": early},
    ]
    with runtime.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT token, submitted_at FROM responses")).all())
        rules = conn.execute(text("SELECT DISTINCT rule FROM quarantined_rows")).scalars().all()
    assert stored == {a: "2022-02-01T10:00:00+00:00", c: "2022-02-23T23:59:00+00:00"}
    assert rules == ["time_window"]


def test_a_future_row_is_quarantined_without_fieldwork_end(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    drawn(runtime, s)
    a, b = sorted(households(runtime.engine, 1))[:2]
    export = write(tmp_path, "export.csv", [line(a, "2022-03-01T12:00:00"),   # exactly now: kept
                                            line(b, "2022-03-01T12:01:00")])  # a minute later
    out = import_responses(runtime.engine, s, export, now=NOW).as_json()
    assert (out["accepted"], out["quarantined"]) == (1, 1)
    assert out["quarantine"] == [{"row": 3, "column": "submitted_at",
                                  "reason": "submitted_at is later than the time of the import"}]


# --- item 10: tokens never start with '-'; withdraw --token ------------------------------------------

def test_new_token_redraws_a_leading_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["-dash1", "-dash2", "good-token"])
    monkeypatch.setattr(sampling.secrets, "token_urlsafe", lambda n: next(draws))
    assert sampling.new_token() == "good-token"


def test_real_tokens_never_start_with_a_dash() -> None:
    tokens = [sampling.new_token() for _ in range(2000)]  # ~31 would start with '-' without the redraw
    assert not any(t.startswith("-") for t in tokens)
    assert all(len(t) == 32 for t in tokens) and len(set(tokens)) == 2000


def _withdraw_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["withdraw", *argv])


@pytest.mark.parametrize("argv", [("abc",), ("--token", "abc"), ("--token=abc",)])
def test_withdraw_takes_the_token_positionally_or_as_option(argv: tuple[str, ...]) -> None:
    assert survey_cli.withdraw_token(_withdraw_args(*argv)) == "abc"


def test_withdraw_token_option_accepts_a_leading_dash() -> None:
    assert survey_cli.withdraw_token(_withdraw_args("--token=-old-token")) == "-old-token"
    assert survey_cli.withdraw_token(_withdraw_args("--", "-old-token")) == "-old-token"


@pytest.mark.parametrize("argv", [(), ("abc", "--token", "def"), ("--token", " ")])
def test_withdraw_needs_exactly_one_token(argv: tuple[str, ...]) -> None:
    with pytest.raises(UserFacingError) as caught:
        survey_cli.withdraw_token(_withdraw_args(*argv))
    assert "\n" not in str(caught.value)
    assert "abc" not in str(caught.value) and "def" not in str(caught.value)  # never echoes a token


def test_withdraw_command_sends_the_digest_of_either_form(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    def fake_flow(**kwargs: Any) -> dict[str, Any]:
        sent.append(kwargs)
        return {"status": "withdrawn"}

    monkeypatch.setattr(survey_cli, "withdraw_flow", fake_flow)
    survey_cli.run_withdraw_command(_withdraw_args("tok-1"))
    survey_cli.run_withdraw_command(_withdraw_args("--token", "tok-1"))
    assert sent == [{"token_sha256": token_digest("tok-1")}] * 2


# --- item 11: mixed line endings ----------------------------------------------------------------------

def test_normalise_line_endings() -> None:
    assert normalise_line_endings("a\r\nb\rc\nd\r\n") == "a\nb\nc\nd\n"


def _mixed(data: bytes) -> bytes:
    """The same CSV with its line breaks cycling CRLF, CR, LF."""
    lines = data.decode("utf-8").split("\n")
    endings = ["\r\n", "\r", "\n"]
    return "".join(part + (endings[i % 3] if i < len(lines) - 1 else "")
                   for i, part in enumerate(lines)).encode("utf-8")


def test_extract_with_mixed_line_endings_reads_as_plain_lf() -> None:
    tables = generate_tables(12, seed=5)
    plain = {f"{t}.csv": tables[t].write_csv().encode() for t in TABLES}
    mixed = {name: _mixed(data) for name, data in plain.items()}
    assert all(b"\r\n" in d and b"\r" in d.replace(b"\r\n", b"") for d in mixed.values())
    expected, got = read_tables(plain, "x.zip"), read_tables(mixed, "x.zip")
    for table in TABLES:
        assert got.frames[table].equals(expected.frames[table]), table
        assert got.rows_read[table] == expected.rows_read[table] > 0


def test_cp1252_extract_with_mixed_line_endings() -> None:
    tables = generate_tables(6, seed=2)
    plain = {f"{t}.csv": tables[t].write_csv().encode() for t in TABLES}
    mixed = {name: _mixed(data).decode("utf-8").encode("cp1252", errors="replace")
             for name, data in plain.items()}
    got = read_tables(mixed, "x.zip")
    assert all(got.rows_read[t] == read_tables(plain, "x.zip").rows_read[t] for t in TABLES)


def test_survey_export_with_mixed_line_endings() -> None:
    header = "token,submitted_at,mode,q1_life_satisfaction,q2_worthwhile,q3_happy_yesterday," \
             "q4_anxious_yesterday,q5_child_wellbeing,q6_parenting_confidence," \
             "q7_help_with_difficulties,q8_worker_relationship,q9_negative_effects,q10_interview_opt_in"
    body = [line("t1", "2022-02-01T10:00:00"), line("t2", "01/02/2022 10:00"), line("t3", "2022-02-01 10:00")]
    data = (header + "\r\n" + body[0] + "\r" + body[1] + "\n" + body[2] + "\r\n").encode("utf-8")
    frame = read_export(data, "export.csv")
    assert frame["row"].to_list() == [2, 3, 4]
    assert frame["token"].to_list() == ["t1", "t2", "t3"]
    assert frame["q10_interview_opt_in"].to_list() == ["n", "n", "n"]
