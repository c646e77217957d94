"""Survey response import (pandera validation, quarantine, duplicates), withdrawal, rates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, text
from test_fieldwork import households
from test_sampling import populate, standard_population, survey_settings

from schemas.survey import SurveyExportRaw, SurveyResponseClean, clean_schema
from tasks.core.contacts import load_contacts
from tasks.core.errors import InputRejected
from tasks.core.runtime import Runtime
from tasks.core.secrets import CONTACT_KEY
from tasks.core.settings import Settings
from tasks.demo.simulate import DEMO_RESPONSE_RATE, simulate_responses
from tasks.survey.delivery import record_attempts
from tasks.survey.outgoing import INVITATION, Outgoing
from tasks.survey.responses import (
    UnknownToken,
    import_responses,
    parse_submitted_at,
    read_export,
    response_rates,
    survey_status,
    token_digest,
    withdraw_household,
)
from tasks.survey.sampling import draw_wave

HEADER = ("token,submitted_at,mode,q1_life_satisfaction,q2_worthwhile,q3_happy_yesterday,"
          "q4_anxious_yesterday,q5_child_wellbeing,q6_parenting_confidence,"
          "q7_help_with_difficulties,q8_worker_relationship,q9_negative_effects,"
          "q10_interview_opt_in")


def line(token: str, at: str, mode: str = "online", score: str = "7", yes_no: str = "N") -> str:
    return ",".join([token, at, mode] + [score] * 8 + [yes_no, yes_no])


def write(tmp_path: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


#: When the tests' wave 1 is drawn: before the 2022 returns they import (none may predate its draw).
DRAWN = datetime(2022, 1, 20, 9, 0, tzinfo=UTC)


def drawn(rt: Runtime, settings: Settings, when: datetime = DRAWN) -> bytes:
    """The standard population, and wave 1 drawn at ``when`` (no invitation sent); the contact key."""
    key = populate(rt.engine, rt.home, standard_population())
    draw_wave(rt.engine, settings, key, 1, None, now=when)
    return key


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_submitted_at_formats() -> None:
    assert parse_submitted_at("2022-01-15T10:30:00") == "2022-01-15T10:30:00+00:00"  # GMT
    assert parse_submitted_at("2022-06-15 10:30") == "2022-06-15T09:30:00+00:00"  # BST
    assert parse_submitted_at("15/06/2022 10:30") == "2022-06-15T09:30:00+00:00"
    assert parse_submitted_at("2022-06-15T10:30:00Z") == "2022-06-15T10:30:00+00:00"
    assert parse_submitted_at("2022-06-15T10:30:00+02:00") == "2022-06-15T08:30:00+00:00"
    assert parse_submitted_at("31/02/2022 10:30") is None
    assert parse_submitted_at("02/13/2022 10:30") is None  # US order is never guessed


def test_header_matching_and_encodings() -> None:
    header = HEADER.replace("token", " Token ").replace("submitted_at", "Submitted At")
    data = ("\ufeff" + header + ",extra\n" + line("abc", "2022-02-01 10:00", " Paper ", " 5 ", " y ")
            + ",x\n").encode("utf-8")
    frame = read_export(data, "export.csv")
    assert frame.columns == ["row", *HEADER.split(",")]
    assert frame.row(0, named=True)["mode"] == "paper" and frame["q1_life_satisfaction"][0] == "5"
    assert frame["q9_negative_effects"][0] == "y" and frame["row"][0] == 2
    cp1252 = (HEADER + "\n" + line("abc", "2022-02-01 10:00") + "\n").encode("cp1252")
    assert read_export(cp1252, "x.csv").height == 1


@pytest.mark.parametrize(("data", "message"), [
    (b"", "file export.csv: is empty"),
    (b"token,submitted_at\nabc,2022-02-01\n",
     "file export.csv: is not a survey export v1: missing column(s) mode, q1_life_satisfaction"),
    ((HEADER + "\n" + line("a", "2022-02-01 10:00") + ",1,2,3\n\"x,\n").encode(),
     "file export.csv: is not a readable CSV file"),
])
def test_malformed_exports_are_rejected_whole(data: bytes, message: str) -> None:
    with pytest.raises(InputRejected) as caught:
        read_export(data, "export.csv")
    assert str(caught.value).startswith(message)


def test_models_inherit_linearly() -> None:
    assert SurveyResponseClean.__mro__[1] is SurveyExportRaw
    assert clean_schema().columns["q1_life_satisfaction"].dtype.type == pl.Int64
    assert list(clean_schema().columns) == list(SurveyExportRaw.to_schema().columns)


def test_import_quarantines_deduplicates_and_is_idempotent(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    drawn(runtime, s)
    tokens = sorted(households(runtime.engine, 1))
    a, b, c, d, e, f = tokens[:6]
    withdraw_household(runtime.engine, s, token_digest(f))
    export = write(tmp_path, "export.csv", [
        line(a, "2022-02-01T10:00:00"),                              # row 2 accepted
        line("NOT-ISSUED-TOKEN", "2022-02-01T10:00:00"),            # row 3 unknown token
        line(b, "2022-02-01T10:00:00", mode="email", score="11"),    # row 4 two problems
        line(c, "01/02/2022 10:00"),                                  # row 5 earlier duplicate
        line(c, "01/02/2022 12:00", score="3"),                       # row 6 kept
        line(d, "31/02/2022 10:00"),                                  # row 7 not a real date
        line(e, "01/02/2022 09:15", mode="Paper", yes_no=" Yes "),    # row 8 accepted
        line(f, "2022-02-01T10:00:00"),                              # row 9 withdrew
        line("", "2022-02-01T10:00:00"),                             # row 10 no token
    ])
    result = import_responses(runtime.engine, s, export)
    out = result.as_json()
    assert (out["status"], out["rows"], out["accepted"], out["quarantined"]) == ("imported", 9, 3, 5)
    assert out["duplicates"] == [{"dropped_row": 5, "kept_row": 6}]
    assert out["quarantine"] == [
        {"row": 3, "column": "token", "reason": "token was never issued"},
        {"row": 4, "column": "mode", "reason": "mode is not online, paper or phone"},
        *[{"row": 4, "column": q, "reason": f"{q} is not a whole number from 0 to 10"}
          for q in sorted(HEADER.split(",")[3:11])],
        {"row": 7, "column": "submitted_at", "reason": "submitted_at is not a real date and time"},
        {"row": 9, "column": "token", "reason": "the household has withdrawn; its response is not kept"},
        {"row": 10, "column": "token", "reason": "token is missing"},
    ]
    assert out["response_rate"] == {"issued": 20, "responded": 3, "rate": 0.15,
                                    "target_respondents": 10}
    with runtime.engine.connect() as conn:
        stored = {r.token: r for r in conn.execute(text(
            "SELECT token, submitted_at, mode, q1_life_satisfaction, q9_negative_effects FROM responses"))}
        quarantine = conn.execute(text(
            "SELECT row_key, column_name, rule, reason FROM quarantined_rows")).all()
    assert sorted(stored) == sorted([a, c, e])
    assert stored[c].q1_life_satisfaction == 3 and stored[c].submitted_at == "2022-02-01T12:00:00+00:00"
    assert stored[e].mode == "paper" and bool(stored[e].q9_negative_effects) is True
    assert len(quarantine) == 13
    dump = json.dumps([tuple(q) for q in quarantine]) + json.dumps(out)
    assert "NOT-ISSUED" not in dump and not any(t in dump for t in tokens)  # no values, no tokens

    audit_before = count(runtime.engine, "audit_log")
    again = import_responses(runtime.engine, s, export).as_json()
    assert (again["status"], again["rows"], again["accepted"], again["quarantined"]) == (
        "duplicate", 9, 3, 5)
    assert (count(runtime.engine, "responses"), count(runtime.engine, "quarantined_rows"),
            count(runtime.engine, "response_imports"), count(runtime.engine, "audit_log")) == (
        3, 13, 1, audit_before)

    cumulative = write(tmp_path, "export2.csv", [
        line(a, "2022-02-01T10:00:00"),          # row 2 same as stored: nothing to do
        line(c, "01/02/2022 09:00"),             # row 3 earlier than stored: reported
        line(e, "02/02/2022 09:15", score="9"),  # row 4 later: replaces the stored one
    ])
    third = import_responses(runtime.engine, s, cumulative).as_json()
    assert (third["accepted"], third["already_stored"], third["quarantined"]) == (1, 1, 0)
    assert third["duplicates"] == [{"dropped_row": None, "kept_row": 4},
                                   {"dropped_row": 3, "kept_row": None}]
    with runtime.engine.connect() as conn:
        q1 = conn.execute(text("SELECT q1_life_satisfaction FROM responses WHERE token = :t"),
                          {"t": e}).scalar_one()
    assert q1 == 9 and count(runtime.engine, "responses") == 3


def test_withdraw_deletes_now_and_marks_never_contact(runtime: Runtime, tmp_path: Path) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    drawn(runtime, s)
    hh = households(runtime.engine, 1)
    token = sorted(hh)[0]
    family = hh[token]["family_pid"]
    import_responses(runtime.engine, s, write(tmp_path, "e.csv", [line(token, "2022-02-01 10:00")]))
    with runtime.engine.begin() as conn:
        conn.execute(text("INSERT INTO interview_draws VALUES ('pilot', :t, 1, 'x')"), {"t": token})
    result = withdraw_household(runtime.engine, s, token_digest(f"  {token} "))
    assert result.as_json() == {"status": "withdrawn", "wave": 1, "responses_deleted": 1,
                                "contact_deleted": 1, "interview_draws_deleted": 1}
    key = runtime.secrets.key(CONTACT_KEY)
    with runtime.engine.connect() as conn:
        assert family not in load_contacts(conn, key, "pilot")
        assert conn.execute(text("SELECT withdrawn_at FROM households WHERE token = :t"),
                            {"t": token}).scalar_one() is not None
        assert conn.execute(text("SELECT reason FROM do_not_contact WHERE family_pid = :f"),
                            {"f": family}).scalar_one() == "withdrawal"
        event, details = conn.execute(text(
            "SELECT event, details FROM audit_log ORDER BY seq DESC LIMIT 1")).one()
    assert event == "withdrawal" and token not in details and json.loads(details)["family_pid"] == family
    assert count(runtime.engine, "responses") == 0 and count(runtime.engine, "interview_draws") == 0
    again = withdraw_household(runtime.engine, s, token_digest(token))
    assert again.status == "already_withdrawn" and again.contact_deleted == 0
    with pytest.raises(UnknownToken, match="that token was never issued"):
        withdraw_household(runtime.engine, s, token_digest("never-issued"))
    # the withdrawn family is never sampled again either
    top = draw_wave(runtime.engine, s, key, 2, 5)
    assert (top.excluded["withdrawn"], top.excluded["already_sampled"]) == (1, 19)


def test_rates_by_wave_and_stratum_and_status(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    rt = sqlite_runtime
    s = survey_settings(rt.settings, sample_size=20)
    drawn(rt, s)
    hh = households(rt.engine, 1)
    parenting = sorted(t for t, h in hh.items() if h["stratum"] == "parenting")[:4]
    housing = sorted(t for t, h in hh.items() if h["stratum"] == "housing")[:1]
    import_responses(rt.engine, s, write(tmp_path, "e.csv", [
        line(t, "2022-02-01 10:00") for t in parenting + housing]))
    with rt.engine.connect() as conn:
        assert response_rates(conn, "pilot") == [
            {"wave": 1, "stratum": "domestic_abuse", "issued": 4, "responded": 0, "response_rate": 0.0},
            {"wave": 1, "stratum": "housing", "issued": 6, "responded": 1, "response_rate": 0.167},
            {"wave": 1, "stratum": "parenting", "issued": 10, "responded": 4, "response_rate": 0.4},
        ]
        status = survey_status(conn, s)
    assert status["waves"][0] | {"drawn_at": None} == {
        "wave": 1, "size": 20, "drawn_at": None, "issued": 20, "responded": 5, "response_rate": 0.25}
    assert (status["respondents"], status["target_respondents"], status["interview_draw"]) == (5, 10, 0)


def test_demo_returns_follow_each_households_invitation(runtime: Runtime) -> None:
    s = survey_settings(runtime.settings, sample_size=20)
    drawn(runtime, s)
    tokens = sorted(households(runtime.engine, 1))
    invited = {t: DRAWN + timedelta(days=2, hours=i, microseconds=500) for i, t in enumerate(tokens[:10])}
    for token, at in invited.items():  # half invited (at different times), half never: bounded by the draw
        record_attempts(runtime.engine, "pilot", [Outgoing(token, "-", 1, INVITATION, "email")], "sent", at)
    until = DRAWN + timedelta(days=3)
    with runtime.engine.connect() as conn:
        path = simulate_responses(conn, runtime.home, "pilot", 1, seed=3, until=until)
    export = pl.read_csv(path, infer_schema=False)
    assert export.height == round(20 * DEMO_RESPONSE_RATE)
    for token, at in export.select("token", "submitted_at").iter_rows():
        opened = invited.get(token, DRAWN).replace(microsecond=0)
        assert opened <= datetime.fromisoformat(at) <= until, (token, at)
    assert export.filter(pl.col("token").is_in(list(invited))).height > 0
    assert export.filter(~pl.col("token").is_in(list(invited))).height > 0
    out = import_responses(runtime.engine, s, path, now=until).as_json()
    assert (out["rows"], out["accepted"], out["quarantined"]) == (12, 12, 0)
