"""The practice nurse at the command line: a dose's batch and site are given or said to be
not recorded, every recording names the patient and prints the command that undoes it,
and ``record entered-in-error`` is that undo (the entry kept, with why, and left out of
the assessment). Helpers and fixtures are those of test_followup_cli."""

# ruff: noqa: F811 (the fixtures imported from test_followup_cli are test parameters here)
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from test_followup_cli import add_patient, contents, day, db, ok, run, show  # noqa: F401

IM = "--drug hydroxocobalamin --dose '1 mg' --route im"


def test_record_dose_without_batch_or_site_exits_2_naming_what_is_accepted(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    pid = add_patient(capsys)
    before = contents(db)
    code, out, err = run(capsys, f"record dose {pid} --date {day(-3)} {IM}")
    assert code == 2 and out == ""
    assert "--batch: the batch number is needed (accepted: --batch and the batch number, or " in err
    assert "--batch-not-recorded)" in err
    assert "--site: the injection site is needed (accepted: --site and the injection site, " in err
    assert contents(db) == before, "nothing is written"
    code, _, err = run(capsys, f"record dose {pid} --date {day(-3)} {IM} --batch KX7731")
    assert code == 2 and "--site:" in err and "--batch:" not in err
    line = ok(capsys, f"record dose {pid} --date {day(-3)} {IM} --batch KX7731",
              "--site-not-recorded")  # fmt: skip
    assert "batch KX7731" in line.splitlines()[0]
    # A tablet has no injection site: only the batch is asked for.
    oral = "--drug cyanocobalamin --dose '1 mg' --route oral"
    code, _, err = run(capsys, f"record dose {pid} --date {day(-1)} {oral}")
    assert code == 2 and "--batch:" in err and "--site:" not in err
    ok(capsys, f"record dose {pid} --date {day(-1)} {oral} --batch-not-recorded")
    doses = show(capsys, pid)["patient"]["doses"]
    assert [d["route"] for d in doses] == ["im", "oral"]


def undo_command(out: str) -> list[str]:
    """The command a recording printed to undo it, as argv for ``run`` (without b12dx)."""
    (line,) = [x for x in out.splitlines() if x.startswith("To undo: ")]
    argv = shlex.split(line.removeprefix("To undo: "))
    assert argv[0] == "b12dx"
    return argv[1:]


def test_every_recording_names_the_patient_and_prints_the_command_that_undoes_it(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    pid = add_patient(capsys, "--condition pernicious_anemia")
    outs = {
        "lab": ok(capsys, f"record lab {pid} --test total_b12 --value 110 --unit ng/L",
                  f"--date {day(-5)}"),
        "rating": ok(capsys, f"record symptom {pid} --symptom paresthesia --rating severe",
                     f"--date {day(-5)}"),
        "dose": ok(capsys, f"record dose {pid} --date {day(-3)} {IM} --batch KX7731",
                   "--site 'left deltoid'"),
    }  # fmt: skip
    for kind, out in outs.items():
        assert out.startswith(f"Recorded for {pid} (Margaret Hale): "), out
        argv = undo_command(out)
        assert argv[:3] == ["record", "entered-in-error", pid] and argv[3].startswith(f"{kind}:")
    assert "hydroxocobalamin 1 mg IM on" in outs["dose"] and "left deltoid" in outs["dose"]

    # The printed command, run as printed, undoes the dose: kept, marked, not counted.
    code, out, err = run(capsys, *map(shlex.quote, undo_command(outs["dose"])))
    assert code == 0, err
    assert out.startswith(f"Marked entered in error for {pid} (Margaret Hale): dose ")
    assert f"{day(-3)}: hydroxocobalamin 1 mg IM, batch KX7731, left deltoid" in out
    record = show(capsys, pid)
    assert record["patient"]["doses"] == []
    marked = [e for e in record["history"]["audit"] if e["action"] == "entered_in_error"]
    assert [(e["entity"], e["detail"]["reason"]) for e in marked] == [
        ("dose", "undone just after it was recorded")
    ]
    # Once only, and only this patient's entries.
    before = contents(db)
    code, out, err = run(capsys, *map(shlex.quote, undo_command(outs["dose"])))
    assert code == 2 and out == "" and "ENTRY:" in err and "already marked" in err
    other = add_patient(capsys, "--add-anyway")
    lab = undo_command(outs["lab"])[3]
    code, _, err = run(capsys, f"record entered-in-error {other} {lab} --reason 'wrong patient'")
    assert code == 2 and "ENTRY:" in err
    assert contents(db)["audit rows"][: len(before["audit rows"])] == before["audit rows"]


@pytest.mark.parametrize(
    ("entry", "reason", "said"),
    [
        ("dose12", "wrong patient", "ENTRY: 'dose12' is not an entry (accepted: lab:ID, rating"),
        ("pill:3", "wrong patient", "ENTRY: 'pill:3' is not an entry"),
        ("lab:1", "no", "--reason: say why the entry is wrong, in 3 to 200 characters"),
    ],
)
def test_entered_in_error_says_what_is_wrong_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], db: Path, entry: str, reason: str, said: str
) -> None:
    pid = add_patient(capsys)
    ok(capsys, f"record lab {pid} --test total_b12 --value 110 --unit ng/L --date {day(-5)}")
    before = contents(db)
    code, out, err = run(capsys, f"record entered-in-error {pid} {entry} --reason '{reason}'")
    assert code == 2 and out == "" and said in err, err
    assert contents(db) == before
