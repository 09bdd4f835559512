"""The three FHIR readers (one patient for the engine, the follow-up store's Bundle
import, the population loader) read an element the same way: the rule lives once, in
``b12dx.fhir.values``, and each reader's result shows it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from b12dx.cli.bulk import run_import
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge import Knowledge
from b12dx.screen.load_fhir import load_fhir
from b12dx.store.bundle_read import read_bundle

AS_OF = dt.date(2026, 6, 1)
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"text": "Ann Bell"}],
    "birthDate": "1958-03-04",
    "gender": "female",
}


def crohns(abatement: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "34000006"}]},
        "onsetDateTime": "2025-01-01",
    } | abatement


def write_export(tmp_path: Path, *resources: dict[str, Any]) -> Path:
    export = tmp_path / "export"
    export.mkdir()
    for r in resources:
        (export / f"{r['resourceType']}.ndjson").write_text(json.dumps(r) + "\n")
    return export


def bundle_of(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def read_three_ways(
    kb: Knowledge, tmp_path: Path, condition: dict[str, Any]
) -> tuple[bool, bool, dt.date | None]:
    """(the engine's record has it, the store's import keeps it, the population
    table's end date)."""
    engine = record_from_resources([PATIENT, condition], AS_OF, kb).record
    plan = read_bundle(kb, bundle_of(PATIENT, condition), AS_OF)
    export = write_export(tmp_path, PATIENT, condition)
    tables, _counts = load_fhir(kb, export, tmp_path / "work")
    rows = pq.read_table(tables.path("condition")).to_pylist()
    assert [r["condition_id"] for r in rows] == ["crohns_disease"]
    return (
        any(c["id"] == "crohns_disease" for c in engine.get("conditions", [])),
        any(cid == "crohns_disease" for _ref, cid, _day, _egfr in plan.conditions),
        rows[0]["end_date"],
    )


@pytest.mark.parametrize(
    ("abatement", "current", "end"),
    [
        # Abating over a period that has not ended on as_of: still there.
        ({"abatementPeriod": {"start": "2026-01-01", "end": "2027-01-01"}}, True, "2027-01-01"),
        ({"abatementPeriod": {"start": "2026-01-01", "end": "2026-03-01"}}, False, "2026-03-01"),
        ({"abatementDateTime": "2026-03-01"}, False, "2026-03-01"),
        ({}, True, None),
    ],
)
def test_a_condition_ends_where_every_reader_says_it_ends(
    kb: Knowledge, tmp_path: Path, abatement: dict[str, Any], current: bool, end: str | None
) -> None:
    in_record, imported, end_date = read_three_ways(kb, tmp_path, crohns(abatement))
    assert in_record == current
    assert imported == current
    assert end_date == (dt.date.fromisoformat(end) if end else None)


def test_a_result_dated_only_by_when_it_was_issued_has_that_date_for_every_reader(
    kb: Knowledge, tmp_path: Path
) -> None:
    result = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
        "issued": "2026-05-02T09:30:00Z",
        "valueQuantity": {"value": 180, "unit": "pg/mL"},
    }
    engine = record_from_resources([PATIENT, result], AS_OF, kb).record
    assert [(lab["test"], lab["date"]) for lab in engine["labs"]] == [("total_b12", "2026-05-02")]
    plan = read_bundle(kb, bundle_of(PATIENT, result), AS_OF)
    assert [(a.kind, a.values["taken_on"]) for a in plan.actions] == [("lab", dt.date(2026, 5, 2))]
    tables, _counts = load_fhir(kb, write_export(tmp_path, PATIENT, result), tmp_path / "work")
    rows = pq.read_table(tables.path("lab")).to_pylist()
    assert [(r["test"], r["date"]) for r in rows] == [("total_b12", dt.date(2026, 5, 2))]


@pytest.mark.parametrize(
    ("dispense", "current"),
    [
        # A validity period with only its end: the order runs to that end.
        ({"validityPeriod": {"end": "2026-09-01"}}, True),
        ({"validityPeriod": {"end": "2026-03-01"}}, False),
        # 30 days' supply and two repeats: 90 days from 2026-03-15, past as_of.
        (
            {"expectedSupplyDuration": {"value": 30, "unit": "days"}, "numberOfRepeatsAllowed": 2},
            True,
        ),
        ({"expectedSupplyDuration": {"value": 30, "unit": "days"}}, False),
    ],
)
def test_how_long_an_order_runs_is_read_alike_by_the_engine_and_the_screen(
    kb: Knowledge, tmp_path: Path, dispense: dict[str, Any], current: bool
) -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "completed",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}]
        },
        "authoredOn": "2026-03-15",
        "dispenseRequest": dispense,
    }
    engine = record_from_resources([PATIENT, order], AS_OF, kb).record
    on_metformin = [m["id"] for m in engine.get("medications", [])] == ["metformin"]
    assert on_metformin == current
    tables, _counts = load_fhir(kb, write_export(tmp_path, PATIENT, order), tmp_path / "work")
    rows = pq.read_table(tables.path("medication")).to_pylist()
    assert [r["medication_id"] for r in rows] == ["metformin"]
    end = rows[0]["end_date"]
    assert (end is not None and end >= AS_OF) == current


