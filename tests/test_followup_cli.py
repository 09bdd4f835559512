"""The follow-up commands (``b12dx patient``, ``record``, ``due``, ``backup``, ``restore``)
run for real against a new SQLite file per test: a clinic's story from the first
deficient B12 to a missed maintenance dose, every bad input exits 2 with one message
naming the option and leaves every table and the audit log as they were, a patient's
FHIR Bundle comes back the same through export and import, and a backup restored into a
new database shows the same patient.

The commands read the clock (the store is given the time), so the story's dates are
counted back from today."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shlex
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from b12dx.cli import followup_work
from b12dx.cli.followup_work import parse_within
from b12dx.engine.schedule import add_months
from cli_calls import call

TODAY = dt.date.today()
# The commands read the clinic's clock; it is held at TODAY so that a run crossing
# midnight still agrees with the dates these tests wrote.
NOON_TODAY = dt.datetime.combine(TODAY, dt.time(12)).astimezone()
PATIENT_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}\n$")


# -- helpers ---------------------------------------------------------------------------


def argv(parts: tuple[str | Path, ...]) -> list[str]:
    """Each string split as a shell would ("--name 'Margaret Hale'"); a Path kept whole."""
    return [a for p in parts for a in ([str(p)] if isinstance(p, Path) else shlex.split(p))]


def run(capsys: pytest.CaptureFixture[str], *parts: str | Path) -> tuple[int, str, str]:
    return call(capsys, argv(parts))


def ok(capsys: pytest.CaptureFixture[str], *parts: str | Path) -> str:
    code, out, err = run(capsys, *parts)
    assert code == 0, f"{parts}: exit {code}: {err}"
    return out


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new database file, used by every command through B12DX_DATABASE_URL."""
    path = tmp_path / "clinic.sqlite3"
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.delenv("B12DX_DATA_DIR", raising=False)
    monkeypatch.setattr(followup_work, "now", lambda: NOON_TODAY)
    return path


