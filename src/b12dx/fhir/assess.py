"""Assess a patient given as FHIR: Bundle -> record -> engine -> assessment + what was used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from b12dx.engine.assess import assess
from b12dx.fhir.read import Resource, bundle_resources
from b12dx.fhir.record import FhirImport, record_from_resources
from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.models.assessment import Assessment, FhirInput, ResourceUse


def with_fhir_input(result: Assessment, imported: FhirImport) -> Assessment:
    report = FhirInput(
        patient=imported.patient_reference,
        used=[ResourceUse(resource=n.reference, note=n.note) for n in imported.used],
        ignored=[ResourceUse(resource=n.reference, note=n.note) for n in imported.ignored],
    )
    return result.model_copy(update={"fhir_input": report})


def assess_resources(
    resources: Sequence[Resource],
    *,
    as_of: dt.date,
    profile: str | None = None,
    knowledge: Knowledge | None = None,
    shared: Mapping[str, Resource] | None = None,
) -> tuple[Assessment, FhirImport]:
    kb = knowledge or load_knowledge()
    imported = record_from_resources(resources, as_of, kb, shared=shared)
    result = assess(imported.record, profile=profile, knowledge=kb)
    return with_fhir_input(result, imported), imported


def assess_bundle(
    bundle: Mapping[str, Any],
    *,
    as_of: dt.date,
    profile: str | None = None,
    knowledge: Knowledge | None = None,
) -> Assessment:
    """Assess the one patient in a FHIR R4 Bundle as of ``as_of``."""
    result, _ = assess_resources(
        bundle_resources(bundle), as_of=as_of, profile=profile, knowledge=knowledge
    )
    return result
