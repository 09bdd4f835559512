"""A FHIR R4 Bundle of one patient -> a new stored patient: the Bundle is read into a plan
(``b12dx.store.bundle_read``, pure), then the plan is written here, in the caller's
transaction, through the same functions the command line uses (``patients``,
``entries``), so every value passes the same checks and every change is audited.

What happens to each resource:

- used: it becomes a condition, medicine, exposure, lab result, symptom rating, dose
  given, pregnancy or diet of the new patient;
- ignored, with the reason (reported, never dropped silently): a resource type b12dx does
  not keep, a code not in its tables, a status that does not count (not final, refuted,
  resolved, not taken), a resource about another patient, an exact repeat of one already
  read, or one lacking what b12dx needs to place it (a date, a rating, a dose, a route);
- refused: the import stops with an InputError naming the resource and field and nothing
  is written, when the file is not a Bundle of exactly one Patient, when a resource b12dx
  uses is not valid FHIR R4, or when a value it would store is refused by the checks (a
  unit that is not the test's, an impossible value, a date in the future...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from b12dx.errors import FieldError, InputError, ProfileError
from b12dx.fhir.record import ResourceNote
from b12dx.knowledge.loader import Knowledge
from b12dx.store import audit, entries, patients
from b12dx.store.audit import Actor
from b12dx.store.bundle_read import Action, read_bundle, refused
from b12dx.store.tables import Patient

# Where each stored field comes from, so that a refused value is named by its element.
FIELDS: dict[str, dict[str, str]] = {
    "lab": {
        "test": "code",
        "lab": "code",
        "value": "value[x]",
        "unit": "valueQuantity.unit",
        "date": "effectiveDateTime",
        "reference_low": "referenceRange.low",
        "reference_high": "referenceRange.high",
    },
    "rating": {
        "symptom": "valueCodeableConcept",
        "rating": "component.valueCodeableConcept",
        "date": "effectiveDateTime",
    },
    "dose": {
        "date": "effectiveDateTime",
        "drug": "medicationCodeableConcept",
        "dose": "dosage.dose",
        "route": "dosage.route",
        "given_by": "performer.actor.display",
    },
    "medication": {
        "since": "effectivePeriod.start",
        "stopped": "effectivePeriod.end",
        "medication": "medicationCodeableConcept",
    },
    "exposure": {"exposure": "code"},
    "patient": {
        "name": "name",
        "birth_date": "birthDate",
        "sex": "gender",
        "diet": "extension(diet)",
        "ethnicity": "extension(ethnicity)",
        "condition": "code",
        "egfr": "extension(egfr)",
        "breastfeeding": "extension(breastfeeding)",
        "pregnant": "gender",
    },
}


@dataclass(frozen=True)
class Imported:
    patient: Patient
    used: list[ResourceNote]
    ignored: list[ResourceNote]


def _at(reference: str, fields: Mapping[str, str], exc: InputError) -> InputError:
    """The store's error, with each field named as the resource and element it came from."""
    return InputError(
        [
            FieldError(
                f"{reference}.{fields.get(e.path, e.path)}" if e.path else reference,
                e.message,
                e.accepted,
            )
            for e in exc.errors
        ]
    )


def _write(
    session: Session, kb: Knowledge, actor: Actor, now: dt.datetime, p: Patient, a: Action
) -> None:
    v = a.values
    if a.kind == "lab":
        entries.add_lab(session, kb, actor, now, p, **v)
    elif a.kind == "rating":
        entries.add_rating(session, kb, actor, now, p, **v)
    elif a.kind == "dose":
        entries.add_dose(session, actor, now, p, **v)
    elif a.kind == "medication":
        mid = v["medication"]
        patients.update(session, kb, actor, now, p, start_medications=[(mid, v["since"])])
        if v["stopped"] is not None:
            patients.update(session, kb, actor, now, p, stop_medications=[(mid, v["stopped"])])
    else:
        patients.update(session, kb, actor, now, p, add_exposures=[v["exposure"]])
        if v["ongoing"] is False:
            patients.update(session, kb, actor, now, p, end_exposures=[v["exposure"]])


def import_bundle(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    data: Any,
    source: str,
) -> Imported:
    """A new patient from a Bundle's JSON, in the caller's transaction (on any error the
    caller rolls back and nothing is written). ``source`` names the file in the audit."""
    plan = read_bundle(kb, data, now.date())
    d = plan.details
    ref = plan.patient_ref
    on_patient = FIELDS["patient"]
    try:
        patient = patients.add(
            session,
            kb,
            actor,
            now,
            name=d["name"],
            birth_date=d["birth_date"],
            sex=d["sex"],
            diet=d.get("diet", "omnivore"),
            ethnicity=d.get("ethnicity", "unknown"),
            conditions=[cid for _, cid, _, _ in plan.conditions],
            profile=d.get("profile"),
        )
    except InputError as exc:
        raise _at(ref, on_patient, exc) from None
    except ProfileError as exc:
        raise refused(ref, "extension(profile)", str(exc)) from None
    today = now.date()
    for (cref, cid, day, egfr), row in zip(plan.conditions, patient.conditions, strict=True):
        assert row.condition_id == cid
        if day is not None and day <= today:
            row.recorded_on = day  # when the source recorded it, not the day of the import
        if egfr is not None:
            try:
                patients.update(session, kb, actor, now, patient, egfr=egfr)
            except InputError as exc:
                raise _at(cref, on_patient, exc) from None
    if plan.pregnant or plan.breastfeeding:
        try:
            patients.update(
                session,
                kb,
                actor,
                now,
                patient,
                pregnant=plan.pregnant or None,
                breastfeeding=plan.breastfeeding or None,
            )
        except InputError as exc:
            raise _at(ref, on_patient, exc) from None
    for action in plan.actions:
        try:
            _write(session, kb, actor, now, patient, action)
        except InputError as exc:
            raise _at(action.reference, FIELDS[action.kind], exc) from None
    audit.record(
        session,
        actor,
        now,
        "import",
        "patient",
        patient.id,
        patient.id,
        {
            "source": source,
            "used": len(plan.used),
            "ignored": [n.to_json() for n in plan.ignored],
        },
    )
    return Imported(patient, plan.used, plan.ignored)
