"""OMOP read the way OHDSI tools read it.

- OHDSI's own Eunomia "Synthea27Nj" CDM 5.4 dataset (tests/fixtures/eunomia-synthea27nj,
  as OHDSI ships it: upper-case file names, a concept subset) screens as it is, and the
  people counted are exactly those alive, adult and under observation on the date.
- A hand-built folder in OHDSI's layout for what the dataset cannot show: a drug product
  found through concept_ancestor to its ingredient, a non-standard code through "Maps
  to", a retired code through "Concept replaced by", observation periods, and the
  provenance filter (*_type_concept_id).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from omop_tables import unzip_eunomia

D = dt.date


def _screen(source: Path, out: Path, as_of: D, *extra: str) -> tuple[list[dict[str, str]], Any]:
    result = CliRunner().invoke(
        app, ["screen", str(source), "--out", str(out), "--as-of", as_of.isoformat(), *extra]
    )
    assert result.exit_code == 0, result.output
    with (out / "gaps.csv").open() as f:
        gaps = sorted(csv.DictReader(f), key=lambda r: (r["person_id"], r["gap"]))
    with (out / "population.csv").open() as f:
        population = list(csv.DictReader(f))
    return gaps, population


@pytest.fixture(scope="module")
def eunomia(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = unzip_eunomia(tmp_path_factory.mktemp("eunomia"))
    return folder


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / f"{name}.csv").read_text())))


def test_the_eunomia_dataset_screens_as_ohdsi_ships_it(eunomia: Path, tmp_path: Path) -> None:
    as_of = D(2021, 6, 30)
    assert (eunomia / "PERSON.csv").exists() and not (eunomia / "person.csv").exists()
    gaps, population = _screen(eunomia, tmp_path / "out", as_of)

    # Counted independently from the CSVs: alive, of screening age (screening.yaml
    # triage.yaml adult_from_years), and under observation.
    min_age = load_knowledge().triage.adult_from_years
    dead = {r["person_id"]: D.fromisoformat(r["death_date"]) for r in _rows(eunomia, "DEATH")}
    periods: dict[str, list[tuple[D, D]]] = {}
    for r in _rows(eunomia, "OBSERVATION_PERIOD"):
        periods.setdefault(r["person_id"], []).append(
            (
                D.fromisoformat(r["observation_period_start_date"]),
                D.fromisoformat(r["observation_period_end_date"]),
            )
        )
    expected = set()
    for r in _rows(eunomia, "PERSON"):
        born = D(int(r["year_of_birth"]), int(r["month_of_birth"]), int(r["day_of_birth"]))
        age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        alive = r["person_id"] not in dead or dead[r["person_id"]] > as_of
        observed = any(a <= as_of <= b for a, b in periods.get(r["person_id"], []))
        if alive and age >= min_age and observed:
            expected.add(r["person_id"])
    assert sum(int(row["people"]) for row in population) == len(expected) > 10
    assert {g["person_id"] for g in gaps} <= expected
    # What the records hold reaches the tables through OHDSI's concept table: the people
    # with an anaemia diagnosis (SNOMED CT 271737000) and every haemoglobin (LOINC 718-7).
    import pyarrow.parquet as pq

    concept = {
        r["concept_id"]: (r["vocabulary_id"], r["concept_code"]) for r in _rows(eunomia, "CONCEPT")
    }
    anaemic = {
        r["person_id"]
        for r in _rows(eunomia, "CONDITION_OCCURRENCE")
        if concept.get(r["condition_concept_id"]) == ("SNOMED", "271737000")
    }
    haemoglobins = [
        r
        for r in _rows(eunomia, "MEASUREMENT")
        if concept.get(r["measurement_concept_id"]) == ("LOINC", "718-7") and r["value_as_number"]
    ]
    tables = tmp_path / "out" / "tables"
    conditions = pq.read_table(tables / "condition.parquet").to_pylist()
    labs = pq.read_table(tables / "lab.parquet").to_pylist()
    assert anaemic and {c["person_id"] for c in conditions if c["condition_id"] == "anemia"} == (
        anaemic
    )
    assert len(haemoglobins) > 50
    assert sum(1 for lab in labs if lab["test"] == "hemoglobin") == len(haemoglobins)


# -- a hand-built folder in OHDSI's layout ------------------------------------------------

METFORMIN_1000 = 40164929  # metformin hydrochloride 1000 MG Oral Tablet (RxNorm 861004)
METFORMIN = 1503297  # the ingredient, RxNorm 6809
PINS_AND_NEEDLES = 4236484  # SNOMED 62507009
ICD10CM_E538 = 45552376  # non-standard ICD10CM E53.8: maps to the SNOMED concept below
B12_DEFICIENCY_SNOMED = 436070  # "Vitamin B12 deficiency" SNOMED 190634004
OLD_PARESTHESIA = 4000001  # a retired SNOMED concept, replaced by paraesthesia
PARESTHESIA = 4236485  # SNOMED 91019004
B12_TEST = 3000963  # LOINC 2132-9
EHR, CLAIM = 32817, 32810

CONCEPTS = [
    (METFORMIN_1000, "metformin hydrochloride 1000 MG Oral Tablet", "RxNorm", "861004", "S", ""),
    (METFORMIN, "metformin", "RxNorm", "6809", "S", ""),
    (PINS_AND_NEEDLES, "Pins and needles", "SNOMED", "62507009", "S", ""),
    (ICD10CM_E538, "Deficiency of other specified B group vitamins", "ICD10CM", "E53.8", "", ""),
    (B12_DEFICIENCY_SNOMED, "Vitamin B12 deficiency", "SNOMED", "190634004", "S", ""),
    (OLD_PARESTHESIA, "Old paraesthesia", "SNOMED", "999999999", "", "U"),
    (PARESTHESIA, "Paresthesia", "SNOMED", "91019004", "S", ""),
    (B12_TEST, "Cobalamin [Mass/volume] in Serum or Plasma", "LOINC", "2132-9", "S", ""),
]


def _write(folder: Path, name: str, header: list[str], rows: list[tuple[Any, ...]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    (folder / f"{name}.csv").write_text(out.getvalue())


def _ohdsi_folder(folder: Path, *, ancestors: bool = True) -> Path:
    """People 1-6, each on metformin hydrochloride 1000 MG (a product b12dx does not list;
    its ingredient it does) with a B12 symptom, and no B12 test unless said:
    1: pins and needles; 2: the same but outside every observation period on the date;
    3: a retired paraesthesia concept, replaced by a current one; 4: a B12 test from a
    claim only (filtered out with --omop-type-concepts 32817); 5: no symptom but E53.8
    (non-standard, "Maps to" a SNOMED concept b12dx does not list: nothing is made of
    it); 6: tested (an EHR result), so no gap."""
    folder.mkdir()
    _write(
        folder,
        "PERSON",
        ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth"],
        [(p, 8532, 1950, 1, 1) for p in range(1, 7)],
    )
    _write(
        folder,
        "OBSERVATION_PERIOD",
        ["person_id", "observation_period_start_date", "observation_period_end_date"],
        [(p, "2000-01-01", "2030-01-01") for p in (1, 3, 4, 5, 6)]
        + [(2, "2000-01-01", "2022-01-01")],
    )
    _write(
        folder,
        "DRUG_EXPOSURE",
        ["person_id", "drug_concept_id", "drug_exposure_start_date", "days_supply",
         "drug_type_concept_id"],
        [(p, METFORMIN_1000, "2023-01-01", 365, EHR) for p in range(1, 7)],
    )  # fmt: skip
    symptom = {1: PINS_AND_NEEDLES, 2: PINS_AND_NEEDLES, 3: OLD_PARESTHESIA, 4: PINS_AND_NEEDLES,
               6: PINS_AND_NEEDLES}  # fmt: skip
    _write(
        folder,
        "CONDITION_OCCURRENCE",
        [
            "person_id",
            "condition_concept_id",
            "condition_start_date",
            "condition_source_concept_id",
        ],
        [(p, c, "2023-03-01", 0) for p, c in symptom.items()]
        + [(5, 0, "2023-03-01", ICD10CM_E538)],
    )
    _write(
        folder,
        "MEASUREMENT",
        ["person_id", "measurement_concept_id", "measurement_date", "value_as_number",
         "unit_source_value", "measurement_type_concept_id"],
        [(4, B12_TEST, "2023-02-01", 400, "pg/mL", CLAIM),
         (6, B12_TEST, "2023-02-01", 400, "pg/mL", EHR)],
    )  # fmt: skip
    for name, header in (
        ("PROCEDURE_OCCURRENCE", ["person_id", "procedure_concept_id", "procedure_date"]),
        ("OBSERVATION", ["person_id", "observation_concept_id", "observation_date"]),
    ):
        _write(folder, name, header, [])
    _write(
        folder,
        "CONCEPT",
        ["concept_id", "concept_name", "vocabulary_id", "concept_code", "standard_concept",
         "invalid_reason"],
        CONCEPTS,
    )  # fmt: skip
    _write(
        folder,
        "CONCEPT_RELATIONSHIP",
        ["concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"],
        [
            (ICD10CM_E538, B12_DEFICIENCY_SNOMED, "Maps to", ""),
            (OLD_PARESTHESIA, PARESTHESIA, "Concept replaced by", ""),
        ],
    )
    _write(
        folder,
        "CONCEPT_ANCESTOR",
        ["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"],
        [(METFORMIN, METFORMIN_1000, 2)] if ancestors else [],
    )
    return folder


AS_OF = D(2023, 6, 1)


def _untested(gaps: list[dict[str, str]]) -> set[str]:
    return {g["person_id"] for g in gaps if g["gap"] == "untested_at_risk"}


def test_a_product_is_found_through_its_ingredient_and_a_retired_code_through_its_successor(
    tmp_path: Path,
) -> None:
    folder = _ohdsi_folder(tmp_path / "omop")
    gaps, _ = _screen(folder, tmp_path / "out", AS_OF)
    # 1, and 3 (the replaced concept read as its successor); not 2 (not observed on the
    # date), not 4 (a B12 test, from a claim), not 5 (no symptom), not 6 (tested).
    assert _untested(gaps) == {"1", "3"}


def test_without_concept_ancestor_the_product_is_not_metformin(tmp_path: Path) -> None:
    """A check of the check: the ingredient is what makes the product metformin."""
    folder = _ohdsi_folder(tmp_path / "omop", ancestors=False)
    gaps, _ = _screen(folder, tmp_path / "out", AS_OF)
    assert _untested(gaps) == set()


def test_a_person_outside_every_observation_period_is_not_screened(tmp_path: Path) -> None:
    folder = _ohdsi_folder(tmp_path / "omop")
    _, population = _screen(folder, tmp_path / "out", AS_OF)
    assert sum(int(row["people"]) for row in population) == 5  # 2 left out
    _, earlier = _screen(folder, tmp_path / "out2", D(2021, 6, 1))
    assert sum(int(row["people"]) for row in earlier) == 6


def test_provenance_can_be_filtered(tmp_path: Path) -> None:
    """Person 4's only B12 test came from a claim: with EHR records only, it is not
    there, so 4 stays untested; the EHR-tested person 6 stays tested."""
    folder = _ohdsi_folder(tmp_path / "omop")
    gaps, _ = _screen(folder, tmp_path / "out", AS_OF, "--omop-type-concepts", str(EHR))
    assert _untested(gaps) == {"1", "3", "4"}
    claims_only, _ = _screen(folder, tmp_path / "out2", AS_OF, "--omop-type-concepts", str(CLAIM))
    # With claims only, the metformin (an EHR record) is not read: nobody is at risk.
    assert _untested(claims_only) == set()


def test_a_bad_provenance_list_is_refused(tmp_path: Path) -> None:
    folder = _ohdsi_folder(tmp_path / "omop")
    result = CliRunner().invoke(
        app, ["screen", str(folder), "--out", str(tmp_path / "o"), "--omop-type-concepts", "ehr"]
    )
    assert result.exit_code == 2 and "--omop-type-concepts" in result.output


def test_eunomia_screened_after_its_observation_ends_says_so_and_names_a_date_that_screens(
    eunomia: Path, tmp_path: Path
) -> None:
    """Without --as-of the date is today, after every observation period of the dataset:
    nobody is screened. The terminal and the report say why, name the last day observed
    and a date to screen with, and that date does screen people."""
    ends = [r["observation_period_end_date"] for r in _rows(eunomia, "OBSERVATION_PERIOD")]
    last = max(ends)
    assert last < dt.date.today().isoformat(), "the dataset's periods have ended"
    result = CliRunner().invoke(
        app, ["screen", str(eunomia), "--out", str(tmp_path / "today")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "0 people screened of 28" in said
    assert f"every observation period ends by {last}".lower() in said.lower()
    advice = re.search(r"screen with --as-of (\d{4}-\d\d-\d\d) \(([\d,]+) people", said)
    assert advice, said
    html = (tmp_path / "today" / "report.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert f"every observation period ends by {last}".lower() in text.lower()
    assert f"--as-of {advice.group(1)}" in text
    _, population = _screen(eunomia, tmp_path / "advised", D.fromisoformat(advice.group(1)))
    screened = sum(int(row["people"]) for row in population)
    assert screened == int(advice.group(2).replace(",", "")) > 0
