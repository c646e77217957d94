"""An operator, in a real browser, tops up the survey and sees a rejected extract fail (issue 12).

On the session's real Prefect server (with its UI) and `cluster-eval serve` with a local SMTP sink,
headless Debian Chromium drives the default Prefect 3.9 UI (the new UI, under /v2) as a person would:

0. Run → Quick run of `survey-topup/top-up-wave` (defaults: the top-up rule decides): wave 1 is still in
   fieldwork, so the run ends Completed (not red) with the rule's one line, nothing proposed;
1. a top-up is started from the deployment's Run button (Custom run, `size` set, which draws whatever
   the rule says); the paused run's Resume form shows the decision's facts (issued, responded, rate,
   wave-1 share, shortfall and proposed draw per stratum, respondents against the target, invitations
   by route, "Approving e-mails N households now ..."), exactly as the database says; it is rejected
   with a note: the run ends Completed, nobody is drawn or e-mailed, the decision and note are audited;
2. another top-up, approved: the run `top-up wave 2` completes, the wave is drawn as proposed and
   its e-mail households (exactly those the form announced) are e-mailed;
3. a corrupt extract is ingested from the `ingest/ingest-file` deployment (Custom run, `file`): the
   run is red (Failed), its page shows the one line `cluster-eval ingest` prints, and neither its
   details nor its logs show a traceback.

A screenshot of each step is saved under the test's folder (or env CLUSTER_EVAL_TEST_UI_SCREENSHOTS).
The wave-1 preparation uses the command line; everything after it is clicked.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, stop_process_group
from sqlalchemy import create_engine, text
from test_fieldwork import Inbox
from ui_support import (
    CHROMIUM,
    Api,
    Screenshots,
    browser_page,
    choose,
    custom_run_form,
    fits_across,
    open_deployment,
    open_run,
    open_run_menu,
    optional_int_parameter,
    optional_text,
    quick_run,
    resume,
    resume_form,
    rgb,
    state_badge,
    submit_custom_run,
    tab_text,
    tables,
    wait_for,
    wait_until_run_process_ended,
)

from tasks.demo.render import write_extract
from tasks.demo.survey_export import generate_survey_export, survey_export_csv
from tasks.survey.fieldwork import uk_date

PASSPHRASE = "ui-operator-test-passphrase"  # noqa: S105 - test passphrase
SAMPLE_SIZE = 20           # wave 1; the target is 20 x 0.5 = 10 respondents
TARGET = 10
RESPONDENTS = 3            # wave-1 households whose responses are imported
LAST_REMINDER_DAYS = 14    # survey.reminder_days (7, 14): a wave's fieldwork is over 14 days after its invitations
TOPUP_SIZE = 6             # each top-up's Custom run `size` (the rule needs wave 1's fieldwork over first)
TOPUP = "survey-topup/top-up-wave"
INGEST = "ingest/ingest-file"
NOTE = "wait for the second reminder first"
FORM_COLUMNS = [["stratum", "issued", "responded", "rate"], ["stratum", "wave-1 share", "shortfall", "draw"]]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)"),
]


def _cli(env: dict[str, str], cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    return done


def _percent(part: int | Fraction, whole: int | Fraction) -> str:
    """A whole percentage rounded half up ("-" of nothing), as the decision form prints it."""
    if not whole:
        return "–"
    return f"{int(Fraction(part) * 100 / Fraction(whole) + Fraction(1, 2))}%"


def _prepare_wave_1(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Draw and invite wave 1 (of an ingested extract), import the responses of 3 households.

    Returns wave 1's households per stratum (``allocation``), the responders per stratum and the tokens.
    """
    wave1 = json.loads(_cli(env, tmp_path, "sample", "--wave", "1", "--json").stdout)
    _cli(env, tmp_path, "invite", "--wave", "1")
    by_stratum: dict[str, list[str]] = {}
    for household in wave1["households"]:
        by_stratum.setdefault(household["stratum"], []).append(household["token"])
    largest, second = sorted(by_stratum, key=lambda h: (-len(by_stratum[h]), h))[:2]
    responders = sorted(by_stratum[largest])[:2] + sorted(by_stratum[second])[:1]
    export = tmp_path / "responses.csv"
    export.write_bytes(survey_export_csv(generate_survey_export(responders, seed=5, response_rate=1.0)))
    imported = json.loads(_cli(env, tmp_path, "responses", "import", str(export), "--json").stdout)
    assert imported["accepted"] == RESPONDENTS, imported
    return {"allocation": wave1["allocation"],  # every stratum of the frame, 0 where none was drawn
            "responded": {largest: 2, second: 1},
            "tokens": [h["token"] for h in wave1["households"]]}


