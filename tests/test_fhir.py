"""FHIR R4 input and output: the mapping rules, the real Synthea export, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from b12dx import InputError, assess, load_knowledge
from b12dx.fhir.assess import assess_bundle
from b12dx.fhir.out import assessment_bundle
from b12dx.fhir.read import read_bulk_export
from b12dx.fhir.record import record_from_resources
from fhir_orders import overlapping_metformin_orders

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea-bulk-10"
METFORMIN_PATIENT = "79a66c97-6131-3213-f3c9-4606946ab056"
AS_OF = dt.date(2026, 11, 21)
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def patient(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "1960-05-01",
        "gender": "female",
    } | extra


def subject() -> dict[str, str]:
    return {"reference": "Patient/p1"}


def obs(code: str, system: str = LOINC, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{code}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": subject(),
        "effectiveDateTime": "2026-11-01",
    } | extra


def qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def cond(code: str, system: str = SCT, rid: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid or f"c-{code}",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": subject(),
    } | extra


def medreq(code: str, system: str = RXNORM, rid: str = "m1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code}]},
        "subject": subject(),
        "authoredOn": "2020-01-15",
    } | extra


def build(*resources: dict[str, Any], as_of: dt.date = AS_OF, who: dict[str, Any] | None = None):
    return record_from_resources([who or patient(), *resources], as_of, load_knowledge())


def notes(imported, which: str) -> dict[str, str]:
    return {n.reference: n.note for n in getattr(imported, which)}


# -- the Patient -------------------------------------------------------------------------


def test_age_and_sex_come_from_the_patient_at_as_of() -> None:
    rec = build(as_of=dt.date(2026, 4, 30)).record
    assert rec["age_years"] == 65 and rec["sex"] == "female"
    assert build(as_of=dt.date(2026, 5, 1)).record["age_years"] == 66


def test_a_patient_who_died_before_as_of_is_refused_with_the_date() -> None:
    with pytest.raises(InputError) as err:
        build(who=patient(deceasedDateTime="2020-02-02T10:00:00Z"))
    assert err.value.errors[0].path == "Patient.deceased" and "2020-02-02" in str(err.value)


@pytest.mark.parametrize(
    "resources, path",
    [
        ([{"resourceType": "Patient", "id": "x", "gender": "male"}], "Patient.birthDate"),
        ([], "Patient"),
        ([patient(), patient(id="p2")], "Patient"),
        ([patient(birthDate="2030-01-01")], "Patient.birthDate"),
    ],
)
def test_no_single_usable_patient_is_an_input_error(resources, path) -> None:
    with pytest.raises(InputError) as err:
        record_from_resources(resources, AS_OF, load_knowledge())
    assert err.value.errors[0].path == path


def test_us_core_race_black_sets_the_ethnicity_that_changes_interpretation() -> None:
    race = {
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "extension": [
            {
                "url": "ombCategory",
                "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2054-5"},
            }
        ],
    }
    assert build(who=patient(extension=[race])).record["ethnicity"] == "black_african_or_caribbean"


# -- Observations: labs ------------------------------------------------------------------


def test_a_b12_result_keeps_value_unit_date_and_reference_range() -> None:
    o = obs(
        "2132-9",
        valueQuantity=qty(150, "pg/mL"),
        referenceRange=[{"low": qty(197, "pg/mL"), "high": qty(771, "pg/mL")}],
    )
    imported = build(o)
    assert imported.record["labs"] == [
        {
            "test": "total_b12",
            "date": "2026-11-01",
            "value": 150,
            "unit": "pg/mL",
            "reference_low": 197,
            "reference_high": 771,
        }
    ]
    assert "total_b12 150 pg/mL" in notes(imported, "used")["Observation/o-2132-9"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"status": "preliminary"}, "status preliminary"),
        ({"effectiveDateTime": "2027-01-01"}, "after as_of"),
        # The engine refuses a result dated before birth: the door reports it and reads
        # the rest of the record, not a refusal of the whole record.
        ({"effectiveDateTime": "1900-01-01"}, "before the birth date"),
        ({"valueQuantity": qty(150, "mg/dL")}, "not a unit of total_b12"),
        ({"valueQuantity": {"value": 150}}, "no unit"),
        ({"valueQuantity": {"value": 100, "comparator": "<", "unit": "pg/mL"}}, "a bound"),
        ({"valueQuantity": qty(9e9, "pg/mL")}, "outside what is possible"),
        ({"valueQuantity": None, "valueString": "low"}, "no numeric value"),
    ],
)
def test_results_that_cannot_be_used_are_reported_with_the_reason(change, reason) -> None:
    o = obs("2132-9", valueQuantity=qty(150, "pg/mL")) | change
    o = {k: v for k, v in o.items() if v is not None}
    imported = build(o)
    assert "labs" not in imported.record
    assert reason in notes(imported, "ignored")["Observation/o-2132-9"]


def test_the_other_unit_family_is_kept_as_written_for_the_engine_to_band() -> None:
    imported = build(obs("14685-2", valueQuantity=qty(150, "pmol/L")))
    assert imported.record["labs"][0] | {} == {
        "test": "total_b12",
        "date": "2026-11-01",
        "value": 150,
        "unit": "pmol/L",
    }
    result = assess(imported.record)
    assert result.labs[0].band == "indeterminate"  # 150 pmol/L, not 150 pg/mL


def test_intrinsic_factor_antibody_from_a_coded_value() -> None:
    o = obs("31444-3", valueCodeableConcept={"coding": [{"system": SCT, "code": "10828004"}]})
    assert build(o).record["labs"][0]["value"] == "positive"


def test_egfr_written_as_ml_per_min_is_read_per_1_73_m2() -> None:
    o = obs("33914-3", valueQuantity=qty(42, "mL/min"))
    assert build(o).record["labs"][0] == {
        "test": "egfr",
        "date": "2026-11-01",
        "value": 42,
        "unit": "mL/min/1.73m2",
    }


def test_an_unmapped_observation_is_ignored_naming_its_code() -> None:
    imported = build(obs("4548-4", valueQuantity=qty(7, "%")))
    assert "LOINC 4548-4" in notes(imported, "ignored")["Observation/o-4548-4"]


# -- Conditions and symptoms ---------------------------------------------------------------


def test_symptom_condition_gives_duration_and_severity() -> None:
    c = cond(
        "91019004",
        onsetDateTime="2026-05-23",
        severity={"coding": [{"system": SCT, "code": "6736007"}]},
    )
    symptoms = build(c).record["symptoms"]
    assert symptoms == [{"id": "paresthesia", "duration_weeks": 26, "severity": "moderate"}]


def test_resolved_conditions_are_ignored_but_an_operation_lasts() -> None:
    resolved = cond(
        "396331005",
        clinicalStatus={"coding": [{"code": "resolved"}]},
    )
    abated = cond("34000006", abatementDateTime="2020-01-01")
    old_gastrectomy = cond("53442002", clinicalStatus={"coding": [{"code": "inactive"}]})
    imported = build(resolved, abated, old_gastrectomy)
    assert imported.record["conditions"] == [{"id": "gastrectomy"}]
    ignored = notes(imported, "ignored")
    assert "resolved" in ignored["Condition/c-396331005"]
    assert "resolved on 2020-01-01" in ignored["Condition/c-34000006"]


def test_icd10_codes_match_by_hierarchy() -> None:
    imported = build(cond("E11.9", "http://hl7.org/fhir/sid/icd-10-cm"))
    assert imported.record["conditions"] == [{"id": "type2_diabetes"}]


def test_refuted_diagnosis_is_ignored() -> None:
    c = cond("84027009", verificationStatus={"coding": [{"code": "refuted"}]})
    assert "conditions" not in build(c).record


def test_red_flag_findings_count_only_when_new() -> None:
    # How new it is decides in the engine, the same for every door (triage.yaml
    # red_flag_new_within_days): the old one is read, with its duration, and raises no flag.
    old = cond("20022000", rid="old", onsetDateTime="2015-03-01")
    imported = build(old)
    assert imported.record["symptoms"][0]["duration_weeks"] > 500
    assert not assess(imported.record).red_flags
    # With no date at all it is read as the contract reads a symptom with no onset: the
    # same emergency at both doors (a dated old one above raises none).
    undated = build(cond("20022000", rid="undated"))
    assert "no date recorded" in notes(undated, "used")["Condition/undated"]
    typed = {
        "as_of": AS_OF.isoformat(),
        "age_years": 60,
        "symptoms": [{"id": "one_sided_weakness"}],
    }
    assert assess(undated.record).urgency == assess(typed).urgency == "emergency"
    new = cond("20022000", rid="new", onsetDateTime="2026-11-18")
    result = assess(build(new).record)
    assert result.urgency == "emergency" and result.red_flags


def test_a_recent_pregnancy_sets_pregnant_and_an_old_one_does_not() -> None:
    assert build(cond("72892002", onsetDateTime="2026-07-01")).record["pregnant"] is True
    assert "pregnant" not in build(cond("72892002", onsetDateTime="2024-01-01")).record


def test_a_recorded_b12_or_folate_deficiency_diagnosis_is_read_and_counts() -> None:
    icd = "http://hl7.org/fhir/sid/icd-10"
    imported = build(cond("D51.9", icd), cond("D52.0", icd, rid="c-folate"))
    assert imported.record["conditions"] == [{"id": "b12_deficiency"}, {"id": "folate_deficiency"}]
    a = assess(imported.record | {"as_of": AS_OF.isoformat()})
    assert a.deficiency_status == "likely"
    assert "status.recorded_diagnosis" in [r.rule for r in a.status_reasons]
    # No cause on record: it is looked for, and the duration waits for it.
    assert a.treatment is not None and not a.treatment.duration_settled
    assert "order_intrinsic_factor_antibodies" in [s.id for s in a.next_steps]


def test_total_and_partial_gastrectomy_are_told_apart() -> None:
    def proc(code: str) -> dict[str, Any]:
        return {
            "resourceType": "Procedure",
            "id": f"pr-{code}",
            "status": "completed",
            "code": {"coding": [{"system": SCT, "code": code}]},
            "subject": subject(),
            "performedDateTime": "2001-04-04",
        }

    assert build(proc("26452005")).record["conditions"] == [{"id": "total_gastrectomy"}]
    assert build(proc("49209004")).record["conditions"] == [{"id": "partial_gastrectomy"}]
    assert build(proc("53442002")).record["conditions"] == [{"id": "gastrectomy"}]


def test_procedures_map_to_the_operations() -> None:
    p = {
        "resourceType": "Procedure",
        "id": "pr1",
        "status": "completed",
        "code": {"coding": [{"system": SCT, "code": "49209004"}]},
        "subject": subject(),
        "performedDateTime": "2001-04-04",
    }
    assert build(p).record["conditions"] == [{"id": "partial_gastrectomy"}]
    assert "conditions" not in build(p | {"status": "not-done"}).record


# -- Medicines ----------------------------------------------------------------------------


def test_a_course_of_renewed_orders_counts_from_the_first() -> None:
    orders = [
        medreq("860975", rid=f"m{y}", authoredOn=f"{y}-03-01", status="stopped")
        for y in range(2019, 2026)
    ]
    orders.append(medreq("860975", rid="m2026", authoredOn="2026-03-01", status="active"))
    imported = build(*orders)
    months = math.floor((AS_OF - dt.date(2019, 3, 1)).days / (365.25 / 12))
    assert imported.record["medications"] == [{"id": "metformin", "duration_months": months}]
    assert len(imported.used) == 1 + len(orders)


def test_a_gap_longer_than_the_tolerance_starts_a_new_course() -> None:
    first = medreq("860975", rid="a", authoredOn="2010-01-01", status="stopped")
    second = medreq("860975", rid="b", authoredOn="2025-06-01", status="active")
    imported = build(first, second)
    months = math.floor((AS_OF - dt.date(2025, 6, 1)).days / (365.25 / 12))
    assert imported.record["medications"] == [{"id": "metformin", "duration_months": months}]
    assert "earlier course" in notes(imported, "ignored")["MedicationRequest/a"]


def test_a_stopped_medicine_is_past_use_not_a_risk_factor() -> None:
    imported = build(medreq("860975", status="stopped", authoredOn="2015-01-01"))
    assert "medications" not in imported.record
    assert "not current" in notes(imported, "ignored")["MedicationRequest/m1"]


def test_atc_codes_match_by_class_and_names_match_when_codes_do_not() -> None:
    atc = medreq("A02BC01", "http://www.whocc.no/atc", rid="atc")
    named = {
        **medreq("999999", rid="named"),
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "999999", "display": "Folic Acid 5 MG Tab"}]
        },
    }
    imported = build(atc, named)
    assert {m["id"] for m in imported.record["medications"]} == {
        "proton_pump_inhibitor",
        "folic_acid",
    }
    assert "by name" in notes(imported, "used")["MedicationRequest/named"]


def test_medication_statement_period_gives_the_duration() -> None:
    st = {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "198051"}]},
        "subject": subject(),
        "effectivePeriod": {"start": "2022-11-21"},
    }
    assert build(st).record["medications"] == [
        {"id": "proton_pump_inhibitor", "duration_months": 48}
    ]


def test_b12_injections_given_become_the_treatment_record() -> None:
    adm = {
        "resourceType": "MedicationAdministration",
        "id": "a1",
        "status": "completed",
        "medicationCodeableConcept": {"text": "Hydroxocobalamin 1 mg/1 mL injection"},
        "subject": subject(),
        "effectiveDateTime": "2026-11-10T09:30:00Z",
        "dosage": {
            "route": {"coding": [{"system": SCT, "code": "78421000"}]},
            "dose": {"value": 1, "unit": "mg", "system": UCUM, "code": "mg"},
        },
    }
    assert build(adm).record["b12_treatment"] == [
        {"date": "2026-11-10", "drug": "hydroxocobalamin", "route": "im", "dose_mg": 1.0}
    ]
    # No route: hydroxocobalamin is given only IM (BNF), so the dose is read as IM;
    # cyanocobalamin is given by mouth or injection, so its dose is not guessed.
    no_route = adm | {"id": "a2", "dosage": {"dose": {"value": 1, "unit": "mg"}}}
    read = build(no_route)
    assert read.record["b12_treatment"][0]["route"] == "im"
    assert "given only IM" in notes(read, "used")["MedicationAdministration/a2"]
    cyano = no_route | {"id": "a3", "medicationCodeableConcept": {"text": "Cyanocobalamin 1 mg"}}
    assert "route not recorded" in notes(build(cyano), "ignored")["MedicationAdministration/a3"]


def test_invalid_and_foreign_resources_are_ignored_with_reasons() -> None:
    broken = obs("2132-9", valueQuantity={"value": "lots", "unit": "pg/mL"})
    foreign = obs("718-7", valueQuantity=qty(120, "g/L"), subject={"reference": "Patient/zz"})
    other_type = {"resourceType": "Encounter", "id": "e1", "status": "finished"}
    ignored = notes(build(broken, foreign, other_type), "ignored")
    assert "not valid FHIR R4" in ignored["Observation/o-2132-9"]
    assert "another patient" in ignored["Observation/o-718-7"]
    assert "not used" in ignored["Encounter/e1"]


# -- The real Synthea export ---------------------------------------------------------------


def test_the_synthea_export_imports_every_patient_or_says_why_not() -> None:
    export = read_bulk_export(SYNTHEA)
    assert not export.problems and len(export.patients) == 13
    kb = load_knowledge()
    built, refused = 0, 0
    for _, resources in export:
        try:
            imported = record_from_resources(resources, dt.date(1994, 1, 1), kb)
        except InputError as exc:
            assert exc.errors[0].path in ("Patient.deceased", "Patient.birthDate")
            refused += 1
            continue
        built += 1
        assert len(imported.used) + len(imported.ignored) == len(resources)
        assess(imported.record)  # every built record is a valid contract record
    assert built == 7 and refused == 6


def _metformin_orders() -> list[dt.date]:
    dates = []
    for line in (SYNTHEA / "MedicationRequest.000.ndjson").read_text().splitlines():
        r = json.loads(line)
        codes = {c["code"] for c in r["medicationCodeableConcept"]["coding"]}
        if "860975" in codes and r["subject"]["reference"].endswith(METFORMIN_PATIENT):
            dates.append(dt.date.fromisoformat(r["authoredOn"][:10]))
    return sorted(dates)


@pytest.mark.parametrize("as_of", [dt.date(1994, 1, 1), dt.date(1980, 6, 30)])
def test_synthea_metformin_user_has_metformin_with_its_duration(as_of) -> None:
    export = read_bulk_export(SYNTHEA)
    resources = dict(iter(export))[METFORMIN_PATIENT]
    imported = record_from_resources(resources, as_of, load_knowledge())
    first = _metformin_orders()[0]
    expected = math.floor((as_of - first).days / (365.25 / 12))
    assert {"id": "metformin", "duration_months": expected} in imported.record["medications"]
    result = assess(imported.record)
    assert "metformin" in {r.id for r in result.risk_factors}


def test_before_the_first_order_there_is_no_metformin() -> None:
    export = read_bulk_export(SYNTHEA)
    resources = dict(iter(export))[METFORMIN_PATIENT]
    imported = record_from_resources(resources, dt.date(1969, 1, 1), load_knowledge())
    assert "medications" not in imported.record


# -- Bundles, output and the command line ----------------------------------------------------


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)],
    }


def _confirmed_bundle() -> dict[str, Any]:
    return _bundle(
        patient(),
        obs("2132-9", valueQuantity=qty(150, "pg/mL")),
        cond("91019004", onsetDateTime="2026-05-01"),
        medreq("860975", authoredOn="2018-01-01"),
    )


def test_a_bundle_is_assessed_and_says_what_it_used() -> None:
    result = assess_bundle(_confirmed_bundle(), as_of=AS_OF)
    assert result.deficiency_status == "confirmed" and result.urgency == "urgent"
    assert result.fhir_input is not None
    assert {u.resource for u in result.fhir_input.used} == {
        "Patient/p1",
        "Observation/o-2132-9",
        "Condition/c-91019004",
        "MedicationRequest/m1",
    }


def test_fhir_output_is_a_valid_r4_bundle_with_orders() -> None:
    kb = load_knowledge()
    result = assess_bundle(_confirmed_bundle(), as_of=AS_OF)
    out = assessment_bundle(kb, result, "Patient/p1")
    Bundle.model_validate(out)
    kinds = [e["resource"]["resourceType"] for e in out["entry"]]
    assert kinds[0] == "RiskAssessment" and "MedicationRequest" in kinds
    med = next(
        e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    assert med["medicationCodeableConcept"]["text"] == result.treatment.drug
    assert sum(d["timing"]["repeat"]["count"] for d in med["dosageInstruction"]) == len(
        result.treatment.schedule
    )


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b12dx.cli.app", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_cli_assess_detects_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_confirmed_bundle()))
    done = run_cli("assess", str(path), "--json", "--as-of", AS_OF.isoformat())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["deficiency_status"] == "confirmed" and out["fhir_input"]["patient"] == "Patient/p1"
    fhir = run_cli("assess", str(path), "--fhir", "--as-of", AS_OF.isoformat())
    assert fhir.returncode == 0 and json.loads(fhir.stdout)["resourceType"] == "Bundle"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"resourceType": "Patient", "id": "x"}, "resourceType"),
        (_bundle(patient(), patient(id="p2")), "Patient"),
        (_bundle(patient(deceasedBoolean=True)), "Patient.deceased"),
    ],
)
def test_cli_refuses_unusable_fhir_with_exit_2(body, field) -> None:
    done = run_cli("assess", "-", "--as-of", "2026-11-21", stdin=json.dumps(body))
    assert done.returncode == 2 and field in done.stderr and "Traceback" not in done.stderr


def test_cli_fhir_import_writes_records_and_a_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli("fhir-import", str(SYNTHEA), "--out", str(out), "--as-of", "1994-01-01")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "import-report.json").read_text())
    assert len(report["patients"]) == 7 and len(report["skipped"]) == 6
    record = json.loads((out / f"{METFORMIN_PATIENT}.json").read_text())
    assert record["medications"][0]["id"] == "metformin"
    assert not list(out.glob(".*.tmp"))  # nothing half-written left behind
    lines = run_cli("fhir-import", str(SYNTHEA), "--as-of", "1994-01-01").stdout.splitlines()
    assert len(lines) == 7 and all(json.loads(x)["record"]["as_of"] == "1994-01-01" for x in lines)


def test_cli_fhir_import_keeps_an_out_folder_that_holds_files_unless_forced(
    tmp_path: Path,
) -> None:
    """The rule of every command that writes files: nothing there is overwritten without
    --force."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = run_cli("fhir-import", str(SYNTHEA), "--out", str(out), "--as-of", "1994-01-01")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"b12dx: error: invalid input: --out: {out} is not empty (accepted: a new or empty "
        "folder, or --force to write into it (files of the same name are replaced))\n"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    forced = run_cli(
        "fhir-import", str(SYNTHEA), "--out", str(out), "--as-of", "1994-01-01", "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert (out / "import-report.json").is_file() and (out / "notes.txt").read_text() == "mine"


def test_cli_fhir_import_of_a_folder_without_ndjson_exits_2(tmp_path: Path) -> None:
    done = run_cli("fhir-import", str(tmp_path))
    assert done.returncode == 2 and "no .ndjson files" in done.stderr


def _orders(n: int) -> list[dict[str, Any]]:
    return overlapping_metformin_orders(n, "p1")


def test_building_courses_grows_linearly_with_the_orders() -> None:
    """8x the overlapping orders takes well under 8x squared the time (16,000 took 12 s
    when each order recomputed its run's end); measured as a ratio, so a slow machine
    does not fail it."""
    kb = load_knowledge()
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1930-01-01"}

    def seconds(n: int) -> float:
        resources = [patient, *_orders(n)]
        t0 = time.perf_counter()
        imported = record_from_resources(resources, dt.date(1994, 1, 1), kb)
        took = time.perf_counter() - t0
        assert [m["id"] for m in imported.record["medications"]] == ["metformin"]
        return took

    seconds(200)  # warm
    small = min(seconds(2000) for _ in range(2))
    large = seconds(16000)
    assert large / small < 16, f"2,000 orders {small:.2f} s, 16,000 {large:.2f} s"


def test_cli_fhir_import_never_overwrites_one_record_with_another(tmp_path: Path) -> None:
    """A patient called import-report, and ids that differ only in case (one file on a
    case-insensitive file system): every record gets its own file, the report says which,
    and the report itself is not overwritten."""
    export = tmp_path / "export"
    export.mkdir()
    ids = ["import-report", "Ann", "ann", "ANN"]
    patients = [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-01-01"}
        for pid in ids
    ]
    (export / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    out = tmp_path / "out"
    done = run_cli("fhir-import", str(export), "--out", str(out), "--as-of", "2026-11-20")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "import-report.json").read_text())
    files = [p["file"] for p in report["patients"]]
    assert [p["patient"] for p in report["patients"]] == [f"Patient/{i}" for i in ids]
    assert len({f.casefold() for f in files}) == 4 and "import-report.json" not in files
    for entry in report["patients"]:
        assert (out / entry["file"]).is_file()
    assert len(list(out.glob("*.json"))) == 5
