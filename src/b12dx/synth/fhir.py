"""Synthetic records -> a FHIR R4 Bulk Data export (one NDJSON file per resource type).

Written the way b12dx's FHIR import reads a Synthea export (``b12dx.fhir.record``):
Patient; Condition (diagnoses, and symptoms as active problem-list findings with their
onset); Procedure (gastrectomy, bariatric surgery, ileal resection); MedicationRequest
(one order per yearly renewal, the latest active and the earlier ones completed, so a
course reads as one run); MedicationAdministration (B12 injections, route and dose);
Observation (B12 and MMA with a UCUM valueQuantity; diet and recreational nitrous oxide
as coded findings). Codes and system URIs come from the knowledge base.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from b12dx.fhir.codes import code_index
from b12dx.knowledge.loader import Knowledge
from b12dx.synth.events import RESULT_UNITS, Concepts, Records, Rows
from b12dx.synth.population import Population, practice_of

RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Procedure",
    "MedicationRequest",
    "MedicationAdministration",
    "Observation",
)
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
_UCUM = "http://unitsofmeasure.org"


class FhirWriter:
    def __init__(self, out: Path, as_of: dt.date, concepts: Concepts, kb: Knowledge) -> None:
        self.out, self.concepts = out, concepts
        self.as_of = np.datetime64(as_of, "D")
        index = code_index(kb)
        self._concept = [
            {"coding": [{"system": index.uri_by_system[e.code.system], "code": e.code.code,
                         "display": e.code.display}], "text": e.code.display}
            for e in concepts.entries
        ]  # fmt: skip
        im = kb.fhir.routes["im"][0]
        self._route = {"coding": [{"system": index.uri_by_system[im.system], "code": im.code,
                                   "display": im.display}]}  # fmt: skip
        self._files: dict[str, IO[bytes]] = {
            t: (out / f"{t}.ndjson").open("wb") for t in RESOURCE_TYPES
        }
        self._counter = dict.fromkeys(RESOURCE_TYPES, 0)

    def _dates(self, days: np.ndarray) -> list[str]:
        return list(np.datetime_as_string(self.as_of - days.astype("timedelta64[D]")))

    def _emit(self, rtype: str, resources: list[dict[str, Any]]) -> None:
        f = self._files[rtype]
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in resources))

    def _ids(self, rtype: str, n: int) -> range:
        first = self._counter[rtype]
        self._counter[rtype] = first + n
        return range(first + 1, first + n + 1)

    def write_block(self, pop: Population, rec: Records) -> None:
        births = self._dates(pop.birth_day)
        self._emit("Patient", [
            {"resourceType": "Patient", "id": str(p), "gender": "female" if f else "male",
             "birthDate": b, "managingOrganization": {
                 "reference": f"Organization/practice-{s}", "display": f"Practice {s}"}}
            for p, f, b, s in zip(pop.person.tolist(), pop.female.tolist(), births,
                                  practice_of(pop.person).tolist(), strict=True)
        ])  # fmt: skip
        self._conditions(rec.conditions)
        self._procedures(rec.procedures)
        self._orders(rec.orders)
        self._doses(rec.doses)
        self._observations(rec.results, rec.observations)

    def _conditions(self, rows: Rows) -> None:
        clinical = {"coding": [{"system": f"{_TERMINOLOGY}/condition-clinical", "code": "active"}]}
        verified = {
            "coding": [{"system": f"{_TERMINOLOGY}/condition-ver-status", "code": "confirmed"}]
        }
        ids = self._ids("Condition", len(rows))
        self._emit("Condition", [
            {"resourceType": "Condition", "id": f"c{i}", "clinicalStatus": clinical,
             "verificationStatus": verified, "code": self._concept[c],
             "subject": {"reference": f"Patient/{p}"}, "onsetDateTime": d, "recordedDate": d}
            for i, p, c, d in zip(ids, rows.person.tolist(), rows.concept.tolist(),
                                  self._dates(rows.day), strict=True)
        ])  # fmt: skip

    def _procedures(self, rows: Rows) -> None:
        ids = self._ids("Procedure", len(rows))
        self._emit("Procedure", [
            {"resourceType": "Procedure", "id": f"p{i}", "status": "completed",
             "code": self._concept[c], "subject": {"reference": f"Patient/{p}"},
             "performedDateTime": d}
            for i, p, c, d in zip(ids, rows.person.tolist(), rows.concept.tolist(),
                                  self._dates(rows.day), strict=True)
        ])  # fmt: skip

    def _orders(self, rows: Rows) -> None:
        ids = self._ids("MedicationRequest", len(rows))
        self._emit("MedicationRequest", [
            {"resourceType": "MedicationRequest", "id": f"m{i}",
             "status": "active" if a else "completed", "intent": "order",
             "medicationCodeableConcept": self._concept[c],
             "subject": {"reference": f"Patient/{p}"}, "authoredOn": s,
             "dispenseRequest": {"validityPeriod": {"start": s, "end": e}}}
            for i, p, c, s, e, a in zip(ids, rows.person.tolist(), rows.concept.tolist(),
                                        self._dates(rows.day), self._dates(rows.end_day),
                                        rows.active.tolist(), strict=True)
        ])  # fmt: skip

    def _doses(self, rows: Rows) -> None:
        ids = self._ids("MedicationAdministration", len(rows))
        dose = {"value": 1, "unit": "mg", "system": _UCUM, "code": "mg"}
        self._emit("MedicationAdministration", [
            {"resourceType": "MedicationAdministration", "id": f"a{i}", "status": "completed",
             "medicationCodeableConcept": self._concept[c],
             "subject": {"reference": f"Patient/{p}"}, "effectiveDateTime": d,
             "dosage": {"route": self._route, "dose": dose}}
            for i, p, c, d in zip(ids, rows.person.tolist(), rows.concept.tolist(),
                                  self._dates(rows.day), strict=True)
        ])  # fmt: skip

    def _observations(self, results: Rows, findings: Rows) -> None:
        lab = {"coding": [{"system": f"{_TERMINOLOGY}/observation-category",
                           "code": "laboratory"}]}  # fmt: skip
        social = {"coding": [{"system": f"{_TERMINOLOGY}/observation-category",
                              "code": "social-history"}]}  # fmt: skip
        ids = self._ids("Observation", len(results) + len(findings))
        out = [
            {"resourceType": "Observation", "id": f"o{i}", "status": "final",
             "category": [lab], "code": self._concept[c],
             "subject": {"reference": f"Patient/{p}"}, "effectiveDateTime": d,
             "valueQuantity": {"value": int(v) if v.is_integer() else v,
                               "unit": RESULT_UNITS[u], "system": _UCUM,
                               "code": RESULT_UNITS[u]}}
            for i, p, c, d, v, u in zip(ids, results.person.tolist(), results.concept.tolist(),
                                        self._dates(results.day), results.value.tolist(),
                                        results.unit.tolist(), strict=False)
        ]  # fmt: skip
        rest = ids[len(results) :]
        out += [
            {"resourceType": "Observation", "id": f"o{i}", "status": "final",
             "category": [social], "code": self._concept[c],
             "subject": {"reference": f"Patient/{p}"}, "effectiveDateTime": d}
            for i, p, c, d in zip(rest, findings.person.tolist(), findings.concept.tolist(),
                                  self._dates(findings.day), strict=True)
        ]  # fmt: skip
        self._emit("Observation", out)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
