"""The differential diagnosis with how well each alternative fits (seed comparison tables,
clinical-reference §8)."""

from __future__ import annotations

from b12dx.engine.explain import explained
from b12dx.engine.findings import STRAIN, Findings, differential_fit, feature_facts
from b12dx.engine.labs import LabSummary
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DifferentialItem

_ORDER = {"good": 0, "partial": 1, "poor": 2}


def weigh(kb: Knowledge, f: Findings, labs: LabSummary) -> list[DifferentialItem]:
    bands = {test: r.item.band for test, r in labs.usable.items()}
    facts = feature_facts(kb, f.patient, f.symptoms, bands)
    # Ordinary strain is weighed on the symptoms as the strain rule reads them (rule
    # suspicion.strain_aching: an ache after exertion is the strain's local aching).
    strain_facts = (
        facts
        if f.strain_symptoms is f.symptoms
        else feature_facts(kb, f.patient, f.strain_symptoms, bands)
    )
    out: list[DifferentialItem] = []
    group = kb.triage.age_group(f.patient.age_years).id
    for d in kb.differentials.values():
        if d.age_groups and group not in d.age_groups:
            continue  # Rule differential.age_group: not weighed at this age
        seen = strain_facts if d.id == STRAIN else facts
        fit, supports, against = differential_fit(f.patient, seen, d)
        if f.red_flags and fit == "poor":
            continue  # Rule emergency.whole_plan: only what the emergency team may weigh
        name, features = (
            (d.young_name or d.name, d.young_features or d.features)
            if f.under_16
            else (d.name, d.features)
        )
        detail = f"{name} ({fit} fit"
        if supports:
            detail += f"; for: {', '.join(supports)}"
        if against:
            detail += f"; against: {', '.join(against)}"
        text = f"{detail}). {features} {d.b12_contrast}"
        out.append(
            explained(
                kb,
                DifferentialItem,
                "differential.fit",
                text=text,
                sources=d.sources,
                id=d.id,
                name=name,
                fit=fit,
                matched_features=supports,
                against_features=against,
            )
        )
    return sorted(out, key=lambda x: _ORDER[x.fit])