def read_result(
    kb: Knowledge, tmp_path: Path, result: dict[str, Any]
) -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
    """(the engine's labs, the store's planned labs, the population's lab rows)."""
    engine = record_from_resources([PATIENT, result], AS_OF, kb).record.get("labs", [])
    plan = read_bundle(kb, bundle_of(PATIENT, result), AS_OF)
    planned = [a.values for a in plan.actions if a.kind == "lab"]
    tables, _counts = load_fhir(kb, write_export(tmp_path, PATIENT, result), tmp_path / "work")
    return engine, planned, pq.read_table(tables.path("lab")).to_pylist()


def observation(code: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2026-05-02",
    } | value


def test_an_antibody_result_is_its_value_not_a_flag_beside_it(
    kb: Knowledge, tmp_path: Path
) -> None:
    # The value says negative; a flag says positive. The value is the result.
    result = observation(
        "31444-3",
        valueCodeableConcept={
            "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
        },
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "POS",
                    }
                ]
            }
        ],
    )
    engine, planned, rows = read_result(kb, tmp_path, result)
    assert [lab["value"] for lab in engine] == ["negative"]
    assert [lab["value"] for lab in planned] == ["negative"]
    assert [r["value_text"] for r in rows] == ["negative"]


def test_a_unit_written_out_in_words_is_read_by_its_ucum_code_by_every_reader(
    kb: Knowledge, tmp_path: Path
) -> None:
    result = observation(
        "2132-9",
        valueQuantity={
            "value": 180,
            "unit": "picogram per milliliter",
            "system": "http://unitsofmeasure.org",
            "code": "pg/mL",
        },
    )
    engine, planned, rows = read_result(kb, tmp_path, result)
    assert [(lab["value"], lab["unit"]) for lab in engine] == [(180, "pg/mL")]
    assert [(lab["value"], lab["unit"]) for lab in planned] == [(180.0, "pg/mL")]
    assert [r["value_si"] for r in rows] == [pytest.approx(180 * 0.738, rel=0.01)]


@pytest.mark.parametrize("value", [{"comparator": "<", "value": 50}, {"value": 50_000}])
def test_a_bound_or_an_impossible_value_is_no_result_for_any_reader(
    kb: Knowledge, tmp_path: Path, value: dict[str, Any]
) -> None:
    result = observation("2132-9", valueQuantity=value | {"unit": "pg/mL"})
    engine, planned, rows = read_result(kb, tmp_path, result)
    assert engine == [] and rows == []
    # The store refuses a value the engine would refuse, naming the field, rather
    # than dropping it from a patient's own record without a word.
    if "comparator" in value:
        assert planned == []


def test_a_medicine_named_by_reference_to_a_shared_medication_is_found_in_an_export(
    kb: Knowledge, tmp_path: Path
) -> None:
    metformin = {
        "resourceType": "Medication",
        "id": "met",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}]
        },
    }
    taken = {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/met"},
        "effectiveDateTime": "2024-01-01",
    }
    export = write_export(tmp_path, PATIENT, metformin, taken)
    out = tmp_path / "records"
    run_import(export, out, AS_OF, with_assessment=False, profile=None)
    record = json.loads((out / "p1.json").read_text())
    assert [m["id"] for m in record["medications"]] == ["metformin"]
    tables, _counts = load_fhir(kb, export, tmp_path / "work")
    rows = pq.read_table(tables.path("medication")).to_pylist()
    assert [r["medication_id"] for r in rows] == ["metformin"]


SYMPTOM_CODE = {"coding": [{"system": "http://loinc.org", "code": "75325-1"}]}
PINS_AND_NEEDLES = {"coding": [{"system": "http://snomed.info/sct", "code": "91019004"}]}


@pytest.mark.parametrize(
    ("finding", "counted"),
    [
        ({"code": PINS_AND_NEEDLES, "status": "final"}, True),
        # The "Symptom" form: the finding is the value.
        ({"code": SYMPTOM_CODE, "valueCodeableConcept": PINS_AND_NEEDLES}, True),
        ({"code": PINS_AND_NEEDLES, "status": "preliminary"}, True),
        ({"code": PINS_AND_NEEDLES, "status": "registered"}, False),
        ({"code": PINS_AND_NEEDLES, "valueBoolean": False}, False),
    ],
)
def test_a_symptom_observation_counts_alike_for_the_engine_and_the_screen(
    kb: Knowledge, tmp_path: Path, finding: dict[str, Any], counted: bool
) -> None:
    seen = observation("0") | finding
    engine = record_from_resources([PATIENT, seen], AS_OF, kb).record
    assert ("paresthesia" in [s["id"] for s in engine.get("symptoms", [])]) == counted
    tables, _counts = load_fhir(kb, write_export(tmp_path, PATIENT, seen), tmp_path / "work")
    rows = pq.read_table(tables.path("finding")).to_pylist()
    assert ([r["id"] for r in rows] == ["paresthesia"]) == counted
