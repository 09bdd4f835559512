"""A stored patient's history as the contract record the engine reads, as it stood on a
given date: everything recorded on or before ``as_of`` and nothing after. Pure: no
database access (the caller loads the patient with its history)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from b12dx.engine.validate import parse_patient
from b12dx.fhir.values import age_on
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.patient import PatientRecord
from b12dx.numbers import DAYS_PER_MONTH
from b12dx.store.tables import Patient

_RANK = {"none": 0, "mild": 1, "moderate": 2, "severe": 3}


def age_years(birth_date: dt.date, as_of: dt.date) -> float:
    """The age the engine is given, as every FHIR reader counts it (fhir.values.age_on)."""
    return age_on(birth_date, as_of)


def _symptoms(patient: Patient, as_of: dt.date) -> list[dict[str, Any]]:
    """The symptoms present on ``as_of``: those whose latest rating is above none. Their
    duration counts from the first rating of the unbroken run above none, so it is the
    known minimum (the symptom may have begun before anyone rated it). Onset and
    progression are not inferred from ratings: they decide red flags, and a rating
    history cannot tell a sudden onset from a late first rating. For the same reason a
    first rating within triage's acute window (triage.yaml) gives no duration: that the
    symptom was first rated this week does not say it began this week, unless it was rated
    none within that window too."""
    by_symptom: dict[str, list[tuple[dt.date, str]]] = {}
    for r in patient.ratings:
        if r.rated_on <= as_of:
            by_symptom.setdefault(r.symptom_id, []).append((r.rated_on, r.rating))
    window = load_knowledge().triage.tempo.acute_within_days
    out: list[dict[str, Any]] = []
    for sid, ratings in by_symptom.items():
        ratings.sort()
        if ratings[-1][1] == "none":
            continue
        first = ratings[-1][0]
        absent: dt.date | None = None  # the last day it was rated none before the run
        for day, rating in reversed(ratings):
            if rating == "none":
                absent = day
                break
            first = day
        entry: dict[str, Any] = {"id": sid, "severity": ratings[-1][1]}
        days = (as_of - first).days
        if days > window or (absent is not None and (as_of - absent).days <= window):
            entry["duration_weeks"] = round(days / 7, 1)
        out.append(entry)
    return out


def _medications(patient: Patient, as_of: dt.date) -> list[dict[str, Any]]:
    current: dict[str, float | None] = {}
    for m in patient.medications:
        if m.started_on is not None and m.started_on > as_of:
            continue
        if m.stopped_on is not None and m.stopped_on <= as_of:
            continue
        months = (
            None if m.started_on is None else round((as_of - m.started_on).days / DAYS_PER_MONTH, 1)
        )
        if m.medication_id in current:
            known = current[m.medication_id]
            months = max(known, months) if known is not None and months is not None else None
        current[m.medication_id] = months
    return [
        {"id": mid} if months is None else {"id": mid, "duration_months": months}
        for mid, months in current.items()
    ]


def nothing_recorded(patient: Patient) -> bool:
    """Whether nothing clinical is recorded yet (no rating, result, condition, medicine,
    exposure or dose): the engine would then call a person "self care", which says
    nothing about someone nobody has asked about yet."""
    return not (
        patient.labs
        or patient.ratings
        or patient.conditions
        or patient.medications
        or patient.exposures
        or patient.doses
    )


def record_at(patient: Patient, as_of: dt.date) -> PatientRecord:
    """The contract record of ``patient`` on ``as_of``."""
    data: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "age_years": age_years(patient.birth_date, as_of),
        "sex": patient.sex,
        "pregnant": patient.pregnant,
        "breastfeeding": patient.breastfeeding,
        "ethnicity": patient.ethnicity,
        "diet": patient.diet,
        "symptoms": _symptoms(patient, as_of),
        "conditions": [
            {"id": c.condition_id} | ({"egfr": c.egfr} if c.egfr is not None else {})
            for c in patient.conditions
        ],
        "medications": _medications(patient, as_of),
        "exposures": [
            {"id": e.exposure_id} | ({"ongoing": e.ongoing} if e.ongoing is not None else {})
            for e in patient.exposures
        ],
        "labs": [
            {
                "test": lab.test,
                "value": lab.value_number if lab.value_number is not None else lab.value_text,
                "date": lab.taken_on.isoformat(),
            }
            | ({"unit": lab.unit} if lab.unit else {})
            | ({"reference_low": lab.reference_low} if lab.reference_low is not None else {})
            | ({"reference_high": lab.reference_high} if lab.reference_high is not None else {})
            for lab in patient.labs
            if lab.taken_on <= as_of
        ],
        "b12_treatment": [
            {"date": d.given_on.isoformat(), "drug": d.drug, "route": d.route, "dose_mg": d.dose_mg}
            for d in patient.doses
            if d.given_on <= as_of
        ],
    }
    data["symptom_ratings"] = [
        {"id": r.symptom_id, "date": r.rated_on.isoformat(), "rating": r.rating}
        for r in patient.ratings
        if r.rated_on <= as_of
    ]
    return parse_patient(data)