def contents(path: Path) -> dict[str, Any]:
    """Every table's row count and the whole audit log, read straight from the file."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out: dict[str, Any] = {
            t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables
        }
        out["audit rows"] = conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    return out


def add_patient(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    out = ok(
        capsys,
        "patient add --name 'Margaret Hale' --birth-date 1958-04-12 --sex female",
        *extra,
    )
    assert PATIENT_ID.match(out), out
    return out.strip()


def show(capsys: pytest.CaptureFixture[str], pid: str, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(capsys, f"patient show {pid} --json", *extra))
    return data


def dose(capsys: pytest.CaptureFixture[str], pid: str, when: str) -> str:
    return ok(
        capsys,
        f"record dose {pid} --date {when} --drug hydroxocobalamin --dose '1 mg' --route im",
        "--given-by 'Nurse Okafor' --batch KX7731 --site 'left deltoid'",
    )


# -- the clinic's story ----------------------------------------------------------------


def test_clinic_story_from_deficient_b12_to_missed_maintenance_dose(capsys, db: Path) -> None:
    """Pernicious anaemia with weak legs: a deficient B12, symptom ratings, alternate-day
    loading doses, a review, the first maintenance dose; the due list shows the next
    maintenance dose as due, and once it is missed as overdue, first."""
    start = TODAY - dt.timedelta(days=160)
    pid = add_patient(capsys, "--condition pernicious_anemia")
    tested = (start - dt.timedelta(days=5)).isoformat()
    line = ok(
        capsys,
        f"record lab {pid} --test total_b12 --value 110 --unit ng/L --date {tested}",
        "--reference-low 180 --reference-high 900",
    )
    assert line.splitlines()[0] == (
        f"Recorded for {pid} (Margaret Hale): Total serum vitamin B12 (cobalamin) 110 ng/L "
        f"on {tested}."
    )
    for symptom, rating in (
        ("leg_weakness", "severe"),
        ("paresthesia", "moderate"),
        ("difficulty_walking", "moderate"),
    ):
        line = ok(capsys, f"record symptom {pid} --symptom {symptom} --rating {rating}",
                  f"--date {tested}")  # fmt: skip
        assert line.startswith(f"Recorded for {pid} (Margaret Hale): ") and rating in line

    first = json.loads(ok(capsys, f"patient assess {pid} --as-of {start} --json"))
    assert first["deficiency_status"] == "confirmed"
    assert first["neurological_involvement"] is True
    plan = first["treatment"]
    assert plan["regimen"] == "im_neurological" and plan["under_way"] is False
    loading = [d["date"] for d in plan["schedule"] if d["phase"] == "loading"]
    maintenance = [d["date"] for d in plan["schedule"] if d["phase"] == "maintenance"]
    assert loading[0] == start.isoformat() and len(loading) > 40  # alternate days, 3 months
    for when in loading:
        dose(capsys, pid, when)

    review = plan["review_dates"][0]
    for symptom, rating in (
        ("leg_weakness", "moderate"),
        ("paresthesia", "mild"),
        ("difficulty_walking", "mild"),
    ):
        ok(capsys, f"record symptom {pid} --symptom {symptom} --rating {rating} --date {review}")
    ok(capsys, f"patient assess {pid} --as-of {review}")

    first_maintenance = dt.date.fromisoformat(maintenance[0])
    assert first_maintenance <= TODAY
    out = dose(capsys, pid, maintenance[0])
    next_due = add_months(first_maintenance, 2)
    assert out.splitlines()[1] == (
        f"Next dose due {next_due}: hydroxocobalamin 1 mg IM (maintenance)."
    )

    # Before the next maintenance dose falls due: listed as due, nothing overdue.
    ahead = (next_due - TODAY).days + 1
    items = json.loads(ok(capsys, f"due --within {ahead}d --json"))
    mine = [i for i in items if i["patient_id"] == pid]
    assert {"kind": "dose_due", "date": next_due.isoformat(), "overdue": False}.items() <= (
        next(i for i in mine if i["date"] == next_due.isoformat()).items()
    )
    assert not any(i["overdue"] for i in mine)

    # Three weeks after it was due (the grace period is two), with no dose recorded.
    late = next_due + dt.timedelta(days=21)
    items = json.loads(ok(capsys, f"due --as-of {late} --json"))
    assert items[0]["kind"] == "maintenance_overdue" and items[0]["overdue"] is True
    assert items[0]["patient_id"] == pid and items[0]["date"] == next_due.isoformat()
    assert "21 days ago" in items[0]["text"]
    table = ok(capsys, f"due --as-of {late} --within 9w")
    assert table.index("Overdue") < table.index("Due from")
    assert "Maintenance" in table

    record = show(capsys, pid, f"--as-of {late}")
    assert set(record) == {"patient", "history", "assessment"}
    assert [w["id"] for w in record["assessment"]["warnings"]].count("maintenance_overdue") == 1
    assert record["assessment"]["treatment"]["overdue_since"] == next_due.isoformat()
    assert [s["as_of"] for s in record["history"]["assessments"]] == [start.isoformat(), review]
    assert record["history"]["assessments"][0]["planned_doses"][0] == {
        "date": start.isoformat(),
        "dose": "1 mg",
        "phase": "loading",
    }
    actions = [(e["action"], e["entity"]) for e in record["history"]["audit"]]
    assert actions[0] == ("create", "patient")
    assert actions.count(("create", "dose")) == len(loading) + 1
    assert actions.count(("assess", "assessment")) == 2
    assert all(e["actor"].startswith("cli:") for e in record["history"]["audit"])
    p = record["patient"]
    assert [c["id"] for c in p["conditions"]] == ["pernicious_anemia"]
    assert len(p["doses"]) == len(loading) + 1
    assert p["doses"][0]["given_by"] == "Nurse Okafor"
    legs = [r["rating"] for r in p["symptom_ratings"] if r["symptom"] == "leg_weakness"]
    assert legs == ["severe", "moderate"]

    text = ok(capsys, f"patient show {pid} --as-of {late}")
    for expected in (
        "Margaret Hale",
        "Lab results",
        "severe",
        "B12 given",
        "Assessments kept",
        "Audit trail",
        "Maintenance",
    ):
        assert expected in text


def test_a_dose_given_on_the_day_is_not_listed_as_due(capsys, db: Path) -> None:
    pid = add_patient(capsys, "--condition pernicious_anemia")
    ok(capsys, f"record lab {pid} --test total_b12 --value 100 --unit pg/mL --date {day(-3)}")
    ok(capsys, f"record symptom {pid} --symptom leg_weakness --rating severe --date {day(-3)}")
    out = dose(capsys, pid, day(0))
    assert out.splitlines()[1] == f"Next dose due {day(2)}: hydroxocobalamin 1 mg IM (loading)."
    items = json.loads(ok(capsys, "due --within 5 --json"))
    assert [(i["kind"], i["date"]) for i in items] == [("dose_due", day(2)), ("dose_due", day(4))]


# -- the patient commands --------------------------------------------------------------


def test_patient_add_prints_only_the_new_id_and_list_shows_the_latest_assessment(
    capsys, db: Path
) -> None:
    pid = add_patient(capsys, "--diet vegan --profile bsh-2014")
    rows = json.loads(ok(capsys, "patient list --json"))
    assert rows == [
        {
            "id": pid,
            "name": "Margaret Hale",
            "birth_date": "1958-04-12",
            "age_years": rows[0]["age_years"],
            "sex": "female",
            "last_assessment": None,
        }
    ]
    assert rows[0]["age_years"] >= 67
    ok(capsys, f"patient assess {pid}")
    (row,) = json.loads(ok(capsys, "patient list --json"))
    assert row["last_assessment"]["as_of"] == TODAY.isoformat()
    assert row["last_assessment"]["urgency"] in ("routine", "soon", "self_care", "urgent")
    assert "Margaret Hale" in ok(capsys, "patient list")
    saved = ok(capsys, f"patient assess {pid} --as-of {day(-1)}")
    assert saved.startswith(f"Assessment 2 of {pid} as of {day(-1)} kept")
    assert "profile bsh-2014" in saved.splitlines()[0]


def test_patient_ids_are_read_as_people_type_them(capsys, db: Path) -> None:
    pid = add_patient(capsys)
    assert show(capsys, pid.lower())["patient"]["id"] == pid


def test_patient_update_changes_what_the_engine_reads_and_audits_it(capsys, db: Path) -> None:
    pid = add_patient(capsys)
    out = ok(
        capsys,
        f"patient update {pid} --diet vegetarian --pregnant",
        "--add-condition chronic_kidney_disease --egfr 38",
        "--start-medication metformin --since 2019-03-01 --add-exposure nitrous_oxide",
    )
    assert out.startswith(f"{pid} updated: ") and "metformin" in out
    ok(
        capsys,
        f"patient update {pid} --stop-medication metformin --on {day(-10)}",
        "--end-exposure nitrous_oxide --not-pregnant",
    )
    same = ok(capsys, f"patient update {pid} --diet vegetarian")
    assert same == f"{pid}: nothing changed\n"
    p = show(capsys, pid)["patient"]
    assert p["diet"] == "vegetarian" and p["pregnant"] is False
    assert p["conditions"] == [
        {"id": "chronic_kidney_disease", "egfr": 38.0, "recorded_on": TODAY.isoformat()}
    ]
    assert p["medications"] == [{"id": "metformin", "since": "2019-03-01", "stopped": day(-10)}]
    assert p["exposures"] == [{"id": "nitrous_oxide", "ongoing": False}]
    updates = [e for e in show(capsys, pid)["history"]["audit"] if e["action"] == "update"]
    assert len(updates) == 2
    assert updates[1]["detail"]["medications_stopped"] == [{"id": "metformin", "on": day(-10)}]
    # Started again: the same exposure, ongoing once more (never a second, duplicate row,
    # which the engine would refuse), and adding it again changes nothing.
    ok(capsys, f"patient update {pid} --add-exposure nitrous_oxide")
    again = ok(capsys, f"patient update {pid} --add-exposure nitrous_oxide")
    assert again == f"{pid}: nothing changed\n"
    assert show(capsys, pid)["patient"]["exposures"] == [{"id": "nitrous_oxide", "ongoing": True}]


def test_patients_of_another_practice_are_not_found(capsys, db: Path) -> None:
    add_patient(capsys)  # creates the database
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO practices (id, name, created_at) VALUES (2, 'Riverside Surgery', ?)",
            (dt.datetime.now(dt.UTC).isoformat(),),
        )
    other = ok(
        capsys,
        "patient add --name 'Tom Riverside' --birth-date 1970-01-01 --sex male",
        "--practice 'riverside surgery'",
    ).strip()
    listed = json.loads(ok(capsys, "patient list --json --practice 'Riverside Surgery'"))
    assert [r["id"] for r in listed] == [other]
    code, out, err = run(capsys, f"patient show {other}")
    assert code == 2 and out == ""
    assert err == f"b12dx: error: patient: no patient {other!r} in this practice\n"


def test_db_option_chooses_the_database(capsys, db: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sqlite3"
    pid = ok(
        capsys,
        "patient add --name 'A N Other' --birth-date 1980-02-02 --sex other --db",
        f"sqlite:///{elsewhere}",
    ).strip()
    assert json.loads(ok(capsys, "patient list --json")) == []
    listed = json.loads(ok(capsys, "patient list --json --db", elsewhere))
    assert listed[0]["id"] == pid


# -- bad input: exit 2, one message naming the option, nothing changed ----------------

FUTURE = day(1)
DOSE = "--drug hydroxocobalamin --dose '1 mg' --route im --batch-not-recorded --site-not-recorded"
NEW = "patient add --name N --birth-date 1970-01-01"

BAD_INPUT: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "unknown patient",
        "record lab ZZZZ9999 --test total_b12 --value 150 --unit pg/mL --date {past}",
        ("patient:", "'ZZZZ9999'"),
    ),
    (
        "dose in the future",
        f"record dose {{pid}} --date {FUTURE} {DOSE}",
        ("--date:", "in the future"),
    ),
    (
        "wrong lab unit",
        "record lab {pid} --test total_b12 --value 150 --unit mg/dL --date {past}",
        ("--unit", "pg/mL", "pmol/L"),
    ),
    (
        "impossible lab value",
        "record lab {pid} --test mcv --value 900 --unit fL --date {past}",
        ("--value",),
    ),
    (
        "bad date",
        "record symptom {pid} --symptom leg_weakness --rating mild --date 2025-02-30",
        ("--date:", "YYYY-MM-DD"),
    ),
    (
        "unknown rating",
        "record symptom {pid} --symptom leg_weakness --rating terrible --date {past}",
        ("--rating:", "none, mild, moderate"),
    ),
    (
        "unknown symptom",
        "record symptom {pid} --symptom sore_toe --rating mild --date {past}",
        ("--symptom:", "leg_weakness"),
    ),
    (
        "unknown drug",
        "record dose {pid} --date {past} --drug b12 --dose '1 mg' --route im --batch B1 --site arm",
        ("--drug:", "hydroxocobalamin"),
    ),
    (
        "dose not a dose",
        "record dose {pid} --date {past} --drug hydroxocobalamin --dose one --route im --batch B1 "
        "--site arm",
        ("--dose:", "mg or micrograms"),
    ),
    (
        "same dose twice",
        f"record dose {{pid}} --date {{dosed}} {DOSE}",
        ("--dose:", "already recorded"),
    ),
    ("bad --within", "due --within soon", ("--within:", "7d, 2w, 1m")),
    ("--within too far", "due --within 400", ("--within:", "366")),
    ("unknown --practice", "patient list --practice Nowhere", ("--practice:", "Local practice")),
    (
        "unknown condition",
        f"{NEW} --sex female --condition flu",
        ("--condition:", "pernicious_anemia"),
    ),
    ("unknown sex", f"{NEW} --sex f", ("--sex:", "female, male")),
    (
        "birth in the future",
        f"patient add --name N --birth-date {FUTURE} --sex male",
        ("--birth-date:", "in the future"),
    ),
    ("unknown profile", f"{NEW} --sex male --profile who", ("nice-ng239",)),
    ("stop without --on", "patient update {pid} --stop-medication metformin", ("--on:",)),
    (
        "stop what is not taken",
        "patient update {pid} --stop-medication proton_pump_inhibitor --on {past}",
        ("--stop-medication:", "'proton_pump_inhibitor'", "not recorded as taken now"),
    ),
    (
        "stop before the start",
        "patient update {pid} --stop-medication metformin --on 2018-12-31",
        ("--on:", "before metformin was started (2019-01-01)"),
    ),
    (
        "end an exposure not recorded",
        "patient update {pid} --end-exposure alcohol_excess",
        ("--end-exposure:", "'alcohol_excess' is not recorded as ongoing"),
    ),
    ("pregnant man", "patient update {man} --pregnant", ("--pregnant:", "male")),
    (
        "remove what is not there",
        "patient update {pid} --remove-condition celiac_disease",
        ("--remove-condition:",),
    ),
    (
        "eGFR without kidney disease",
        "patient update {pid} --egfr 40",
        ("--egfr:", "chronic_kidney_disease"),
    ),
    ("--as-of before birth", "patient show {pid} --as-of 1950-01-01", ("--as-of:", "birth")),
    ("unreadable backup", "restore {notes}", ("backup:", "not a b12dx backup")),
    ("missing backup", "restore {missing}", ("backup:", "does not exist")),
    ("restore over patients", "restore {backup}", ("restore:", "--replace")),
    ("backup into no folder", "backup {nofolder}", ("FILE:",)),
    ("export into no folder", "patient export {pid} --out {nofolder}", ("--out:",)),
    ("import not JSON", "patient import {notes}", ("JSON",)),
    (
        "import wrong unit",
        "patient import {unit}",
        ("Observation/b12.valueQuantity.unit:", "pg/mL"),
    ),
    (
        "import invalid FHIR",
        "patient import {notfhir}",
        ("Observation/b12.valueQuantity.value: not valid FHIR R4",),
    ),
    (
        "import lab in the future",
        "patient import {future}",
        ("Observation/b12.effectiveDateTime:", "in the future"),
    ),
]


def _bad_bundle(tmp_path: Path, name: str, **observation: Any) -> Path:
    obs = {
        "resourceType": "Observation",
        "id": "b12",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
        "effectiveDateTime": day(-30),
        "valueQuantity": {"value": 150, "unit": "mmol/L"},
    } | observation
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"text": "X Y"}],
        "birthDate": "1950-01-01",
        "gender": "male",
    }
    path = tmp_path / f"{name}.json"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [patient, obs]}
    bundle["entry"] = [{"resource": r} for r in (patient, obs)]
    path.write_text(json.dumps(bundle))
    return path


@pytest.mark.parametrize(
    ("command", "expected"),
    [(c, e) for _, c, e in BAD_INPUT],
    ids=[n for n, _, _ in BAD_INPUT],
)
def test_bad_input_exits_2_with_one_message_and_changes_nothing(
    capsys, db: Path, tmp_path: Path, command: str, expected: tuple[str, ...]
) -> None:
    pid = add_patient(capsys)
    man = ok(capsys, "patient add --name 'Tom Hale' --birth-date 1956-01-02 --sex male").strip()
    ok(capsys, f"record lab {pid} --test total_b12 --value 150 --unit pg/mL --date {day(-20)}")
    ok(capsys, f"patient update {pid} --start-medication metformin --since 2019-01-01")
    dose(capsys, pid, day(-10))
    backup = tmp_path / "clinic.b12dx-backup"
    ok(capsys, "backup", backup)
    (tmp_path / "notes.txt").write_text("not a backup")
    pg_ml = {"value": 150, "unit": "pg/mL"}
    values = {
        "pid": pid,
        "man": man,
        "past": day(-5),
        "dosed": day(-10),
        "backup": backup,
        "notes": tmp_path / "notes.txt",
        "missing": tmp_path / "nothing-here",
        "nofolder": tmp_path / "no" / "such" / "folder.json",
        "unit": _bad_bundle(tmp_path, "unit"),
        "notfhir": _bad_bundle(tmp_path, "notfhir", valueQuantity={"value": "lots"}),
        "future": _bad_bundle(tmp_path, "future", effectiveDateTime=FUTURE, valueQuantity=pg_ml),
    }
    before = contents(db)
    code, out, err = run(capsys, command.format(**values))
    assert code == 2, err
    assert out == ""
    assert err.startswith("b12dx: error: ") and err.count("b12dx: error:") == 1, err
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err, err
    assert contents(db) == before


def test_a_dose_that_does_not_fit_the_regimens_is_refused_saying_why_unless_forced(
    capsys, db: Path, kb
) -> None:
    """A dose a day after the last hydroxocobalamin IM (no regimen gives it more often than
    alternate days), and 10 mg IM (its regimens give 1 mg): each is a slip until the
    nurse says otherwise with --force. The amounts and intervals are the knowledge base's:
    cyanocobalamin IM daily and 100 micrograms fit its US-label regimen."""
    pid = add_patient(capsys)
    dose(capsys, pid, day(-10))
    im = "--drug hydroxocobalamin --route im --batch-not-recorded --site-not-recorded"
    for command, option, why, accepted in (
        (
            f"record dose {pid} --date {day(-9)} --dose '1 mg' {im}",
            "--date",
            f"{day(-9)} is 1 day after the previous hydroxocobalamin IM dose ({day(-10)}); "
            "no regimen in the knowledge base gives hydroxocobalamin IM more often than every "
            "2 days",
            "a date 2 days or more from another hydroxocobalamin IM dose",
        ),
        (
            f"record dose {pid} --date {day(-11)} --dose '1 mg' {im}",
            "--date",
            f"{day(-11)} is 1 day before the next hydroxocobalamin IM dose ({day(-10)}); "
            "no regimen in the knowledge base gives hydroxocobalamin IM more often than every "
            "2 days",
            "a date 2 days or more from another hydroxocobalamin IM dose",
        ),
        (
            f"record dose {pid} --date {day(-5)} --dose '10 mg' {im}",
            "--dose",
            "10 mg is not a dose of hydroxocobalamin IM in any of the knowledge base's regimens",
            "1 mg (im_neurological, im_standard)",
        ),
        (
            f"record dose {pid} --date {day(-5)} --dose '1 mg' --drug cyanocobalamin --route im "
            "--batch-not-recorded --site-not-recorded",
            "--dose",
            "1 mg is not a dose of cyanocobalamin IM in any of the knowledge base's regimens",
            "100 micrograms (us_label_cyanocobalamin)",
        ),
    ):
        before = contents(db)
        code, out, err = run(capsys, command)
        assert code == 2 and out == ""
        assert err == (
            f"b12dx: error: invalid input: {option}: {why} (accepted: {accepted}; or --force "
            "to record it as given)\n"
        )
        assert contents(db) == before
        recorded = ok(capsys, command, "--force")
        assert recorded.startswith(f"Recorded for {pid}")
    doses = show(capsys, pid)["patient"]["doses"]
    assert [d["date"] for d in doses] == [day(-11), day(-10), day(-9), day(-5), day(-5)]
    audit = show(capsys, pid)["history"]["audit"]
    confirmed = [e["detail"].get("confirmed") for e in audit if e["entity"] == "dose"]
    assert confirmed[0] is None and all(confirmed[1:]), confirmed
    # What the knowledge base allows goes through without a word.
    cyano = "--drug cyanocobalamin --route im --dose '100 micrograms' --batch C1 --site arm"
    ok(capsys, f"record dose {pid} --date {day(-3)} {cyano}")
    ok(capsys, f"record dose {pid} --date {day(-2)} {cyano}")
    regimens = [r for r in kb.regimens.values() if r.drug == "cyanocobalamin" and r.route == "im"]
    assert min(r.shortest_interval_days for r in regimens) == 1


def test_an_unusable_database_url_is_an_error_naming_it(capsys, db: Path) -> None:
    code, out, err = run(capsys, "patient list --db mysql://clinic/b12")
    assert code == 2 and out == ""
    assert err.startswith("b12dx: error: database 'mysql' is not supported")


@pytest.mark.parametrize("how", ["--db", "B12DX_DATABASE_URL"])
def test_a_database_in_a_folder_that_does_not_exist_is_refused_and_nothing_is_made(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A mistyped folder would otherwise be a new, empty database ("No patients yet"), as
    if every patient had gone."""
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path / "data"))
    missing = tmp_path / "nonexistent" / "dir"
    target = missing / "x.sqlite3"
    if how == "--db":
        command: tuple[str | Path, ...] = ("patient list --db", target)
    else:
        monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{target}")
        command = ("patient list",)
    code, out, err = run(capsys, *command)
    assert code == 2 and out == ""
    assert err == (
        f"b12dx: error: {how}: the folder {missing} does not exist (accepted: a database file "
        "in a folder that exists; b12dx makes folders only for its default database)\n"
    )
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "data").exists()


