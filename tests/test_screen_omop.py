"""Population screening from OMOP CDM 5.4 tables: the same synthetic population read as OMOP
CSV, OMOP Parquet and FHIR NDJSON gives the same gaps (a cross-check of both loaders), a
hand-built folder at the rules' boundaries read through source values and through the
concept table, and the errors for a missing table or column."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from b12dx.synth.generate import generate

D = dt.date
AS_OF = D(2023, 6, 1)  # 12 calendar months back is 2022-06-01
LOCAL = 2_000_000_001  # first local concept id

# (concept id, OMOP vocabulary, code) of every code the hand-built folder uses.
CONCEPTS = {
    "metformin": (LOCAL, "RxNorm", "6809"),
    "hydroxocobalamin": (LOCAL + 1, "RxNorm", "5514"),
    "b12_mass": (LOCAL + 2, "LOINC", "2132-9"),
    "type2_diabetes": (LOCAL + 3, "ICD10CM", "E11.9"),  # below E11 in the hierarchy
    "intramuscular": (LOCAL + 4, "SNOMED", "78421000"),
    "oral": (LOCAL + 5, "SNOMED", "26643006"),
}
OMOP_TABLES = (
    "person",
    "drug_exposure",
    "measurement",
    "condition_occurrence",
    "procedure_occurrence",
    "observation",
)


def _screen(source: Path, out: Path, as_of: D) -> list[dict[str, str]]:
    result = CliRunner().invoke(
        app, ["screen", str(source), "--out", str(out), "--as-of", as_of.isoformat()]
    )
    assert result.exit_code == 0, result.output
    with (out / "gaps.csv").open() as f:
        return sorted(csv.DictReader(f), key=lambda r: (r["person_id"], r["gap"]))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    kb = load_knowledge()
    base = tmp_path_factory.mktemp("synthetic")
    gaps = {}
    for fmt in ("omop", "parquet", "ndjson"):
        (base / fmt).mkdir()
        generate(3_000, base / fmt, fmt, seed=11, as_of=AS_OF, kb=kb)
        gaps[fmt] = _screen(base / fmt, base / f"out-{fmt}", AS_OF)
    return gaps


def test_omop_csv_omop_parquet_and_fhir_ndjson_give_the_same_gaps(
    synthetic: dict[str, list[dict[str, str]]],
) -> None:
    assert synthetic["omop"] == synthetic["ndjson"]
    assert synthetic["parquet"] == synthetic["ndjson"]


def test_the_synthetic_population_read_from_omop_holds_every_gap(
    synthetic: dict[str, list[dict[str, str]]],
) -> None:
    from b12dx.screen.rules import GAPS

    assert {r["gap"] for r in synthetic["parquet"]} == set(GAPS)


# --- a hand-built folder at the boundaries ------------------------------------------------


def _write(folder: Path, name: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = pa.table({c: [r.get(c) for r in rows] for c in columns}) if rows else None
    if table is None:
        (folder / f"{name}.csv").write_text(",".join(columns) + "\n")
    else:
        pacsv.write_csv(table, folder / f"{name}.csv")


def _hand_built(folder: Path, *, concept_table: bool) -> Path:
    """People 1..: each named in the comments by what the rules should find."""
    folder.mkdir()

    def code(key: str) -> dict[str, Any]:
        cid, _vocab, value = CONCEPTS[key]
        return {"concept": cid if concept_table else 0, "source": None if concept_table else value}

    def person(pid: int, year: int, month: int | None = 1, day: int | None = 1) -> dict[str, Any]:
        return {
            "person_id": pid,
            "gender_concept_id": 8532,
            "year_of_birth": year,
            "month_of_birth": month,
            "day_of_birth": day,
        }

    people = [person(p, 1950) for p in range(1, 9)]
    # 9: born in 2007, month and day unknown: taken as 2007-12-31, 15 on as_of.
    # 10: born in 2007 with a known day, 16 on as_of. 11: dead before as_of.
    people += [person(9, 2007, None, None), person(10, 2007, 1, 1), person(11, 1950)]

    def drug(pid: int, key: str, start: D, end: D | None = None, **more: Any) -> dict[str, Any]:
        c = code(key)
        return {
            "person_id": pid,
            "drug_concept_id": c["concept"],
            "drug_source_value": c["source"],
            "drug_exposure_start_date": start,
            "drug_exposure_end_date": end,
            **more,
        }

    def route(word: str) -> dict[str, Any]:
        c = code(word)
        return {"route_concept_id": c["concept"], "route_source_value": c["source"]}

    # Metformin current through days_supply (no end date): 1..4, 9..11.
    metformin = [drug(p, "metformin", D(2023, 1, 1), days_supply=365) for p in (1, 2, 9, 10, 11, 4)]
    # 3: metformin ended before as_of (end date given): not current, no monitoring due.
    metformin.append(drug(3, "metformin", D(2021, 1, 1), D(2021, 12, 31)))
    deficient_on = D(2023, 1, 1)
    doses = [
        # 5: deficient, B12 injected 31 days later: treated in time.
        drug(5, "hydroxocobalamin", deficient_on + dt.timedelta(days=31), **route("intramuscular")),
        # 6: deficient, injected 32 days later: untreated.
        drug(6, "hydroxocobalamin", deficient_on + dt.timedelta(days=32), **route("intramuscular")),
        # 7: deficient, oral B12 ordered 31 days later: a course, which treats.
        drug(7, "hydroxocobalamin", deficient_on + dt.timedelta(days=31), **route("oral")),
        # 8: two injections, the last on 2023-02-15: due 2023-05-15, past the grace 05-29.
        drug(8, "hydroxocobalamin", D(2022, 11, 15), **route("intramuscular")),
        drug(8, "hydroxocobalamin", D(2023, 2, 15), **route("intramuscular")),
    ]
    _write(folder, "person", people, list(people[0]))
    _write(
        folder,
        "drug_exposure",
        metformin + doses,
        [
            "person_id",
            "drug_concept_id",
            "drug_exposure_start_date",
            "drug_exposure_end_date",
            "days_supply",
            "route_concept_id",
            "route_source_value",
            "drug_source_value",
        ],
    )

    def b12(pid: int, day: D, value: float) -> dict[str, Any]:
        c = code("b12_mass")
        return {
            "person_id": pid,
            "measurement_concept_id": c["concept"],
            "measurement_source_value": c["source"],
            "measurement_date": day,
            "value_as_number": value,
            "unit_source_value": "pg/mL",
        }

    labs = [
        b12(1, D(2022, 6, 1), 400.0),  # 1: tested on the first day of the 12 months
        b12(2, D(2022, 5, 31), 400.0),  # 2: one day before it: monitoring due
        *(b12(p, deficient_on, 100.0) for p in (5, 6, 7)),  # 100 pg/mL: deficient
    ]
    _write(folder, "measurement", labs, list(labs[0]))
    t2d = code("type2_diabetes")
    _write(
        folder,
        "condition_occurrence",
        [
            {
                "person_id": 1,
                "condition_concept_id": t2d["concept"],
                "condition_source_value": t2d["source"],
                "condition_start_date": D(2015, 3, 1),
            }
        ],
        ["person_id", "condition_concept_id", "condition_start_date", "condition_source_value"],
    )
    _write(
        folder, "procedure_occurrence", [], ["person_id", "procedure_concept_id", "procedure_date"]
    )
    _write(folder, "observation", [], ["person_id", "observation_concept_id", "observation_date"])
    _write(
        folder,
        "death",
        [{"person_id": 11, "death_date": D(2023, 1, 1)}],
        ["person_id", "death_date"],
    )
    if concept_table:
        rows = [
            {"concept_id": cid, "vocabulary_id": vocab, "concept_code": value}
            for cid, vocab, value in CONCEPTS.values()
        ]
        _write(folder, "concept", rows, ["concept_id", "vocabulary_id", "concept_code"])
    return folder


EXPECTED = {
    ("2", "monitoring_due"),
    ("4", "monitoring_due"),
    ("10", "monitoring_due"),
    ("6", "deficient_untreated"),
    ("8", "maintenance_overdue"),
}


@pytest.mark.parametrize("concept_table", [False, True], ids=["source-values", "concept-table"])
def test_hand_built_omop_folder_at_the_rule_boundaries(tmp_path: Path, concept_table: bool) -> None:
    folder = _hand_built(tmp_path / "omop", concept_table=concept_table)
    rows = _screen(folder, tmp_path / "out", AS_OF)
    assert {(r["person_id"], r["gap"]) for r in rows} == EXPECTED


def test_icd10_codes_below_a_listed_code_and_lasting_courses_reach_the_tables(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    folder = _hand_built(tmp_path / "omop", concept_table=False)
    _screen(folder, tmp_path / "out", AS_OF)
    conditions = pq.read_table(tmp_path / "out" / "tables" / "condition.parquet").to_pylist()
    assert conditions == [
        {"person_id": "1", "condition_id": "type2_diabetes", "start_date": D(2015, 3, 1),
         "end_date": None}
    ]  # fmt: skip
    meds = pq.read_table(tmp_path / "out" / "tables" / "medication.parquet").to_pylist()
    course = next(m for m in meds if m["person_id"] == "1")
    assert course["end_date"] == D(2023, 12, 31)  # 365 days of supply from 2023-01-01


# --- errors -----------------------------------------------------------------------------


def test_a_missing_omop_table_is_named_with_exit_2(tmp_path: Path) -> None:
    folder = _hand_built(tmp_path / "omop", concept_table=False)
    (folder / "measurement.csv").unlink()
    result = CliRunner().invoke(app, ["screen", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "has no measurement table (measurement.csv or measurement.parquet)" in result.output


def test_a_missing_omop_column_is_named_with_its_file_and_exit_2(tmp_path: Path) -> None:
    folder = _hand_built(tmp_path / "omop", concept_table=False)
    (folder / "person.csv").write_text("person_id,gender_concept_id\n1,8532\n")
    result = CliRunner().invoke(app, ["screen", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{folder / 'person.csv'}: has no column year_of_birth" in result.output
