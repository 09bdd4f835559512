"""The CDS Hooks services b12dx offers, and the prefetch templates each asks for.

Descriptions live in ``knowledge/data/cds.yaml``; the prefetch queries are built from the
knowledge base's own code tables, so a code added there is asked for here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b12dx.knowledge.loader import Knowledge


@dataclass(frozen=True)
class PrefetchKey:
    key: str
    template: str
    # An optional key the client did not send, with no FHIR server to ask, is left out
    # (and said so); a required one makes the call fail with 412.
    required: bool


# Many FHIR servers and proxies refuse a URL over 2 KB. The codes are given bare (a FHIR
# token search without a system matches the code in any system): the reader maps each
# coding by its system anyway, and a SNOMED CT id, a LOINC code and a b12dx code cannot
# be mistaken for one another.
MAX_TEMPLATE_CHARS = 2000


def _codes_param(pairs: list[tuple[str, str]]) -> str:
    return ",".join(dict.fromkeys(code for _, code in pairs))


def prefetch_keys(kb: Knowledge) -> list[PrefetchKey]:
    """What the engine needs about a patient, as FHIR searches on {{context.patientId}}."""
    cached = kb.derived.get(("cds", "prefetch"))
    if cached is not None:
        return list(cached)
    lab_codes: list[tuple[str, str]] = [
        (c.system, c.code) for lab in kb.labs.values() for c in lab.codes
    ]
    finding_codes: list[tuple[str, str]] = [
        (c.system, c.code) for s in kb.symptoms.values() for c in s.codes if c.system == "SNOMED CT"
    ]
    finding_codes += [(c.system, c.code) for c in kb.fhir.symptom_observation]
    finding_codes += [(c.system, c.code) for c in kb.fhir.pregnancy if c.system == "LOINC"]
    finding_codes += [(c.system, c.code) for codes in kb.fhir.diet.values() for c in codes]
    p = "{{context.patientId}}"
    keys = [
        PrefetchKey("patient", f"Patient/{p}", True),
        PrefetchKey("conditions", f"Condition?patient={p}", True),
        PrefetchKey("labs", f"Observation?patient={p}&code={_codes_param(lab_codes)}", True),
        PrefetchKey(
            "findings", f"Observation?patient={p}&code={_codes_param(finding_codes)}", False
        ),
        PrefetchKey("medicationRequests", f"MedicationRequest?patient={p}", True),
        PrefetchKey("medicationStatements", f"MedicationStatement?patient={p}", False),
        PrefetchKey("medicationAdministrations", f"MedicationAdministration?patient={p}", False),
        PrefetchKey("procedures", f"Procedure?patient={p}", True),
    ]
    kb.derived[("cds", "prefetch")] = tuple(keys)
    return keys


def discovery(kb: Knowledge) -> dict[str, Any]:
    """The body of GET /cds-services (CDS Hooks 2.0.1, Discovery)."""
    prefetch = {k.key: k.template for k in prefetch_keys(kb)}
    services = []
    for s in kb.cds.services:
        entry: dict[str, Any] = {
            "hook": s.hook,
            "title": s.title,
            "description": " ".join(s.description.split()),
            "id": s.id,
            "prefetch": prefetch,
        }
        if s.usage_requirements:
            entry["usageRequirements"] = " ".join(s.usage_requirements.split())
        services.append(entry)
    return {"services": services}
