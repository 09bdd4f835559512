"""What b12dx writes as FHIR is valid FHIR R4, by HL7's own JSON Schema
(tests/fixtures/fhir-r4-schema): every `b12dx assess --fhir` Bundle (one per vignette),
a patient's export Bundle, and every resource a CDS card suggests. And an assessment made
from a FHIR record refers to that record's Patient, never to a Patient that does not
exist."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from b12dx.engine import assess
from b12dx.fhir.assess import assess_bundle
from b12dx.fhir.out import assessment_bundle
from b12dx.knowledge import Knowledge

FIXTURES = Path(__file__).parent / "fixtures"
# The vignettes with an assessment (not those whose record is an input error).
VIGNETTES = [
    p
    for p in sorted((Path(__file__).parent / "vignettes").glob("*.json"))
    if "input_errors" not in json.loads(p.read_text()).get("expect", {})
]
TODAY = dt.date(2026, 11, 21)


@cache
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(
        gzip.decompress((FIXTURES / "fhir-r4-schema" / "fhir.schema.json.gz").read_bytes())
    )
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def problems(resource: dict[str, Any]) -> list[str]:
    found = sorted(validator().iter_errors(resource), key=lambda e: list(e.absolute_path))
    # The schema's top level is a oneOf over every resource type: its own message names
    # no field, so the deepest error of the matching branch is reported instead.
    out = []
    for error in found:
        deepest = max(error.context or [error], key=lambda e: len(e.absolute_path))
        path = "/".join(str(p) for p in deepest.absolute_path)
        out.append(f"{path}: {deepest.message[:200]}")
    return out


def test_the_schema_refuses_what_is_not_fhir() -> None:
    """A check of the check: the schema catches a wrong field and a wrong type."""
    good = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
    assert problems(good) == []
    assert problems({**good, "birthDate": "1st of May"})
    assert problems({**good, "shoeSize": 9})
    assert problems({"resourceType": "RiskAssessment", "status": "final"}), "subject is required"


def _vignette(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


@pytest.mark.parametrize("path", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_every_assess_fhir_bundle_is_valid_fhir(path: Path, kb: Knowledge) -> None:
    case = _vignette(path)
    result = assess(case["patient"], profile=case.get("profile"))
    bundle = assessment_bundle(kb, result, None)
    assert problems(bundle) == []
    risk = bundle["entry"][0]["resource"]
    assert risk["subject"] == {"display": "The person assessed (the record gives no patient id)"}


def _synthea_patient() -> list[dict[str, Any]]:
    folder = FIXTURES / "synthea-bulk-10"
    pid = "a5cb8ce9-cec6-6b23-0990-cbaf753578a4"
    out = []
    for file in sorted(folder.glob("*.ndjson")):
        for line in file.read_text().splitlines():
            r = json.loads(line)
            subject = (r.get("subject") or {}).get("reference", "")
            if r.get("id") == pid or subject.endswith(pid):
                out.append(r)
    return out


def _low_b12(pid_reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "b12",
        "status": "final",
        "subject": {"reference": pid_reference},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 110, "unit": "pg/mL"},
    }


def test_an_assessment_of_a_fhir_record_refers_to_its_patient(kb: Knowledge) -> None:
    resources = _synthea_patient()
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in [*resources, _low_b12(f"Patient/{pid}")]],
    }
    result = assess_bundle(bundle, as_of=TODAY, knowledge=kb)
    out = assessment_bundle(kb, result, result.fhir_input.patient if result.fhir_input else None)
    assert problems(out) == []
    subjects = {e["resource"]["subject"]["reference"] for e in out["entry"]}
    assert subjects == {f"Patient/{pid}"}


def test_a_patient_without_an_id_is_referred_to_by_its_full_url(kb: Knowledge) -> None:
    url = "urn:uuid:6f1b1d4e-2b0c-4e53-9a55-4b5c7c3c2d11"
    patient = {"resourceType": "Patient", "birthDate": "1958-03-04", "gender": "female"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": url, "resource": patient},
            {"resource": _low_b12(url)},
        ],
    }
    result = assess_bundle(bundle, as_of=TODAY, knowledge=kb)
    assert result.fhir_input is not None and result.fhir_input.patient == url
    out = assessment_bundle(kb, result, result.fhir_input.patient)
    assert {e["resource"]["subject"]["reference"] for e in out["entry"]} == {url}


def test_the_command_line_fhir_bundle_names_the_patient(tmp_path: Path, capsys) -> None:
    from b12dx.cli.app import main

    resources = _synthea_patient()
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    file = tmp_path / "record.json"
    file.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in [*resources, _low_b12(f"Patient/{pid}")]],
            }
        )
    )
    try:
        main(["assess", str(file), "--fhir", "--as-of", TODAY.isoformat()])
    except SystemExit as exc:
        assert not exc.code
    out = json.loads(capsys.readouterr().out)
    assert problems(out) == []
    assert "Patient/unknown" not in json.dumps(out)
    assert out["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{pid}"}