def test_a_new_database_is_announced_on_standard_error_once(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file in an existing folder is made as asked, and every command that makes a
    database says where; the default one is made with its data directory."""
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    data = tmp_path / "not" / "there" / "yet"
    monkeypatch.setenv("B12DX_DATA_DIR", str(data))
    code, out, err = run(capsys, "patient list")
    assert code == 0 and "No patients yet" in out
    assert err == f"b12dx: Created a new database at {data / 'b12dx.sqlite3'}\n"
    assert run(capsys, "patient list")[2] == ""

    clinic = tmp_path / "clinic.sqlite3"
    for command in ("due --db", "practice list --db", "backup {} --db"):
        if clinic.exists():
            clinic.unlink()
        words = command.split(" ")
        parts = [str(tmp_path / "b.gz") if w == "{}" else w for w in words]
        code, _, err = run(capsys, *parts, clinic)
        assert code == 0, err
        assert err.startswith(f"b12dx: Created a new database at {clinic}\n"), (command, err)


@pytest.mark.parametrize(
    ("text", "days"), [("7", 7), ("7d", 7), ("2w", 14), ("1m", 30), ("3M", 90), (" 10 d ", 10)]
)
def test_within_reads_days_weeks_and_30_day_months(text: str, days: int) -> None:
    assert parse_within(text) == days


# -- FHIR export and import ------------------------------------------------------------


def _full_patient(capsys: pytest.CaptureFixture[str]) -> str:
    """A patient with one of everything the store keeps."""
    pid = add_patient(
        capsys,
        "--condition pernicious_anemia --diet vegan --ethnicity black_african_or_caribbean",
        "--profile bsh-2014",
    )
    ok(
        capsys,
        f"patient update {pid} --add-condition chronic_kidney_disease --egfr 44.5",
        "--start-medication metformin --since 2018-06-01 --add-exposure nitrous_oxide",
        "--breastfeeding",
    )
    ok(capsys, f"patient update {pid} --start-medication proton_pump_inhibitor --since 2020-01-01")
    ok(
        capsys,
        f"patient update {pid} --stop-medication proton_pump_inhibitor --on {day(-100)}",
        "--end-exposure nitrous_oxide",
    )
    for lab in (
        "--test total_b12 --value 95 --unit pmol/L --reference-low 150 --reference-high 700",
        "--test total_b12 --value 310 --unit pg/ml",
        "--test mma --value 0.61 --unit µmol/L",
        "--test egfr --value 44 --unit mL/min/1.73m2",
        "--test intrinsic_factor_antibody --value positive",
    ):
        ok(capsys, f"record lab {pid} {lab} --date {day(-90)}")
    for symptom, rating, when in (
        ("leg_weakness", "severe", -90),  # no SNOMED CT code: b12dx's own code
        ("paresthesia", "moderate", -90),
        ("paresthesia", "none", -10),
    ):
        ok(capsys, f"record symptom {pid} --symptom {symptom} --rating {rating} --date {day(when)}")
    dose(capsys, pid, day(-60))
    ok(
        capsys,
        f"record dose {pid} --date {day(-58)} --drug cyanocobalamin",
        "--dose '1000 micrograms' --route oral --batch-not-recorded",
    )
    return pid


def _clinical(bundle: dict[str, Any]) -> Any:
    """The Bundle without what names this copy (ids, references, the export's time)."""

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            skip = {"id", "fullUrl", "reference", "timestamp", "identifier"}
            return {k: strip(v) for k, v in o.items() if k not in skip}
        if isinstance(o, list):
            return [strip(x) for x in o]
        return o

    return strip(bundle)


def test_export_import_export_gives_the_same_clinical_content(
    capsys, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _full_patient(capsys)
    first = json.loads(ok(capsys, f"patient export {pid}"))
    get_fhir_model_class("Bundle").model_validate(first)
    for entry in first["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    path = tmp_path / "margaret.json"
    path.write_text(json.dumps(first))

    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    code, out, err = run(capsys, "patient import", path)
    assert code == 0, err
    new = out.strip()
    assert PATIENT_ID.match(out) and new != pid
    assert f"{len(first['entry'])} resources used, 0 not" in err
    second = json.loads(ok(capsys, f"patient export {new}"))
    assert _clinical(second) == _clinical(first)

    imported = show(capsys, new)["patient"]
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{db}")
    original = show(capsys, pid)["patient"]
    for p in (imported, original):
        for key in ("id", "created_at", "age_years"):
            p.pop(key)
        for entries in (p["labs"], p["symptom_ratings"], p["doses"]):
            for e in entries:
                e.pop("recorded_at"), e.pop("recorded_by")
    assert imported == original
    audit = show(capsys, pid)["history"]["audit"]
    assert audit[-1]["action"] == "export"
    assert audit[-1]["detail"]["resources"] == len(first["entry"])


def test_importing_a_patients_own_export_is_refused_or_replaces_the_record_with_replace(
    capsys, db: Path, tmp_path: Path
) -> None:
    """The export names its patient's b12dx id: imported back it would be a second copy of
    the person (every dose twice in the due list), so it is refused naming the patient,
    and with --replace the record becomes the file's, under the same id, audited."""
    pid = _full_patient(capsys)
    exported = json.loads(ok(capsys, f"patient export {pid}"))
    path = tmp_path / "margaret.json"
    path.write_text(json.dumps(exported))
    before = contents(db)
    code, out, err = run(capsys, "patient import", path)
    assert code == 2 and out == ""
    assert err == (
        f"b12dx: error: invalid input: FILE: the file's patient {pid} is already held here "
        "under that id (Margaret Hale, born 1958-04-12); importing it again would make a "
        "second copy of the person (accepted: --replace to replace that patient's record "
        "with the file's)\n"
    )
    assert contents(db) == before

    dose(capsys, pid, day(-3))  # given after the export: the file's record has no such dose
    ok(capsys, f"patient assess {pid}")
    # One transaction: a value refused half way leaves the record as it was.
    spoilt = copy.deepcopy(exported)
    lab = next(e["resource"] for e in spoilt["entry"] if "valueQuantity" in e["resource"])
    lab["valueQuantity"] |= {"unit": "furlongs", "code": "furlongs"}
    (tmp_path / "spoilt.json").write_text(json.dumps(spoilt))
    before = contents(db)
    code, _, err = run(capsys, "patient import --replace", tmp_path / "spoilt.json")
    assert code == 2 and "valueQuantity.unit" in err, err
    assert contents(db) == before
    code, out, err = run(capsys, "patient import --replace", path)
    assert code == 0, err
    assert out == f"{pid}\n"
    assert f"Replaced the record of {pid}: {len(exported['entry'])} resources used" in err
    assert [p["id"] for p in json.loads(ok(capsys, "patient list --json"))] == [pid]
    data = show(capsys, pid)
    assert [d["date"] for d in data["patient"]["doses"]] == [day(-60), day(-58)]
    assert len(data["history"]["assessments"]) == 1  # the saved assessment is history
    actions = [e["action"] for e in data["history"]["audit"]]
    assert actions[-1] == "import" and "replace" in actions
    (replaced,) = [e for e in data["history"]["audit"] if e["action"] == "replace"]
    assert replaced["detail"]["removed"]["doses"] == 3
    again = json.loads(ok(capsys, f"patient export {pid}"))
    assert _clinical(again) == _clinical(exported)
    due = json.loads(ok(capsys, "due --within 366 --json"))
    dated = [(i["kind"], i["date"]) for i in due]
    assert len(dated) == len(set(dated)), dated


def test_a_file_imported_into_another_database_is_recognised_there_too(
    capsys, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy made there has its own id; the import's audit entry keeps the file's, so
    the same file imported again is refused naming the copy."""
    pid = _full_patient(capsys)
    path = tmp_path / "margaret.json"
    path.write_text(ok(capsys, f"patient export {pid}"))
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    copy = ok(capsys, "patient import", path).strip()
    code, out, err = run(capsys, "patient import", path)
    assert code == 2 and out == ""
    assert f"the file's patient {pid} is already held here as {copy} (Margaret Hale" in err
    assert "--replace" in err
    assert ok(capsys, "patient import --replace", path) == f"{copy}\n"
    assert [p["id"] for p in json.loads(ok(capsys, "patient list --json"))] == [copy]


def _codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def test_exported_resources_carry_standard_codes(capsys, db: Path) -> None:
    pid = _full_patient(capsys)
    bundle = json.loads(ok(capsys, f"patient export {pid}"))
    assert bundle["type"] == "collection"
    res = [e["resource"] for e in bundle["entry"]]
    by_id = {r["id"]: r for r in res}
    patient = res[0]
    assert patient["resourceType"] == "Patient" and patient["id"] == pid
    assert patient["name"] == [{"text": "Margaret Hale"}]
    assert (patient["birthDate"], patient["gender"]) == ("1958-04-12", "female")

    pa = _codes(by_id["condition-1"]["code"])
    assert {("http://hl7.org/fhir/sid/icd-10", "D51.0"), (SNOMED, "84027009")} <= pa
    assert by_id["condition-2"]["extension"][0]["valueQuantity"]["value"] == 44.5

    ppi = by_id["medication-2"]
    assert ppi["status"] == "stopped"
    assert ppi["effectivePeriod"] == {"start": "2020-01-01", "end": day(-100)}
    assert by_id["medication-1"]["status"] == "active"
    assert "end" not in by_id["medication-1"]["effectivePeriod"]

    molar, mass = by_id["lab-1"], by_id["lab-2"]
    assert (LOINC, "14685-2") in _codes(molar["code"])  # [Moles/volume]
    assert (LOINC, "2132-9") in _codes(mass["code"])  # [Mass/volume]
    assert molar["valueQuantity"] == {
        "value": 95.0,
        "unit": "pmol/L",
        "system": UCUM,
        "code": "pmol/L",
    }
    assert molar["referenceRange"][0]["low"]["value"] == 150.0
    assert mass["valueQuantity"]["unit"] == "pg/ml" and mass["valueQuantity"]["code"] == "pg/mL"
    assert by_id["lab-4"]["valueQuantity"]["code"] == "mL/min/{1.73_m2}"
    assert (SNOMED, "10828004") in _codes(by_id["lab-5"]["valueCodeableConcept"])

    legs, tingling, gone = by_id["rating-1"], by_id["rating-2"], by_id["rating-3"]
    for r in (legs, tingling, gone):
        assert _codes(r["code"]) == {(LOINC, "75325-1")}
        assert _codes(r["component"][0]["code"]) == {(SNOMED, "246112005")}
    own = ("https://b12dx.org/fhir/CodeSystem/symptom", "leg_weakness")
    assert _codes(legs["valueCodeableConcept"]) == {own}
    for r, grade in ((legs, "24484000"), (tingling, "6736007"), (gone, "2667000")):
        assert (SNOMED, grade) in _codes(r["component"][0]["valueCodeableConcept"])
    assert (SNOMED, "2667000") in _codes(gone["interpretation"][0])
    assert "interpretation" not in tingling

    im, oral = by_id["dose-1"], by_id["dose-2"]
    assert ("http://www.whocc.no/atc", "B03BA03") in _codes(im["medicationCodeableConcept"])
    assert im["dosage"]["dose"] == {"value": 1.0, "unit": "mg", "system": UCUM, "code": "mg"}
    assert (SNOMED, "78421000") in _codes(im["dosage"]["route"])
    assert im["performer"] == [{"actor": {"display": "Nurse Okafor"}}]
    assert im["effectiveDateTime"] == day(-60)
    assert oral["dosage"]["dose"]["value"] == 1.0
    assert (SNOMED, "26643006") in _codes(oral["dosage"]["route"])


def test_b12dx_assess_reads_the_export(capsys, db: Path, tmp_path: Path) -> None:
    pid = _full_patient(capsys)
    path = tmp_path / "b.json"
    path.write_text(ok(capsys, f"patient export {pid}"))
    a = json.loads(ok(capsys, "assess", path, "--json"))
    assert a["fhir_input"]["patient"] == f"Patient/{pid}"
    used = {u["resource"] for u in a["fhir_input"]["used"]}
    assert {"Condition/condition-1", "Observation/lab-1", "MedicationAdministration/dose-1"} <= used


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _foreign_bundle() -> dict[str, Any]:
    """Another system's export: standard codes only, some resources b12dx does not use."""
    subject = {"reference": "urn:uuid:aa1"}
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "ehr-77",
            "name": [{"use": "official", "family": "Okonjo", "given": ["Ada"]}],
            "birthDate": "1949-11-30",
            "gender": "female",
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "clinicalStatus": _coded(clinical, "active"),
            "code": _coded("http://hl7.org/fhir/sid/icd-10-cm", "D51.0"),
            "recordedDate": "2024-03-02",
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "clinicalStatus": _coded(clinical, "resolved"),
            "code": _coded(SNOMED, "396331005"),
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": _coded(LOINC, "14685-2"),
            "effectiveDateTime": "2024-03-01T09:30:00Z",
            "valueQuantity": {
                "value": 88,
                "unit": "picomole per liter",
                "system": UCUM,
                "code": "pmol/L",
            },
        },
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "preliminary",
            "code": _coded(LOINC, "13964-2"),
            "effectiveDateTime": "2024-03-01",
            "valueQuantity": {"value": 0.9, "unit": "umol/L"},
        },
        {
            "resourceType": "Observation",
            "id": "o3",
            "status": "final",
            "code": _coded(LOINC, "75325-1"),
            "effectiveDateTime": "2024-03-01",
            "valueCodeableConcept": _coded(SNOMED, "26544005"),
            "component": [
                {"code": {"text": "severity"}, "valueCodeableConcept": _coded(SNOMED, "24484000")}
            ],
        },
        {
            "resourceType": "Observation",
            "id": "o4",
            "status": "final",
            "code": _coded(LOINC, "8867-4"),
            "effectiveDateTime": "2024-03-01",
            "valueQuantity": {"value": 72, "unit": "/min"},
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "m1",
            "status": "completed",
            "effectiveDateTime": "2024-03-05",
            "medicationCodeableConcept": _coded("http://www.whocc.no/atc", "B03BA03"),
            "performer": [{"actor": {"display": "Sr. Patel"}}],
            "dosage": {
                "route": _coded(SNOMED, "78421000"),
                "dose": {"value": 1000, "unit": "microgram", "system": UCUM, "code": "ug"},
            },
        },
        {
            "resourceType": "MedicationStatement",
            "id": "s1",
            "status": "active",
            "medicationCodeableConcept": {"text": "Metformin 500 mg tablets"},
            "effectivePeriod": {"start": "2016-05-01"},
        },
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}},
    ]
    for r in resources[1:]:
        r["subject"] = subject
    other = {
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        "subject": {"reference": "Patient/someone-else"},
        "code": _coded(LOINC, "2132-9"),
        "valueQuantity": {"value": 400, "unit": "pg/mL"},
    }
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in [*resources, other]]
    entries[0]["fullUrl"] = "urn:uuid:aa1"
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def test_import_reads_another_systems_codes_and_reports_what_it_leaves_out(
    capsys, db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "ehr.json"
    path.write_text(json.dumps(_foreign_bundle()))
    code, out, err = run(capsys, "patient import", path)
    assert code == 0, err
    pid = out.strip()
    for ref, why in (
        ("Condition/c2", "clinical status resolved"),
        ("Observation/o2", "status preliminary"),
        ("Observation/o4", "LOINC 8867-4"),
        ("Encounter/e1", "Encounter is not imported"),
        ("Observation/x1", "about another patient"),
    ):
        assert f"not imported: {ref}: " in err and why in err, (ref, err)
    p = show(capsys, pid)["patient"]
    assert p["name"] == "Ada Okonjo"
    assert p["conditions"] == [
        {"id": "pernicious_anemia", "egfr": None, "recorded_on": "2024-03-02"}
    ]
    labs = [(lab["test"], lab["value"], lab["unit"], lab["date"]) for lab in p["labs"]]
    assert labs == [("total_b12", 88.0, "pmol/L", "2024-03-01")]
    ratings = [(r["symptom"], r["rating"]) for r in p["symptom_ratings"]]
    assert ratings == [("muscle_weakness", "severe")]
    doses = [(d["drug"], d["dose_mg"], d["route"], d["given_by"]) for d in p["doses"]]
    assert doses == [("hydroxocobalamin", 1.0, "im", "Sr. Patel")]
    assert p["medications"] == [{"id": "metformin", "since": "2016-05-01", "stopped": None}]
    (entry,) = [e for e in show(capsys, pid)["history"]["audit"] if e["action"] == "import"]
    assert entry["detail"]["source"] == "ehr.json" and len(entry["detail"]["ignored"]) == 5


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ({"age_years": 67, "symptoms": [{"id": "paresthesia"}]}, "a b12dx patient record"),
        ({"resourceType": "Patient", "id": "p1"}, "a FHIR Patient resource"),
        ([{"resourceType": "Bundle"}], "a JSON array"),
    ],
    ids=["contract record", "lone Patient", "array"],
)
def test_import_of_a_file_that_is_not_a_bundle_says_what_it_is_and_what_is_taken(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any, what: str
) -> None:
    """Not "resourceType: is None" with the file's own kind listed as accepted: what the
    file is, what the import takes, and (for a contract record) what reads one. Said
    before any database is opened, so none is made."""
    target = tmp_path / "new.sqlite3"
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{target}")
    path = tmp_path / "record.json"
    path.write_text(json.dumps(content))
    code, out, err = run(capsys, "patient import", path)
    assert code == 2 and out == ""
    assert err.startswith(f"b12dx: error: invalid input: FILE: {path} is {what}"), err
    assert ", not a FHIR Bundle (accepted: a FHIR R4 Bundle of one patient, as `b12dx " in err
    assert "patient export` writes" in err and "resourceType" not in err
    assert ("`b12dx assess FILE`" in err) == (what == "a b12dx patient record"), err
    assert err.count("\n") == 1 and not target.exists()


