"""Privacy of the qualitative strand: no planted identifier reaches anything outside the encrypted stores.

The marker corpus (tests/qualitative_support.py) gives every identifier field of the register
(full_name, every other name) and every identifier spoken in the transcripts (speaker labels as
full and first names, names, surnames, possessives, nicknames, children's and partners' names, a
multi-word other name, deny-list terms, e-mail local parts, a URL host) a unique word starting
``Zqxmarker``. The whole strand runs through ``cluster-eval`` in-process: register, transcripts
(docx, txt, vtt), redact, approve, coding export (QDPX and the Excel sheet), a coded QDPX import,
analyse, a withdrawal, status; plus two rejected deliveries that carry markers
(an unknown speaker label, a pseudonym equal to a real name, an xlsx register with an
unknown survey token). Then every file under
CLUSTER_EVAL_HOME (database, WAL, review lists, quarantine, the encrypted deliveries), the Prefect
home and the Prefect test server's database folder, the analysis folders and both coding exports
(ZIP members unpacked: xlsx, docx, qdpx) are read as bytes, lower-cased, and searched for
``zqxmarker``, together with everything the commands printed and every log record: zero hits.
The names store and the transcript store decrypt back to the markers / to marker-free text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import prefect_home
from qualitative_support import (
    CODEBOOK,
    MARKER,
    MARKER_DENY,
    PASS,
    aes_members,
    configure_qualitative,
    csv_rows,
    deny_csv,
    files_under,
    flush_prefect_logs,
    harness_database_folder,
    ingest_and_survey,
    marker_hits,
    marker_register,
    marker_transcripts,
    new_study,
    read_key,
    read_project,
    rows_csv,
    rows_xlsx,
    txt_bytes,
)

from tasks.qualitative.model import load_names, load_turns

pytestmark = pytest.mark.e2e


def test_no_marker_outside_the_encrypted_stores(prefect_harness: None, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from tasks.demo.qdpx_coder import code_project

    caplog.set_level(logging.DEBUG)
    study = new_study(tmp_path / "study")
    tokens = ingest_and_survey(study, seed=41)
    configure_qualitative(study, rows_csv(CODEBOOK), deny_csv(MARKER_DENY))
    register = marker_register(tokens[:3])
    transcripts = marker_transcripts()

    # Two rejected deliveries that carry markers: their messages and quarantined files name no one.
    clash = [dict(r) for r in register]
    clash[1]["chosen_pseudonym"] = "Zqxmarkeraa"  # F01's first name as F02's pseudonym
    bad_register = study.inbox / "register-clash.zip"
    bad_register.write_bytes(aes_members({"participants.csv": rows_csv(clash)}))
    assert "not_a_real_name" in study.cli("participants", "import", bad_register, expect=1).err
    unknown_token = [dict(r) for r in register]
    unknown_token[0]["survey_token"] = "Zqxmarkertoken"  # noqa: S105 - not a secret
    bad_workbook = study.inbox / "register-token.zip"
    bad_workbook.write_bytes(aes_members({"register.xlsx": rows_xlsx(unknown_token)}))
    assert "issued_token" in study.cli("participants", "import", bad_workbook, expect=1).err

    good_register = study.inbox / "register.zip"
    good_register.write_bytes(aes_members({"participants.csv": rows_csv(register)}))
    assert study.cli("participants", "import", good_register, "--json").json()["participants"] == 8

    stranger = study.inbox / "stranger.zip"
    stranger.write_bytes(aes_members({"FI-02.txt": txt_bytes(["Facilitator: Hello.", "Zqxmarkerzz: I am not here."])}))
    assert "speaker label" in study.cli("transcripts", "import", stranger, expect=1).err

    bundle = study.inbox / "transcripts.zip"
    bundle.write_bytes(aes_members(transcripts))
    imported = study.cli("transcripts", "import", bundle, "--json").json()
    assert imported["sessions"] == 3
    for session in ("FG-1", "FI-01", "FI-02"):
        study.cli("transcripts", "redact", session, "--json")
        study.cli("transcripts", "approve", session, "--json")

    exports = tmp_path / "exports"
    exports.mkdir()
    study.cli("coding", "export", "--out", exports / "project.qdpx")
    study.cli("coding", "export", "--out", exports / "coding-sheet.xlsx")
    coded = code_project((exports / "project.qdpx").read_bytes(), 5)
    (exports / "coded.qdpx").write_bytes(coded)
    assert read_project(coded).selections
    assert study.cli("coding", "import", exports / "coded.qdpx", "--json").json()["segments"] > 0
    study.cli("analyse", "--out", tmp_path / "analysis")
    study.cli("participants", "withdraw", "F02", "--json")
    assert str((tmp_path / "analysis").resolve()) in study.cli("status", "--json").json()["stale_outputs"]
    flush_prefect_logs()

    # The markers did reach the names store, encrypted; the transcript store holds none of them.
    engine = study.engine()
    try:
        with engine.connect() as conn:
            names = load_names(conn, read_key(study.home, "participant_key"), "pilot")
            turns = load_turns(conn, read_key(study.home, "transcript_key"), "pilot")
    finally:
        engine.dispose()
    assert names["F01"].full_name == "Zqxmarkeraa Zqxmarkerab" and "F02" not in names
    assert len(names) == 7 and all(MARKER.decode() in n.full_name.lower() for n in names.values())
    assert len(turns) in (6 + 6 + 5, 6 + 6 + 6) and {t.session_id for t in turns} == {"FI-01", "FI-02", "FG-1"}
    assert not [t.turn_no for t in turns if MARKER.decode() in t.words.lower()]

    harness = harness_database_folder()
    assert harness is not None and (harness / "prefect-test.db").is_file()
    roots = [study.home, prefect_home(), harness, tmp_path / "analysis", exports]
    scanned = list(files_under(*roots))
    assert study.db_path.is_file() and len(scanned) > 30
    assert list((study.home / "raw" / "qualitative").iterdir())  # the encrypted deliveries are scanned too
    assert list((study.home / "restricted" / "review").glob("*.csv"))
    assert (tmp_path / "analysis" / "restricted" / "framework_counts.csv").is_file()
    logged = b"".join(p.read_bytes() for p in files_under(harness))
    assert b"participants-import" in logged and b"coding-import" in logged  # the scan sees the flow runs
    assert marker_hits(roots) == {}
    assert len(marker_hits([study.root / "config"])) == 1  # the scan does find markers: the deny-list has them
    counts = csv_rows(tmp_path / "analysis" / "restricted" / "framework_counts.csv")
    assert sum(int(r["segments"]) for r in counts) > 5

    captured = "\n".join(study.printed) + caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert MARKER.decode() not in captured.lower()

    # No key or passphrase reaches Prefect's storage either.
    secrets = [PASS.encode()] + [(study.home / "keys" / k).read_bytes().strip()
                                 for k in ("participant_key", "transcript_key")]
    for path in files_under(prefect_home(), harness):
        blob = path.read_bytes()
        assert not any(s in blob for s in secrets), path