def _expected_tables(wave1: dict[str, Any], proposed: dict[str, int]) -> list[list[dict[str, str]]]:
    """The decision form's two tables as the database says they must read (per stratum, then the total).

    "So far (all waves)": issued, responded, rate; "Proposed": wave-1 share, shortfall (the respondents a
    stratum lacks to reach its wave-1 share of the target, ceil(share x target - responded), at least 0), draw.
    """
    allocation, responded = wave1["allocation"], wave1["responded"]
    total, got_total = sum(allocation.values()), sum(responded.values())
    so_far, plan = [], []
    for h in sorted(set(allocation) | {k for k, n in proposed.items() if n}):
        issued, got = allocation.get(h, 0), responded.get(h, 0)
        share = Fraction(issued, total)
        shortfall = max(0, -((got - share * TARGET) // 1))
        so_far.append({"stratum": h, "issued": str(issued), "responded": str(got), "rate": _percent(got, issued)})
        plan.append({"stratum": h, "wave-1 share": _percent(share, 1), "shortfall": str(shortfall),
                     "draw": str(proposed.get(h, 0))})
    so_far.append({"stratum": "total", "issued": str(total), "responded": str(got_total),
                   "rate": _percent(got_total, total)})
    plan.append({"stratum": "total", "wave-1 share": "100%", "shortfall": str(sum(int(r["shortfall"]) for r in plan)),
                 "draw": str(sum(proposed.values()))})
    return [so_far, plan]


class Study:
    """The study database (SQLite under CLUSTER_EVAL_HOME), read-only, for exact figures."""

    def __init__(self, home: Path) -> None:
        self.engine = create_engine(f"sqlite:///{home / 'cluster-eval.db'}")

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def waves(self) -> int:
        return int(self.scalar("SELECT count(*) FROM waves"))

    def households(self) -> int:
        return int(self.scalar("SELECT count(*) FROM households"))

    def proposal(self, run_id: str) -> tuple[int, dict[str, int], str | None]:
        """The wave, households per stratum and decision a top-up run recorded before it paused."""
        with self.engine.connect() as conn:
            wave, allocation, decision = conn.execute(text(
                "SELECT wave, allocation, decision FROM topup_runs WHERE flow_run_id = :id"), {"id": run_id}).one()
        return int(wave), {h: int(n) for h, n in json.loads(allocation).items()}, decision

    def decisions(self) -> dict[str, tuple[str, str | None]]:
        """The audited top-up decisions (and notes) by flow run."""
        with self.engine.connect() as conn:
            found = conn.execute(text(
                "SELECT flow_run_id, details FROM audit_log WHERE event = 'survey_topup_decision'")).all()
        return {run_id: (json.loads(details)["decision"], json.loads(details)["note"]) for run_id, details in found}

    def drawn(self, wave: int) -> tuple[dict[str, int], dict[str, int]]:
        """Households of a wave per stratum and per route."""
        with self.engine.connect() as conn:
            strata = dict(conn.execute(text(
                "SELECT stratum, count(*) FROM households WHERE wave = :w GROUP BY stratum"), {"w": wave}).all())
            routes = dict(conn.execute(text(
                "SELECT route, count(*) FROM households WHERE wave = :w GROUP BY route"), {"w": wave}).all())
        return strata, routes


def _quick_run_not_needed(page: Any, url: str, api: Api, deployment_id: str, study: Study,
                          shots: Screenshots) -> None:
    """Run → Quick run (defaults: the top-up rule decides): wave 1 is in fieldwork, the run ends Completed."""
    open_deployment(page, url, deployment_id)
    open_run_menu(page)
    shots.take(page, "topup-0-run-menu")
    run_id = quick_run(page)
    done = api.wait_for_state(run_id, "COMPLETED")
    invited = uk_date(study.scalar("SELECT max(attempted_at) FROM contact_attempts WHERE wave = 1"))
    over = invited + timedelta(LAST_REMINDER_DAYS)
    line = (f"no top-up yet: wave 1 is in fieldwork until {over} (its last reminder); "
            f"{RESPONDENTS} respondents of the target of {TARGET} so far")
    assert (done["name"], done["state"]["message"]) == ("top-up", line)
    details = _run_page(page, url, run_id, "Completed")
    assert f"State Message\n{line}" in details
    shots.take(page, "topup-0-not-needed-run")
    assert study.scalar("SELECT count(*) FROM topup_runs") == 0 and study.waves() == 1


def _start_topup(page: Any, url: str, api: Api, deployment_id: str) -> str:
    """Run → Custom run with `size`, submitted from the deployment page; wait until it pauses."""
    open_deployment(page, url, deployment_id)
    custom_run_form(page, {})
    optional_int_parameter(page, "size", TOPUP_SIZE)
    run_id = submit_custom_run(page)
    api.wait_for_state(run_id, "PAUSED")
    assert api.flow_run(run_id)["parameters"]["size"] == TOPUP_SIZE
    return run_id


def _read_form(page: Any, url: str, run_id: str, shots: Screenshots,
               name: str) -> tuple[Any, str, list[list[dict[str, str]]]]:
    """Open the paused run's Resume form (screenshot); its dialog, text and the facts tables."""
    open_run(page, url, run_id)
    dialog = resume_form(page)
    dialog.get_by_text("Approving e-mails").wait_for()
    shots.take(page, name)
    found = tables(dialog)
    for table in dialog.locator("table").all():  # every column in sight: the dialog is narrow (512 px)
        assert fits_across(dialog, table), "a table of the decision form is wider than the Resume dialog"
    return dialog, str(dialog.inner_text()), found


def _check_form(form_text: str, found: list[list[dict[str, str]]], wave1: dict[str, Any], wave: int,
                proposed: dict[str, int]) -> tuple[int, int]:
    """The form's facts are the database's; returns the e-mails and post packs it announces."""
    assert [list(table[0]) for table in found] == FORM_COLUMNS
    assert found == _expected_tables(wave1, proposed)
    assert "So far (all waves):" in form_text and "Proposed:" in form_text
    assert f"Top-up wave {wave}: approve or reject" in form_text
    assert f"Respondents so far: {RESPONDENTS} of the target of {TARGET}" in form_text
    assert f"Proposed draw: {TOPUP_SIZE} households" in form_text
    routes = re.search(r"Invitations by route: (\d+) by e-mail, (\d+) by post \(fieldwork pack\), (\d+) by phone",
                       form_text)
    assert routes is not None, form_text
    email, post, phone = (int(n) for n in routes.groups())
    assert email + post + phone == TOPUP_SIZE
    assert f"Approving e-mails {email} households now and adds {post} to the post pack" in form_text
    assert "Rejecting draws nobody and contacts nobody." in form_text
    assert not [t for t in wave1["tokens"] if t in form_text]  # counts only: no household token
    return email, post


def _decide(page: Any, dialog: Any, decision: str, shots: Screenshots, name: str, note: str | None = None) -> None:
    """Choose approve / reject in the form's Decision select (and type a note), screenshot, press Resume."""
    choose(page, dialog, "Decision", decision)
    assert dialog.get_by_role("button", name="Select Decision").inner_text().strip() == decision
    if note is not None:
        optional_text(dialog, "Note", note)
    shots.take(page, name)
    resume(page, dialog)


def _run_page(page: Any, url: str, run_id: str, state: str) -> str:
    """The run's page once the UI shows ``state``: its Details tab text."""
    open_run(page, url, run_id)
    state_badge(page, state).wait_for()
    return tab_text(page, "Details", "State Message")


def test_operator_tops_up_from_the_ui_and_sees_a_rejected_extract_fail(
        live_prefect_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, server_env = live_prefect_server
    api = Api(url)
    shots = Screenshots(tmp_path / "screenshots")
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    home = tmp_path / "var"
    env = {**server_env, "CLUSTER_EVAL_HOME": str(home), "CLUSTER_EVAL_EXTRACT_PASSPHRASE": PASSPHRASE,
           "CLUSTER_EVAL_SMTP__PORT": str(port), "CLUSTER_EVAL_SURVEY__SAMPLE_SIZE": str(SAMPLE_SIZE),
           "CLUSTER_EVAL_SURVEY__EXPECTED_RESPONSE_RATE": "0.5",
           "CLUSTER_EVAL_SURVEY__APPROVAL_POLL_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    corrupt = tmp_path / "extract-corrupt.zip"
    corrupt_bytes = b"PK\x03\x04 this extract was cut short in transit " * 40
    serve_log = (tmp_path / "serve.log").open("w")
    serving = cli_rejection = None
    try:
        extract = write_extract(tmp_path / "extract.zip", families=150, seed=11, passphrase=PASSPHRASE)
        _cli(env, tmp_path, "ingest", str(extract))
        # While wave 1 is prepared: `serve` starts, and `cluster-eval ingest` says what it prints for the corrupt
        # file (in its own home: it quarantines the file; the same bytes go back at the same path for the UI).
        corrupt.write_bytes(corrupt_bytes)
        cli_rejection = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cli", "ingest", str(corrupt)], cwd=tmp_path, text=True,
            env={**env, "CLUSTER_EVAL_HOME": str(tmp_path / "cli-home")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        serve_started = datetime.now(UTC)
        serving = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env,  # noqa: S603
                                   cwd=tmp_path, stdout=serve_log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        wave1 = _prepare_wave_1(env, tmp_path)
        deployments = wait_for("the deployments registered by this serve", lambda: (d := api.deployments()) and all(
            name in d and datetime.fromisoformat(d[name]["updated"]) >= serve_started for name in (TOPUP, INGEST))
            and d)  # (the shared server may hold them from an earlier test's serve)
        study = Study(home)
        e_mails_before = len(inbox.messages)
        assert (study.waves(), study.households()) == (1, SAMPLE_SIZE)

        with browser_page(on_error=shots.folder / "failed-step.png") as page:
            # 0. Quick run: the top-up rule says "not yet" (wave 1's last reminder is due in 14 days): Completed.
            _quick_run_not_needed(page, url, api, deployments[TOPUP]["id"], study, shots)

            # 1. A top-up from the Run button; the form's facts; rejected: nothing drawn, nobody e-mailed.
            rejected = _start_topup(page, url, api, deployments[TOPUP]["id"])
            wave, proposed, decision = study.proposal(rejected)
            assert (wave, sum(proposed.values()), decision) == (2, TOPUP_SIZE, None)
            dialog, form_text, table = _read_form(page, url, rejected, shots, "topup-1-decision-form")
            announced = _check_form(form_text, table, wave1, wave, proposed)
            _decide(page, dialog, "reject", shots, "topup-1-form-reject", note=NOTE)
            done = api.wait_for_state(rejected, "COMPLETED")
            assert done["name"] == "top-up wave 2"
            assert done["state"]["message"] == "wave 2 was rejected; nothing was drawn"
            details = _run_page(page, url, rejected, "Completed")
            assert "top-up wave 2" in details and "wave 2 was rejected; nothing was drawn" in details
            shots.take(page, "topup-1-rejected-run")
            assert study.proposal(rejected)[2] == "rejected"
            assert (study.waves(), study.households(), len(inbox.messages)) == (1, SAMPLE_SIZE, e_mails_before)

            # 2. Another top-up, approved: wave 2 drawn as proposed, its e-mail households e-mailed.
            approved = _start_topup(page, url, api, deployments[TOPUP]["id"])
            assert study.proposal(approved) == (2, proposed, None)  # the same wave, the same proposal
            dialog, form_text, table = _read_form(page, url, approved, shots, "topup-2-decision-form")
            assert _check_form(form_text, table, wave1, 2, proposed) == announced
            _decide(page, dialog, "approve", shots, "topup-2-form-approve")
            done = api.wait_for_state(approved, "COMPLETED")
            details = _run_page(page, url, approved, "Completed")
            shots.take(page, "topup-2-approved-run")
            strata, routes = study.drawn(2)
            assert (study.waves(), study.households()) == (2, SAMPLE_SIZE + TOPUP_SIZE)
            assert strata == {h: n for h, n in proposed.items() if n}
            assert (routes.get("email", 0), routes.get("post", 0)) == announced
            assert len(inbox.messages) - e_mails_before == announced[0]
            assert done["name"] == "top-up wave 2" and "top-up wave 2" in page.inner_text("body")
            assert f"wave 2 drawn and invited: {TOPUP_SIZE} households ({announced[0]} e-mailed" in details
            assert study.proposal(approved)[2] == "approved"
            assert study.decisions() == {rejected: ("rejected", NOTE), approved: ("approved", None)}

            # 3. A corrupt extract through the UI: a red, Failed run with the CLI's one line, no traceback.
            out, err = cli_rejection.communicate(timeout=300)
            assert cli_rejection.returncode == 1, err
            assert "Traceback" not in err
            [line] = [x.removeprefix("cluster-eval: error: ") for x in err.splitlines()
                      if x.startswith("cluster-eval: error: ")]
            corrupt.write_bytes(corrupt_bytes)
            open_deployment(page, url, deployments[INGEST]["id"])
            custom_run_form(page, {"file": str(corrupt)})
            shots.take(page, "ingest-custom-run")
            failed = submit_custom_run(page)
            run = api.wait_for_state(failed, "FAILED")
            assert run["state"]["message"] == line
            assert run["name"] == f"ingest {hashlib.sha256(corrupt_bytes).hexdigest()[:8]}"
            # Everything the run logged has reached the server once its process has ended (it flushes at exit).
            wait_until_run_process_ended(failed)
            logs = [(log["level"], log["task_run_id"] is None, log["message"]) for log in api.logs(failed)]
            assert (40, True, line) in logs  # the one line, at ERROR, on the flow run
            assert not [log for log in logs if "Traceback" in log[2]], logs
            details = _run_page(page, url, failed, "Failed")
            red, green, blue = rgb(state_badge(page, "Failed").evaluate("e => getComputedStyle(e).color"))
            assert red > 150 and green < 100 and blue < 100, "the Failed badge is not red"
            assert f"State Message\n{line}" in details and run["name"] in details
            assert "Traceback" not in details
            shots.take(page, "ingest-failed-details")
            logs = tab_text(page, "Logs", line)
            assert line in logs and "Traceback" not in logs
            shots.take(page, "ingest-failed-logs")
    finally:
        if serving is not None:
            stop_process_group(serving)
        if cli_rejection is not None and cli_rejection.poll() is None:
            cli_rejection.kill()
        serve_log.close()
        smtp.stop()
    assert [p.name[3:] for p in shots.taken] == [
        "topup-0-run-menu.png", "topup-0-not-needed-run.png", "topup-1-decision-form.png", "topup-1-form-reject.png",
        "topup-1-rejected-run.png", "topup-2-decision-form.png", "topup-2-form-approve.png", "topup-2-approved-run.png",
        "ingest-custom-run.png", "ingest-failed-details.png", "ingest-failed-logs.png"]
    for shot in shots.taken:
        assert shot.exists() and shot.stat().st_size > 0, shot