def test_import_of_a_bundle_without_one_patient_is_refused(
    capsys, db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "two.json"
    person = {"resourceType": "Patient", "name": [{"text": "A"}], "birthDate": "1950-01-01"}
    two = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": person}] * 2}
    path.write_text(json.dumps(two))
    code, out, err = run(capsys, "patient import", path)
    assert code == 2 and out == ""
    assert "Patient: the Bundle holds 2 Patient resources (accepted: exactly one Patient)" in err
    nameless = {"resourceType": "Patient", "id": "p", "name": [{"text": "A"}]}
    one = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": nameless}]}
    path.write_text(json.dumps(one))
    code, out, err = run(capsys, "patient import", path)
    assert code == 2 and "Patient/p.birthDate: is missing" in err


# -- backup and restore ----------------------------------------------------------------


def test_backup_and_export_keep_an_existing_file_unless_forced(
    capsys, db: Path, tmp_path: Path
) -> None:
    """One rule for every command that writes a file, as synth's: what is there is kept,
    the message names the option and --force; with --force it is overwritten."""
    pid = add_patient(capsys)
    for command, option in (("backup {}", "FILE"), (f"patient export {pid} --out {{}}", "--out")):
        path = tmp_path / "mine.txt"
        path.write_text("mine")
        parts = [str(path) if w == "{}" else w for w in command.split(" ")]
        code, out, err = run(capsys, *parts)
        assert code == 2 and out == ""
        assert err == (
            f"b12dx: error: invalid input: {option}: {path} already exists (accepted: a new "
            "file name, or --force to overwrite it)\n"
        )
        assert path.read_text() == "mine"
        ok(capsys, *parts, "--force")
        assert path.read_bytes() != b"mine"
    audit = show(capsys, pid)["history"]["audit"]
    assert [e["action"] for e in audit].count("export") == 1  # the refused one left none


def test_backup_restored_into_a_new_database_shows_the_same_patient(
    capsys, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _full_patient(capsys)
    ok(capsys, f"patient assess {pid} --as-of {day(-30)}")
    as_of = f"--as-of {day(-5)}"
    before = show(capsys, pid, as_of)
    file = tmp_path / "nightly.b12dx-backup"
    out = ok(capsys, "backup", file)
    assert out.startswith(f"Backup written to {file}: ") and "1 patients" in out

    fresh = tmp_path / "restored.sqlite3"
    out = ok(capsys, "restore", file, "--db", f"sqlite:///{fresh}")
    assert out.startswith(f"Restored {file}: ") and "5 lab results" in out
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{fresh}")
    assert show(capsys, pid, as_of) == before

    # A second restore needs --replace, and then leaves the same patient.
    code, _, err = run(capsys, "restore", file)
    assert code == 2 and "--replace" in err
    ok(capsys, "restore", file, "--replace")
    assert show(capsys, pid, as_of) == before


def test_without_db_or_environment_the_default_file_is_used(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path / "data"))
    pid = add_patient(capsys)
    assert (tmp_path / "data" / "b12dx.sqlite3").exists()
    assert json.loads(ok(capsys, "patient list --json"))[0]["id"] == pid


def test_piped_patient_and_due_lists_keep_ids_and_statuses_whole(
    capsys, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped (not a terminal), where Rich lays tables out in 80 columns, a long name does
    not squeeze the other columns away: every patient id, status and urgency is there
    whole, never cut."""
    monkeypatch.delenv("COLUMNS", raising=False)
    long_name = "'Alexandra Konstantinopoulou-Vandermeer'"
    for born in ("1958-04-12", "1961-09-30"):
        pid = ok(capsys, f"patient add --name {long_name} --birth-date {born} --sex female")
        pid = pid.strip()
        ok(capsys, f"record lab {pid} --test total_b12 --value 100 --unit pg/mL --date {day(-3)}")
        ok(capsys, f"patient assess {pid}")
        dose(capsys, pid, day(0))
    listed = json.loads(ok(capsys, "patient list --json"))
    text = ok(capsys, "patient list")
    assert "…" not in text
    cells = [c.strip() for line in text.splitlines() for c in line.split("│")]
    words = " ".join(text.replace("│", " ").split())
    for row in listed:
        assert row["id"] in cells
        last = row["last_assessment"]
        for said in (last["deficiency_status"].replace("_", " "), last["urgency"]):
            assert all(w in words.split() for w in said.split()), said
    items = json.loads(ok(capsys, "due --within 30 --json"))
    text = ok(capsys, "due --within 30")
    assert items and "…" not in text
    cells = [c.strip() for line in text.splitlines() for c in line.split("│")]
    assert {i["patient_id"] for i in items} <= set(cells)


def test_a_route_typed_as_it_is_printed_is_recorded(capsys, db: Path) -> None:
    """Every output prints "IM": `--route IM` is that route, not an unknown one."""
    pid = ok(capsys, NEW, "--sex male --db", db).split()[-1]
    out = ok(
        capsys,
        f"record dose {pid} --date {day(-1)} --drug Hydroxocobalamin --dose '1 mg' --route IM",
        "--batch-not-recorded --site-not-recorded --db",
        db,
    )
    assert "hydroxocobalamin 1 mg IM" in out


def test_patient_assess_writes_a_result_as_assess_does(capsys, db: Path) -> None:
    """One number format on every door: a stored 140 is "140 ng/L", not "140.0 ng/L"."""
    pid = ok(capsys, NEW, "--sex male --db", db).split()[-1]
    ok(capsys, f"record lab {pid} --test total_b12 --value 140 --unit ng/L --date {day(-2)}",
       "--db", db)  # fmt: skip
    out = ok(capsys, f"patient assess {pid} --db", db)
    assert "140 ng/L" in out and "140.0" not in out
