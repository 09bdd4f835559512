"""One stored patient as a FHIR R4 Bundle (type collection), and back.

Export (``export_bundle``) writes what is recorded about the person, valid against the
``fhir.resources`` R4B models (which read R4):

- Patient: ``name[0].text`` (the name as the clinic knows the person), ``birthDate``,
  ``gender`` (b12dx's sex values are FHIR's), the b12dx id as an identifier, and b12dx
  extensions for diet, family background (ethnicity), breastfeeding and the profile.
- Condition per recorded condition: the knowledge base's ICD-10 and SNOMED CT codes, clinical
  status active, ``recordedDate``; the eGFR of chronic kidney disease as an extension.
- MedicationStatement per medicine: its ATC/RxNorm codes, ``effectivePeriod`` start (since)
  and end (stopped), status active or stopped.
- Observation per lab result: the test's LOINC code (the one for the unit's kind, mass or
  moles, where the test has both), ``valueQuantity`` in the unit recorded with its UCUM
  code, ``effectiveDateTime``, ``referenceRange``; intrinsic factor antibodies as a coded
  positive/negative value.
- Observation per symptom rating: LOINC 75325-1 "Symptom" (the code b12dx reads symptom
  observations by), ``valueCodeableConcept`` the symptom's SNOMED CT code where it has one;
  the rating as a component coded SNOMED CT 246112005 "Severity" whose value is the
  knowledge base's severity code (mild, moderate, severe) or 2667000 "Absent" for none. A
  rating of none also carries the "absent" interpretation, so a reader that looks only at
  interpretation (b12dx's own FHIR reader among them) does not take the symptom as present.
- MedicationAdministration per dose given: the B12 drug's codes, ``dosage.dose`` in mg
  (UCUM), ``dosage.route`` (SNOMED CT), ``performer.actor.display`` who gave it,
  ``effectiveDateTime``.
- Observation (social history) per exposure, its value ongoing or ended; an Observation
  of pregnancy status (LOINC 82810-3, value "Pregnant") when the person is pregnant.

Every coded concept also carries a coding in a b12dx code system
(``https://b12dx.org/fhir/CodeSystem/<kind>``, code = the knowledge base id), so that
b12dx reads its own export exactly, symptoms without a SNOMED CT code included. Stored
assessments and the audit trail are not exported: they are this database's history,
and the importing database starts its own.

Import (``b12dx.store.bundle_import``) reads these resources back, and the same resources
from other systems by their standard codes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from b12dx.engine.units import find_unit
from b12dx.fhir.out import coding
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Code, LabTest
from b12dx.store.tables import (
    DoseEntry,
    LabEntry,
    Patient,
    PatientCondition,
    PatientExposure,
    PatientMedication,
    SymptomRatingEntry,
)

BASE = "https://b12dx.org/fhir"
PATIENT_ID_SYSTEM = f"{BASE}/patient-id"
KINDS = (
    "condition",
    "medication",
    "exposure",
    "lab",
    "symptom",
    "symptom-rating",
    "exposure-status",
    "drug",
    "route",
    "diet",
    "ethnicity",
)
SYSTEM = {kind: f"{BASE}/CodeSystem/{kind}" for kind in KINDS}
EXTENSION = {
    name: f"{BASE}/StructureDefinition/{name}"
    for name in ("diet", "ethnicity", "breastfeeding", "profile", "egfr")
}

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
# SNOMED CT 246112005 |Severity (attribute)|: the component that carries a rating.
SEVERITY_ATTRIBUTE = {"system": SNOMED, "code": "246112005", "display": "Severity"}
ABSENT_SNOMED = "2667000"
PREGNANCY_STATUS = "82810-3"  # LOINC Pregnancy status (kb.fhir.pregnancy)
PREGNANT = "77386006"  # SNOMED CT Pregnant (finding) (kb.fhir.pregnancy)
# The accepted units whose UCUM code is spelt differently (UCUM puts the 1.73 m2 of an
# eGFR in braces, as an annotation); every other accepted unit is its own UCUM code.
UCUM_CODES = {"mL/min/1.73m2": "mL/min/{1.73_m2}"}


def ucum(unit: str) -> str:
    return UCUM_CODES.get(unit, unit)


def b12dx_coding(kind: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": SYSTEM[kind], "code": code}
    if display:
        out["display"] = display
    return out


def concept(
    kb: Knowledge, codes: Iterable[Code], kind: str, entry_id: str, text: str
) -> dict[str, Any]:
    """The knowledge base's codes for an entry, then b12dx's own, with the entry's name."""
    return {
        "coding": [coding(kb, c) for c in codes] + [b12dx_coding(kind, entry_id, text)],
        "text": text,
    }


