"""The command line's lists of accounts and imported patients: each is a table that never
cuts an id (``cli.io.show``: piped, a row is one line) and, for scripts, JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_fhir import SYNTHEA, run_cli
from test_followup_web import PASSWORD
from test_followup_web import run_cli as call_cli

LONG_NAME = "the.practice.nurse.with.a.long.username@riverside-surgery.nhs.uk"


def test_practice_and_user_lists_print_json_and_never_cut_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    assert call_cli(capsys, monkeypatch, "practice", "add", "Riverside", "--db", db)[0] == 0
    code, _, err = call_cli(
        capsys, monkeypatch, "user", "add", LONG_NAME, "--practice", "Riverside",
        "--password-stdin", "--db", db, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = call_cli(capsys, monkeypatch, "practice", "list", "--json", "--db", db)
    assert code == 0, err
    assert [(p["id"], p["name"], p["users"], p["patients"]) for p in json.loads(out)] == [
        (1, "Local practice", 0, 0),
        (2, "Riverside", 1, 0),
    ]
    code, out, err = call_cli(capsys, monkeypatch, "user", "list", "--json", "--db", db)
    assert code == 0, err
    assert json.loads(out) == [
        {"username": LONG_NAME, "practice": "Riverside", "active": True, "locked_until": None,
         "failed_logins": 0}
    ]  # fmt: skip
    # The tables: piped, one row a line, the name and the id whole.
    code, out, _ = call_cli(capsys, monkeypatch, "user", "list", "--db", db)
    assert code == 0
    (row,) = [line for line in out.splitlines() if "Riverside" in line]
    assert LONG_NAME in row and "active" in row
    code, out, _ = call_cli(capsys, monkeypatch, "practice", "list", "--db", db)
    assert code == 0 and re.search(r"\b2\b.*\b1\b.*\b0\b.*Riverside", out)


def test_fhir_import_assess_table_keeps_every_patient_id_whole() -> None:
    done = run_cli("fhir-import", str(SYNTHEA), "--assess", "--as-of", "1994-01-01")
    assert done.returncode == 0, done.stderr
    ids = [
        json.loads(line)["patient"].removeprefix("Patient/") for line in done.stdout.splitlines()
    ]
    assert ids and all(len(i) > 20 for i in ids), "Synthea's ids are long"
    table = done.stderr.split("Assessed as of 1994-01-01")[1]
    for pid in ids:
        (row,) = [line for line in table.splitlines() if pid in line]
        assert re.search(r"\b\d+\b.*(routine|soon|urgent|emergency)", row.replace(pid, "")), row
