"""Survey input edges (issue 13 items 9-11): submitted_at bounds (study window, the household's
invitation, now, end of fieldwork), tokens never starting with '-', ``withdraw --token``, mixed
line endings in extract CSVs and the survey export."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from test_fieldwork import households
from test_responses import DRAWN, drawn, line, write
from test_sampling import survey_settings

import cli.survey as survey_cli
from cli.main import build_parser
from schemas.codes import TABLES
from tasks.core.errors import UserFacingError
from tasks.core.runtime import Runtime
from tasks.demo.synthetic import generate_tables
from tasks.ingest.reader import normalise_line_endings, read_tables
from tasks.survey import sampling
from tasks.survey.delivery import record_attempts
from tasks.survey.outgoing import INVITATION, Outgoing
from tasks.survey.responses import (
    BEFORE_INVITATION,
    import_responses,
    invitation_times,
    parse_submitted_at,
    read_export,
    submission_window,
    token_digest,
    utc_second,
)
from tasks.survey.sampling import draw_wave

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


def _invite(rt: Runtime, token: str, at: datetime, outcome: str = "sent") -> None:
    """Record the household's invitation attempt at ``at``, as the invite flow does."""
    house = households(rt.engine)[token]
    record_attempts(rt.engine, "pilot", [Outgoing(token, house["family_pid"], house["wave"], INVITATION,
                                                  house["route"])], outcome, at)


def test_stored_times_are_compared_to_the_second() -> None:
    assert utc_second("2022-02-01T10:00:00.700000+00:00") == "2022-02-01T10:00:00+00:00"
    assert utc_second("2022-06-01T11:00:00.5+01:00") == "2022-06-01T10:00:00+00:00"
    assert utc_second("2022-02-01T10:00:00") == "2022-02-01T10:00:00+00:00"  # the project writes UTC
    assert utc_second("x") is None


def test_returns_before_the_household_was_invited_are_quarantined(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    key = drawn(runtime, s)  # wave 1 drawn at DRAWN, 2022-01-20 09:00 UTC
    a, b, c = sorted(households(runtime.engine, 1))[:3]
    invited_a = datetime(2022, 2, 1, 10, 0, 0, 700_000, tzinfo=UTC)
    _invite(runtime, a, invited_a)
    _invite(runtime, b, datetime(2022, 2, 3, 9, 0, tzinfo=UTC), outcome="bounced")  # any outcome counts
    # c: never invited, so bounded by its wave's draw; wave 2 (top-up) drawn on 10 February
    draw_wave(runtime.engine, s, key, 2, 3, now=datetime(2022, 2, 10, 12, 0, tzinfo=UTC))
    w2 = sorted(households(runtime.engine, 2))[0]
    with runtime.engine.connect() as conn:
        times = invitation_times(conn, "pilot")
    assert (times[a], times[b], times[c], times[w2]) == (
        "2022-02-01T10:00:00+00:00", "2022-02-03T09:00:00+00:00", DRAWN.isoformat(),
        "2022-02-10T12:00:00+00:00")
    assert len(times) == 23

    export = write(tmp_path, "export.csv", [
        line(a, "2022-02-01T09:59:59Z"),           # row 2 one second before a's invitation
        line(a, "2022-02-01T10:00:00Z"),           # row 3 in the invitation's second: kept
        line(a, "9999-12-31T10:00:00"),            # row 4 year 9999: quarantined, never wins
        line(b, "02/02/2022 12:00"),               # row 5 before b's (bounced) invitation
        line(b, "03/02/2022 09:00"),               # row 6 at b's invitation (GMT = UTC): kept
        line(c, "2022-01-20T08:59:59+00:00"),      # row 7 before c's wave was drawn
        line(c, "20/01/2022 09:00"),               # row 8 at the draw: kept
        line(w2, "2022-02-05T10:00:00"),           # row 9 before wave 2 was drawn
        line(w2, "2022-02-10 12:00:00"),           # row 10 at wave 2's draw: kept
    ])
    out = import_responses(runtime.engine, s, export, now=NOW).as_json()
    assert (out["rows"], out["accepted"], out["quarantined"], out["duplicates"]) == (9, 4, 5, [])
    late = "submitted_at is later than the time of the import"
    assert out["quarantine"] == [
        {"row": 2, "column": "submitted_at", "reason": BEFORE_INVITATION},
        {"row": 4, "column": "submitted_at", "reason": late},
        {"row": 5, "column": "submitted_at", "reason": BEFORE_INVITATION},
        {"row": 7, "column": "submitted_at", "reason": BEFORE_INVITATION},
        {"row": 9, "column": "submitted_at", "reason": BEFORE_INVITATION},
    ]
    assert BEFORE_INVITATION == "submitted_at is before the household was invited"
    with runtime.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT token, submitted_at FROM responses")).all())
        quarantined = conn.execute(text(
            "SELECT row_key, column_name, rule, reason FROM quarantined_rows ORDER BY row_key")).all()
    assert stored == {a: "2022-02-01T10:00:00+00:00", b: "2022-02-03T09:00:00+00:00",
                      c: "2022-01-20T09:00:00+00:00", w2: "2022-02-10T12:00:00+00:00"}
    assert [tuple(q) for q in quarantined] == [
        ("row 2", "submitted_at", "time_window", BEFORE_INVITATION),
        ("row 4", "submitted_at", "time_window", late),
        ("row 5", "submitted_at", "time_window", BEFORE_INVITATION),
        ("row 7", "submitted_at", "time_window", BEFORE_INVITATION),
        ("row 9", "submitted_at", "time_window", BEFORE_INVITATION),
    ]
    dump = json.dumps(out) + json.dumps([tuple(q) for q in quarantined])
    assert not any(t in dump for t in (a, b, c, w2)) and "2022-02-0" not in dump and "9999" not in dump

    # A later export cannot slip an earlier return in either: the stored one stays.
    again = write(tmp_path, "export2.csv", [line(a, "2022-02-01T09:00:00Z"),
                                             line(c, "2022-01-21T09:00:00Z")])
    second = import_responses(runtime.engine, s, again, now=NOW + timedelta(days=1)).as_json()
    assert (second["accepted"], second["quarantined"]) == (1, 1)
    assert second["quarantine"] == [{"row": 2, "column": "submitted_at", "reason": BEFORE_INVITATION}]
    with runtime.engine.connect() as conn:
        assert dict(conn.execute(text("SELECT token, submitted_at FROM responses")).all())[a] == \
            "2022-02-01T10:00:00+00:00"


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