def _category(system: str, code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": system, "code": code}]}]


def _day(day: dt.date) -> str:
    return day.isoformat()


def lab_codes(test: LabTest, unit: str | None) -> list[Code]:
    """The LOINC code for a result: the one of the unit's kind (``[Mass/volume]`` for a
    mass unit, ``[Moles/volume]`` for a molar one) where the test has both, else the
    test's first."""
    loinc = [c for c in test.codes if c.system == "LOINC"]
    if not loinc:
        return []
    found = next((u for u in test.units if unit is not None and u.unit == unit), None)
    kind = {"mass": "[Mass/", "molar": "[Moles/"}.get(found.family if found else "")
    if kind is not None:
        for c in loinc:
            if kind in c.display:
                return [c]
    return [loinc[0]]


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


class _Exporter:
    def __init__(self, kb: Knowledge, patient: Patient) -> None:
        self.kb = kb
        self.patient = patient
        self.subject = {"reference": f"Patient/{patient.id}"}
        self.resources: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def add(self, kind: str, resource: dict[str, Any]) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        rtype = resource.pop("resourceType")
        self.resources.append({"resourceType": rtype, "id": f"{kind}-{n}", **resource})

    # -- the person ------------------------------------------------------------------

    def patient_resource(self) -> dict[str, Any]:
        p = self.patient
        diet: dict[str, Any] = {"coding": [b12dx_coding("diet", p.diet)], "text": p.diet}
        for code in self.kb.fhir.diet.get(p.diet, []):  # type: ignore[call-overload]
            diet["coding"].insert(0, coding(self.kb, code))
        extension: list[dict[str, Any]] = [
            {"url": EXTENSION["diet"], "valueCodeableConcept": diet},
            {"url": EXTENSION["ethnicity"], "valueCoding": b12dx_coding("ethnicity", p.ethnicity)},
            {"url": EXTENSION["breastfeeding"], "valueBoolean": p.breastfeeding},
        ]
        if p.profile:
            extension.append({"url": EXTENSION["profile"], "valueString": p.profile})
        return {
            "resourceType": "Patient",
            "id": p.id,
            "identifier": [{"system": PATIENT_ID_SYSTEM, "value": p.id}],
            "name": [{"text": p.name}],
            "gender": p.sex,
            "birthDate": _day(p.birth_date),
            "extension": extension,
        }

    def condition(self, c: PatientCondition) -> None:
        entry = self.kb.conditions[c.condition_id]
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {
                "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]
            },
            "category": _category(CONDITION_CATEGORY, "problem-list-item"),
            "code": concept(self.kb, entry.codes, "condition", entry.id, entry.name),
            "subject": self.subject,
            "recordedDate": _day(c.recorded_on),
        }
        if c.egfr is not None:
            unit = "mL/min/1.73m2"
            resource["extension"] = [
                {"url": EXTENSION["egfr"], "valueQuantity": _quantity(c.egfr, unit, ucum(unit))}
            ]
        self.add("condition", resource)

    def medication(self, m: PatientMedication) -> None:
        entry = self.kb.medications[m.medication_id]
        resource: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "status": "stopped" if m.stopped_on is not None else "active",
            "medicationCodeableConcept": concept(
                self.kb, entry.codes, "medication", entry.id, entry.name
            ),
            "subject": self.subject,
        }
        period = {
            key: _day(day)
            for key, day in (("start", m.started_on), ("end", m.stopped_on))
            if day is not None
        }
        if period:
            resource["effectivePeriod"] = period
        self.add("medication", resource)

    def exposure(self, e: PatientExposure) -> None:
        entry = self.kb.exposures[e.exposure_id]
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": _category(OBSERVATION_CATEGORY, "social-history"),
            "code": concept(self.kb, entry.codes, "exposure", entry.id, entry.name),
            "subject": self.subject,
        }
        if e.ongoing is not None:
            state = "ongoing" if e.ongoing else "ended"
            resource["valueCodeableConcept"] = {
                "coding": [b12dx_coding("exposure-status", state)],
                "text": state,
            }
        self.add("exposure", resource)

    def pregnancy(self) -> None:
        codes = {c.code: c for c in self.kb.fhir.pregnancy}
        self.add(
            "pregnancy",
            {
                "resourceType": "Observation",
                "status": "final",
                "category": _category(OBSERVATION_CATEGORY, "social-history"),
                "code": {"coding": [coding(self.kb, codes[PREGNANCY_STATUS])]},
                "subject": self.subject,
                "valueCodeableConcept": {"coding": [coding(self.kb, codes[PREGNANT])]},
            },
        )

    # -- over time -------------------------------------------------------------------

    def lab(self, lab: LabEntry) -> None:
        test = self.kb.labs[lab.test]
        canonical = find_unit(self.kb, test, lab.unit) if lab.unit else None
        code = concept(
            self.kb,
            lab_codes(test, canonical.unit if canonical else None),
            "lab",
            test.id,
            test.name,
        )
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": _category(OBSERVATION_CATEGORY, "laboratory"),
            "code": code,
            "subject": self.subject,
            "effectiveDateTime": _day(lab.taken_on),
        }
        if lab.value_number is not None and lab.unit:
            ucum_code = ucum(canonical.unit if canonical else lab.unit)
            resource["valueQuantity"] = _quantity(lab.value_number, lab.unit, ucum_code)
            limits = {
                key: _quantity(value, lab.unit, ucum_code)
                for key, value in (("low", lab.reference_low), ("high", lab.reference_high))
                if value is not None
            }
            if limits:
                resource["referenceRange"] = [limits]
        else:
            table = self.kb.fhir.positive if lab.value_text == "positive" else self.kb.fhir.negative
            resource["valueCodeableConcept"] = {
                "coding": [coding(self.kb, c) for c in table if c.system == "SNOMED CT"],
                "text": lab.value_text,
            }
        self.add("lab", resource)

    def rating(self, r: SymptomRatingEntry) -> None:
        symptom = self.kb.symptoms[r.symptom_id]
        snomed = [c for c in symptom.codes if c.system == "SNOMED CT"]
        if r.rating == "none":
            grade = [c for c in self.kb.fhir.absent if c.code == ABSENT_SNOMED]
        else:
            grade = list(self.kb.fhir.severity[r.rating])  # type: ignore[index]
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": _category(OBSERVATION_CATEGORY, "survey"),
            "code": {
                "coding": [coding(self.kb, c) for c in self.kb.fhir.symptom_observation],
                "text": "Symptom",
            },
            "subject": self.subject,
            "effectiveDateTime": _day(r.rated_on),
            "valueCodeableConcept": concept(
                self.kb, snomed, "symptom", symptom.id, symptom.clinical_name or symptom.name
            ),
            "component": [
                {
                    "code": {"coding": [SEVERITY_ATTRIBUTE], "text": "Severity"},
                    "valueCodeableConcept": {
                        "coding": [coding(self.kb, c) for c in grade]
                        + [b12dx_coding("symptom-rating", r.rating)],
                        "text": r.rating,
                    },
                }
            ],
        }
        if r.rating == "none":
            resource["interpretation"] = [
                {"coding": [coding(self.kb, c) for c in self.kb.fhir.absent], "text": "absent"}
            ]
        self.add("rating", resource)

    def dose(self, d: DoseEntry) -> None:
        drug_codes = self.kb.fhir.b12_drugs.get(d.drug, [])  # type: ignore[call-overload]
        route_codes = self.kb.fhir.routes.get(d.route, [])  # type: ignore[call-overload]
        self.add(
            "dose",
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": concept(self.kb, drug_codes, "drug", d.drug, d.drug),
                "subject": self.subject,
                "effectiveDateTime": _day(d.given_on),
                "performer": [{"actor": {"display": d.given_by}}],
                "dosage": {
                    "route": concept(self.kb, route_codes, "route", d.route, d.route),
                    "dose": _quantity(d.dose_mg, "mg", "mg"),
                },
            },
        )


def export_bundle(kb: Knowledge, patient: Patient, now: dt.datetime) -> dict[str, Any]:
    """The Bundle of one patient (loaded with its history), checked against FHIR R4B."""
    ex = _Exporter(kb, patient)
    first = ex.patient_resource()
    for c in patient.conditions:
        ex.condition(c)
    for m in patient.medications:
        ex.medication(m)
    for e in patient.exposures:
        ex.exposure(e)
    if patient.pregnant:
        ex.pregnancy()
    for lab in patient.labs:
        ex.lab(lab)
    for r in patient.ratings:
        ex.rating(r)
    for d in patient.doses:
        ex.dose(d)
    resources = [first, *ex.resources]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "entry": [{"fullUrl": full_url(patient.id, r), "resource": r} for r in resources],
    }
    validate(bundle)
    return bundle


def full_url(patient_id: str, resource: dict[str, Any]) -> str:
    """A stable urn:uuid for a resource of this export (the same on every export)."""
    name = f"{BASE}/{patient_id}/{resource['resourceType']}/{resource['id']}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def validate(bundle: dict[str, Any]) -> None:
    """Raise ValueError when the Bundle or one of its resources is not valid FHIR R4B."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
