"""JSON Schema of the contract, generated from the models, with the accepted ids and test
names filled in from the knowledge base (so the schema and the engine agree by
construction)."""

from __future__ import annotations

from typing import Any

from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.models.patient import PatientRecord

_ID_ENUMS = {
    "SymptomEntry": "symptoms",
    "ConditionEntry": "conditions",
    "MedicationEntry": "medications",
    "ExposureEntry": "exposures",
    "SymptomRating": "symptoms",
}


def input_schema(
    kb: Knowledge | None = None, ref_template: str = "#/$defs/{model}"
) -> dict[str, Any]:
    kb = kb or load_knowledge()
    schema = PatientRecord.model_json_schema(ref_template=ref_template)
    schema["$id"] = "https://b12dx.example/schema/v1/input.json"
    schema["title"] = "b12dx patient record (contract version 1)"
    defs = schema["$defs"]
    tables: dict[str, Any] = kb.topics()
    for name, topic in _ID_ENUMS.items():
        defs[name]["properties"]["id"]["enum"] = list(tables[topic])
    defs["LabResult"]["properties"]["test"]["enum"] = list(kb.labs)
    defs["LabResult"]["properties"]["unit"]["description"] = "; ".join(
        f"{t.id}: {', '.join(u.unit for u in t.units)}" for t in kb.labs.values() if t.units
    )
    return schema


def output_schema() -> dict[str, Any]:
    schema = Assessment.model_json_schema()
    schema["$id"] = "https://b12dx.example/schema/v1/output.json"
    schema["title"] = "b12dx assessment (contract version 1)"
    return schema
