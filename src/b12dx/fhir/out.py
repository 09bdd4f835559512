"""An assessment as FHIR R4: the suggested orders and the risk, for an EHR to file.

- ServiceRequest (status draft, intent proposal) for each test the next steps order,
  coded with the test's LOINC code (the ordering codes live in next_steps.yaml);
- MedicationRequest (draft proposal) for the regimen, one dosage instruction per run
  of the dated schedule (loading on alternate days, then every 3 months, ...);
- RiskAssessment carrying the suspicion, the deficiency status and the urgency, with
  the resources it was based on.

The CDS Hooks cards suggest exactly these resources, so an order looks the same whether
it comes from a card or from ``b12dx assess --fhir``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from b12dx.engine.schedule import dose_runs
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment, Treatment
from b12dx.models.knowledge import Code

# Risk probability codes of FHIR R4 (http://hl7.org/fhir/R4/valueset-risk-probability.html).
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"


def subject(patient: str | None) -> dict[str, str]:
    """The Reference to the person assessed: their Patient (``Patient/id``, or the
    Bundle's ``urn:uuid:`` fullUrl when the Patient had no id), or, for a record that
    names no patient (a b12dx contract record), a Reference that says so in words rather
    than one that points at no resource."""
    if patient:
        return {"reference": patient}
    return {"display": "The person assessed (the record gives no patient id)"}


def coding(kb: Knowledge, code: Code) -> dict[str, str]:
    uri = next(cs.uris[0] for cs in kb.fhir.code_systems if cs.name == code.system)
    return {"system": uri, "code": code.code, "display": code.display}


def _concept(kb: Knowledge, codes: Iterable[Code], text: str) -> dict[str, Any]:
    return {"coding": [coding(kb, c) for c in codes], "text": text}


def ordered_test_codes(kb: Knowledge, step_id: str) -> list[Code]:
    """The codes to order the test a next step names (empty when it orders no test)."""
    step = kb.next_steps.get(step_id)
    return list(step.order_codes) if step is not None else []


def service_request(
    kb: Knowledge, step_id: str, patient: str | None, reason: str
) -> dict[str, Any]:
    codes = ordered_test_codes(kb, step_id)
    if not codes:
        raise ValueError(f"next step {step_id!r} orders no test")
    step = kb.next_steps[step_id]
    return {
        "resourceType": "ServiceRequest",
        "id": str(uuid.uuid4()),
        "status": "draft",
        "intent": "proposal",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "108252007",
                        "display": "Laboratory procedure",
                    }
                ]
            }
        ],
        "code": _concept(kb, codes, step.text.rstrip(".")),
        "subject": subject(patient),
        "reasonCode": [{"text": reason}],
        "note": [{"text": f"Suggested by b12dx ({', '.join(step.sources)})."}],
    }


def _timing(interval: str, count: int, first: str, last: str) -> dict[str, Any]:
    repeat: dict[str, Any] = {"boundsPeriod": {"start": first, "end": last}, "count": count}
    m = re.fullmatch(r"every (\d+) (days|months)", interval)
    if interval == "daily":
        repeat.update(frequency=1, period=1, periodUnit="d")
    elif interval == "monthly":
        repeat.update(frequency=1, period=1, periodUnit="mo")
    elif m:
        repeat.update(frequency=1, period=int(m[1]), periodUnit="d" if m[2] == "days" else "mo")
    return {"repeat": repeat}


def _dose_quantity(dose: str) -> dict[str, Any] | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?) (mg|micrograms)", dose.strip())
    if not m:
        return None
    unit = "mg" if m[2] == "mg" else "ug"
    return {"value": float(m[1]), "unit": m[2], "system": "http://unitsofmeasure.org", "code": unit}


def medication_request(kb: Knowledge, treatment: Treatment, patient: str | None) -> dict[str, Any]:
    """The regimen as a draft MedicationRequest, one dosage instruction per schedule run."""
    drug_codes = {str(k): v for k, v in kb.fhir.b12_drugs.items()}.get(treatment.drug, [])
    route_codes = {str(k): v for k, v in kb.fhir.routes.items()}.get(treatment.route, [])
    dosage = []
    for seq, (phase, first, last, interval, count, dose) in enumerate(
        dose_runs(treatment.schedule), start=1
    ):
        instruction: dict[str, Any] = {
            "sequence": seq,
            "text": f"{dose} {treatment.route.upper()} {interval}, {count} doses "
            f"({phase}, {first} to {last})",
            "timing": _timing(interval, count, first.isoformat(), last.isoformat()),
        }
        if route_codes:
            instruction["route"] = _concept(kb, route_codes, treatment.route)
        quantity = _dose_quantity(dose)
        if quantity:
            instruction["doseAndRate"] = [{"doseQuantity": quantity}]
        dosage.append(instruction)
    return {
        "resourceType": "MedicationRequest",
        "id": str(uuid.uuid4()),
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": _concept(kb, drug_codes, treatment.drug),
        "subject": subject(patient),
        "reasonCode": [{"text": "Vitamin B12 deficiency"}],
        "note": [
            {
                "text": f"{treatment.name}: {treatment.text} Duration: "
                f"{treatment.duration_text}. Reviews: "
                + (", ".join(d.isoformat() for d in treatment.review_dates) or "none planned")
                + f". Sources: {', '.join(treatment.sources)}."
            }
        ],
        "dosageInstruction": dosage,
    }


def risk_assessment(result: Assessment, patient: str | None) -> dict[str, Any]:
    basis = [
        {"reference": u.resource} for u in (result.fhir_input.used if result.fhir_input else [])
    ]
    summary = (
        f"B12 deficiency status {result.deficiency_status}; suspicion {result.suspicion.level}; "
        f"urgency {result.urgency}."
    )
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": str(uuid.uuid4()),
        "status": "final",
        "subject": subject(patient),
        "occurrenceDateTime": result.as_of.isoformat(),
        "method": {
            "text": f"b12dx {result.engine_version}, knowledge {result.knowledge_version}, "
            f"profile {result.profile}"
        },
        "prediction": [
            {
                "outcome": {"text": "Vitamin B12 deficiency with neurological involvement"},
                "qualitativeRisk": {
                    "coding": [{"system": RISK_PROBABILITY, "code": result.suspicion.level}]
                },
                "rationale": " ".join(r.text for r in result.suspicion.reasons)[:1000] or summary,
            }
        ],
        "note": [{"text": summary}],
    }
    if basis:
        resource["basis"] = basis
    return resource


def assessment_bundle(kb: Knowledge, result: Assessment, patient: str | None) -> dict[str, Any]:
    """A collection Bundle: the risk assessment, the suggested tests and the regimen."""
    resources = [risk_assessment(result, patient)]
    reason = f"B12 deficiency {result.deficiency_status}, suspicion {result.suspicion.level}"
    for step in result.next_steps:
        if ordered_test_codes(kb, step.id):
            resources.append(service_request(kb, step.id, patient, reason))
    if result.treatment is not None and not result.treatment.under_way:
        resources.append(medication_request(kb, result.treatment, patient))
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
