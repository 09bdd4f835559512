"""Population screening: each gap at its boundaries on hand-built screening tables, units,
the Synthea export as of a date in its history, and the command's errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.model import rows_table, write_tables
from b12dx.screen.run import screen_tables

D = dt.date
AS_OF = D(2023, 6, 1)  # 12 calendar months back is 2022-06-01, 365 days
SYNTHEA = Path(__file__).parent / "fixtures" / "synthea-bulk-10"
B12_NG_L = 0.7378  # ng/L -> pmol/L (labs.yaml)


def _person(pid: str) -> dict[str, Any]:
    return {"person_id": pid, "birth_date": D(1950, 1, 1), "sex": "female", "death_date": None}


def gaps(
    tmp_path: Path, rows: dict[str, list[dict[str, Any]]], as_of: D = AS_OF
) -> set[tuple[str, str]]:
    kb = load_knowledge()
    people = {r["person_id"] for table in rows.values() for r in table} - {None}
    tables = {name: rows_table(name, table) for name, table in rows.items()}
    tables.setdefault("person", rows_table("person", [_person(p) for p in sorted(people)]))
    result = screen_tables(write_tables(tmp_path, tables), kb, kb.default_profile, as_of)
    return {(r["person_id"], r["gap"]) for r in result.gaps.to_pylist()}


def _b12(
    pid: str, days_before: int, value_si: float = 300.0, family: str = "molar"
) -> dict[str, Any]:
    return {
        "person_id": pid,
        "test": "total_b12",
        "value_si": value_si,
        "value_text": None,
        "unit_family": family,
        "date": AS_OF - dt.timedelta(days=days_before),
    }


def test_monitoring_due_when_the_last_b12_test_is_more_than_12_months_old(tmp_path: Path) -> None:
    metformin = [
        {
            "person_id": p,
            "medication_id": "metformin",
            "start_date": D(2018, 1, 1),
            "end_date": None,
        }
        for p in ("tested", "untested")
    ]
    found = gaps(
        tmp_path, {"medication": metformin, "lab": [_b12("tested", 364), _b12("untested", 366)]}
    )
    assert ("untested", "monitoring_due") in found
    assert ("tested", "monitoring_due") not in found


def test_untested_at_risk_needs_a_long_enough_ppi_course_and_a_sign(tmp_path: Path) -> None:
    def ppi(pid: str, days: int) -> dict[str, Any]:
        start = AS_OF - dt.timedelta(days=days)
        return {
            "person_id": pid,
            "medication_id": "proton_pump_inhibitor",
            "start_date": start,
            "end_date": None,
        }

    anemia = [
        {"person_id": p, "condition_id": "anemia", "start_date": D(2022, 1, 1), "end_date": None}
        for p in ("23m", "24m")
    ]
    # 24 months is 731 days counted as b12dx.fhir.record counts months (365.25 / 12 a month).
    found = gaps(
        tmp_path,
        {"medication": [ppi("23m", 700), ppi("24m", 731), ppi("nosign", 900)], "condition": anemia},
    )
    assert ("24m", "untested_at_risk") in found
    assert ("23m", "untested_at_risk") not in found
    assert ("nosign", "untested_at_risk") not in found


def test_indeterminate_is_followed_up_by_mma_within_91_days(tmp_path: Path) -> None:
    def mma(pid: str, days_after: int) -> dict[str, Any]:
        return {
            "person_id": pid,
            "test": "mma",
            "value_si": 0.3,
            "value_text": None,
            "unit_family": "molar",
            "date": AS_OF - dt.timedelta(days=200 - days_after),
        }

    labs = [
        _b12("on_time", 200, 200.0),
        _b12("late", 200, 200.0),
        mma("on_time", 89),
        mma("late", 92),
    ]
    found = gaps(tmp_path, {"lab": labs})
    assert ("late", "indeterminate_not_followed_up") in found
    assert ("on_time", "indeterminate_not_followed_up") not in found


def test_the_indeterminate_boundary_is_compared_in_the_unit_family_of_the_result(
    tmp_path: Path,
) -> None:
    # 180 ng/L is indeterminate (bounds inclusive) and 179 deficient; 133 pmol/L
    # indeterminate and 132 deficient (profiles.yaml nice-ng239).
    labs = [
        _b12("ng180", 200, 180 * B12_NG_L, "mass"),
        _b12("ng179", 200, 179 * B12_NG_L, "mass"),
        _b12("pmol133", 200, 133.0, "molar"),
        _b12("pmol132", 200, 132.0, "molar"),
    ]
    found = gaps(tmp_path, {"lab": labs})
    assert ("ng180", "indeterminate_not_followed_up") in found
    assert ("ng179", "deficient_untreated") in found
    assert ("pmol133", "indeterminate_not_followed_up") in found
    assert ("pmol132", "deficient_untreated") in found


def test_deficient_is_untreated_when_no_b12_starts_within_31_days(tmp_path: Path) -> None:
    def dose(pid: str, days_after: int) -> dict[str, Any]:
        return {
            "person_id": pid,
            "date": AS_OF - dt.timedelta(days=100 - days_after),
            "route": "im",
            "drug": "hydroxocobalamin",
        }

    labs = [_b12("treated", 100, 100.0), _b12("late", 100, 100.0)]
    found = gaps(tmp_path, {"lab": labs, "b12_dose": [dose("treated", 30), dose("late", 32)]})
    assert ("late", "deficient_untreated") in found
    assert ("treated", "deficient_untreated") not in found


def test_a_recorded_b12_deficiency_diagnosis_left_untreated_is_a_gap(tmp_path: Path) -> None:
    """A diagnosis of B12 deficiency (ICD-10 D51.9 read as b12_deficiency) with no B12
    given within a month is deficient and untreated, as a deficient result would be."""
    conditions = [
        {"person_id": p, "condition_id": "b12_deficiency", "start_date": D(2023, 1, 5),
         "end_date": None}
        for p in ("untreated", "treated")
    ]  # fmt: skip
    doses = [{"person_id": "treated", "date": D(2023, 1, 20), "route": "im",
              "drug": "hydroxocobalamin"}]  # fmt: skip
    found = gaps(tmp_path, {"condition": conditions, "b12_dose": doses})
    assert ("untreated", "deficient_untreated") in found
    assert ("treated", "deficient_untreated") not in found


def test_folic_acid_without_any_b12_test_or_treatment(tmp_path: Path) -> None:
    folic = [
        {
            "person_id": p,
            "medication_id": "folic_acid",
            "start_date": D(2023, 1, 1),
            "end_date": None,
        }
        for p in ("alone", "tested")
    ]
    found = gaps(tmp_path, {"medication": folic, "lab": [_b12("tested", 30)]})
    assert ("alone", "folic_acid_without_b12") in found
    assert ("tested", "folic_acid_without_b12") not in found


def test_folic_acid_in_pregnancy_is_not_the_folic_acid_gap(tmp_path: Path) -> None:
    """Folic acid in pregnancy prevents neural tube defects: a woman with a pregnancy
    recorded within 294 days (fhir.yaml pregnancy_max_days) is not listed; one whose
    pregnancy ended long ago is."""
    folic = [
        {
            "person_id": p,
            "medication_id": "folic_acid",
            "start_date": D(2023, 1, 1),
            "end_date": None,
        }
        for p in ("pregnant", "years_ago", "not_pregnant")
    ]
    findings = [
        {"person_id": "pregnant", "kind": "pregnancy", "id": "pregnant", "date": D(2023, 1, 10)},
        {"person_id": "years_ago", "kind": "pregnancy", "id": "pregnant", "date": D(2020, 3, 1)},
    ]
    found = gaps(tmp_path, {"medication": folic, "finding": findings})
    assert ("pregnant", "folic_acid_without_b12") not in found
    assert ("years_ago", "folic_acid_without_b12") in found
    assert ("not_pregnant", "folic_acid_without_b12") in found


def test_maintenance_overdue_after_the_interval_and_the_grace(tmp_path: Path) -> None:
    # Longest injection interval of nice-ng239 is 3 months (im_standard), grace 14 days:
    # a last dose on 2023-02-15 was due 2023-05-15, overdue after 2023-05-29.
    def doses(pid: str, last: D) -> list[dict[str, Any]]:
        return [
            {"person_id": pid, "date": day, "route": "im", "drug": "hydroxocobalamin"}
            for day in (last - dt.timedelta(days=90), last)
        ]

    rows = doses("overdue", D(2023, 2, 15)) + doses("in_grace", D(2023, 2, 18))
    found = gaps(tmp_path, {"b12_dose": rows})
    assert ("overdue", "maintenance_overdue") in found
    assert ("in_grace", "maintenance_overdue") not in found


def test_the_dead_and_children_are_not_screened(tmp_path: Path) -> None:
    people = [
        {
            "person_id": "dead",
            "birth_date": D(1950, 1, 1),
            "sex": "male",
            "death_date": D(2023, 1, 1),
        },
        {"person_id": "child", "birth_date": D(2010, 1, 1), "sex": "male", "death_date": None},
    ]
    metformin = [
        {
            "person_id": p,
            "medication_id": "metformin",
            "start_date": D(2020, 1, 1),
            "end_date": None,
        }
        for p in ("dead", "child")
    ]
    assert gaps(tmp_path, {"person": people, "medication": metformin}) == set()


def test_a_period_of_nobody_leaves_people_without_periods_screened(tmp_path: Path) -> None:
    """An observation period with no person_id belongs to nobody: the people who have no
    period are still screened as observed (it made NOT IN false for all of them)."""
    metformin = [
        {"person_id": "p", "medication_id": "metformin", "start_date": D(2018, 1, 1),
         "end_date": None}
    ]  # fmt: skip
    nobody = [{"person_id": None, "start_date": D(2000, 1, 1), "end_date": D(2001, 1, 1)}]
    rows = {"person": [_person("p")], "medication": metformin, "observation_period": nobody}
    assert gaps(tmp_path, rows) == {("p", "monitoring_due")}


def _synthea_metformin_users_alive_on(as_of: D) -> set[str]:
    """Read straight from the NDJSON: people alive on as_of with a metformin order on or
    before it and another within 400 days after it (a course still running), as Synthea
    writes yearly renewals. The export has no lab results, so nobody was tested."""
    import json

    alive = set()
    for line in (SYNTHEA / "Patient.000.ndjson").read_text().splitlines():
        r = json.loads(line)
        died = r.get("deceasedDateTime")
        if D.fromisoformat(r["birthDate"]) <= as_of and (
            died is None or D.fromisoformat(died[:10]) > as_of
        ):
            alive.add(r["id"])
    orders: dict[str, list[D]] = {}
    for line in (SYNTHEA / "MedicationRequest.000.ndjson").read_text().splitlines():
        r = json.loads(line)
        if "metformin" in json.dumps(r.get("medicationCodeableConcept", {})).lower():
            pid = r["subject"]["reference"].removeprefix("Patient/")
            orders.setdefault(pid, []).append(D.fromisoformat(r["authoredOn"][:10]))
    return {
        pid
        for pid, days in orders.items()
        if pid in alive
        and any(d <= as_of for d in days)
        and any(as_of < d <= as_of + dt.timedelta(days=400) for d in days)
    }


@pytest.mark.parametrize("as_of", ["1969-01-01", "1975-06-30", "1990-01-01", "1995-01-01"])
def test_synthea_long_term_metformin_users_alive_and_untested_are_monitoring_due(
    tmp_path: Path, as_of: str
) -> None:
    # One of the ten patients (79a66c97, born 1927, died 1994-11-11) has yearly metformin
    # orders from 1969-05-31: before them, and after the death, nobody is due.
    result = CliRunner().invoke(
        app, ["screen", str(SYNTHEA), "--out", str(tmp_path), "--as-of", as_of]
    )
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "gaps.parquet").to_pylist()
    due = {r["person_id"] for r in rows if r["gap"] == "monitoring_due"}
    expected = _synthea_metformin_users_alive_on(D.fromisoformat(as_of))
    assert due == expected
    assert ("79a66c97-6131-3213-f3c9-4606946ab056" in due) == (
        as_of in {"1975-06-30", "1990-01-01"}
    )
    for r in rows:
        if r["gap"] == "monitoring_due":
            assert r["reasons"].startswith("metformin since 19")
            assert "no B12 test since" in r["reasons"] and "none on record" in r["reasons"]
            assert r["rule_id"] == "screen.monitoring_due" and r["sources"]
    for name in ("gaps.csv", "summary.csv", "population.csv", "report.html"):
        assert (tmp_path / name).exists()
    assert "<svg" in (tmp_path / "report.html").read_text()
    assert not list(tmp_path.glob(".*.partial"))


def test_report_and_console_give_rates_per_1000_screened(tmp_path: Path) -> None:
    # Of the export's 13 patients, 4 are alive and 16 or older on 1990-01-01.
    result = CliRunner().invoke(
        app, ["screen", str(SYNTHEA), "--out", str(tmp_path), "--as-of", "1990-01-01"]
    )
    assert result.exit_code == 0, result.output
    import pyarrow.csv as pacsv

    population = pacsv.read_csv(tmp_path / "population.csv").to_pylist()
    screened = sum(r["people"] for r in population)
    born = (SYNTHEA / "Patient.000.ndjson").read_text().splitlines()
    assert (screened, len(born)) == (4, 13)
    assert f"{screened:,} people screened of {len(born):,} in the input" in " ".join(
        result.output.split()
    )
    per_1000 = f"{1000 / screened:.1f}"
    assert per_1000 in result.output  # one monitoring_due patient
    html = (tmp_path / "report.html").read_text()
    assert f"{per_1000}</td>" in html and "screen.monitoring_due" in html
    assert "mhra-2022-metformin" in html  # the rule's sources are named
    # What was not used is counted, not dropped silently: most of the export's
    # procedures and conditions are not about B12.
    resources = sum(len(p.read_text().splitlines()) for p in SYNTHEA.glob("*.ndjson"))
    said = " ".join(result.output.split())
    unused = int(said.split(" FHIR resources were not used")[0].split()[-1].replace(",", ""))
    assert 0 < unused < resources
    assert "What the input held that was not used" in html
    assert "Procedure code not in the knowledge base" in html


def test_synthetic_data_is_screened_as_of_the_date_it_was_made_for(tmp_path: Path) -> None:
    """Its histories end on synth's --as-of: screened as of today instead, the dated gaps
    were miscounted (maintenance_overdue 335 instead of 34). The date is said; an explicit
    --as-of wins; a manifest that gives no date is an error, not today."""
    import pyarrow.csv as pacsv

    from b12dx.synth.generate import generate

    made = tmp_path / "pop"
    made.mkdir()
    generate(600, made, "parquet", seed=0, as_of=D(2024, 3, 31))
    result = CliRunner().invoke(app, ["screen", str(made), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        f"as of 2024-03-31, the date the synthetic data was made for ({made}/b12dx-synth.json)"
        in said
    )
    assert "Care gaps as of 2024-03-31" in said
    explicit = CliRunner().invoke(
        app, ["screen", str(made), "--out", str(tmp_path / "b"), "--as-of", "2024-03-31"]
    )
    assert explicit.exit_code == 0 and "made for" not in explicit.output
    counts = [pacsv.read_csv(tmp_path / o / "summary.csv").to_pylist() for o in ("a", "b")]
    assert counts[0] == counts[1] and counts[0]
    later = CliRunner().invoke(
        app, ["screen", str(made), "--out", str(tmp_path / "c"), "--as-of", "2026-01-01"]
    )
    assert "Care gaps as of 2026-01-01" in " ".join(later.output.split())
    assert "made for" not in later.output

    (made / "b12dx-synth.json").write_text('{"as_of": "31/03/2024"}')
    broken = CliRunner().invoke(app, ["screen", str(made), "--out", str(tmp_path / "d")])
    assert broken.exit_code == 2
    assert "INPUT:" in broken.output and "b12dx-synth.json" in broken.output


def test_screen_keeps_an_out_folder_that_holds_files_unless_forced(tmp_path: Path) -> None:
    """As synth: results of an earlier run (or anything else) are not overwritten silently;
    --force writes over them."""
    args = ["screen", str(SYNTHEA), "--out", str(tmp_path), "--as-of", "1990-01-01"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (tmp_path / "gaps.csv").stat().st_mtime_ns
    again = CliRunner().invoke(app, [*args[:-1], "1995-01-01"])
    assert again.exit_code == 2
    said = " ".join(again.output.split())
    assert f"--out: {tmp_path} is not empty (accepted: a new or empty folder, or --force" in said
    assert (tmp_path / "gaps.csv").stat().st_mtime_ns == before
    forced = CliRunner().invoke(app, [*args[:-1], "1995-01-01", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "Care gaps as of 1995-01-01" in " ".join(forced.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["screen", "/no/such/folder", "--out", "OUT"], "INPUT"),
        (["screen", str(SYNTHEA), "--out", "OUT", "--engine", "oracle"], "--engine"),
        (["screen", str(SYNTHEA), "--out", "OUT", "--as-of", "1990-13-01"], "--as-of"),
        (["screen", str(SYNTHEA), "--out", "OUT", "--profile", "nope"], "profile"),
        (["screen", str(SYNTHEA), "--out", "OUT", "--spark-master", "local[1]"], "--spark-master"),
        (["screen", str(SYNTHEA), "--out", str(SYNTHEA / "README.md")], "--out"),
    ],
)
def test_screen_errors_exit_2_naming_the_option(
    tmp_path: Path, args: list[str], message: str
) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_the_report_is_a_worklist_most_urgent_first_with_each_gaps_list(tmp_path: Path) -> None:
    """Cards in clinical priority (a new finding to be seen now first, then deficient and
    untreated), in words, each with its
    count and its own list to download; the counts table can be filtered in the page."""
    import csv
    import re

    data, out = tmp_path / "in", tmp_path / "out"
    assert (
        CliRunner().invoke(app, ["synth", "--patients", "400", "--out", str(data)]).exit_code == 0
    )
    result = CliRunner().invoke(app, ["screen", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    kb = load_knowledge()
    from b12dx.screen.rules import GAPS

    assert sorted(kb.screening.gap_labels) == sorted(GAPS), "every gap has its words"
    cards = re.findall(r'<h3 id="card-([a-z0-9_]+)">(\d+)\. ([^<]+)</h3>', html)
    assert [c[0] for c in cards] == list(kb.screening.gap_labels)
    assert cards[0][0] == "new_finding" and cards[0][2].startswith("New finding to be seen now")
    assert cards[1][0] == "deficient_untreated" and cards[1][2] == "Deficient and not treated"
    with (out / "gaps.csv").open() as f:
        all_rows = list(csv.DictReader(f))
    for gap, _rank, _label in cards:
        with (out / f"gaps-{gap}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert rows == [r for r in all_rows if r["gap"] == gap]
        assert f'href="gaps-{gap}.csv" download>Download the list ({len(rows):,})' in html
    assert 'select id="f-gap" data-filter="gap"' in html and "<script>" in html
    assert "<main>" in html and 'name="viewport"' in html


def test_an_error_is_the_first_line_when_the_output_is_not_a_terminal(tmp_path: Path) -> None:
    """Piped or logged, the screen shows no progress bar, so an error is the first line
    (a bar used to leave a blank line before it)."""
    result = CliRunner().invoke(
        app, ["screen", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.output.startswith("b12dx: error: INPUT:"), repr(result.output[:40])
