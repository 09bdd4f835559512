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

A patient this practice already holds is recognised by the b12dx id b12dx's export
carries as the Patient's identifier: the patient of that id, or the one an earlier import
of it made (its audit entry keeps the identifier). Imported again, such a file would be a
second copy of the person (and every dose twice in the due list), so it is refused
(``AlreadyHeld``) unless ``replace``: the patient's record is then replaced by the file's,
in the caller's transaction, keeping its id and history (``patients.replace``).

Doses are stored as the file records them, without the checks ``record dose`` makes
against the knowledge base's regimens: they are history, already given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b12dx.errors import B12dxError, FieldError, InputError, ProfileError
from b12dx.fhir.validate import ResourceNote
from b12dx.knowledge.loader import Knowledge
from b12dx.store import audit, entries, patients
from b12dx.store.audit import Actor
from b12dx.store.bundle_read import Action, Plan, read_bundle, refused
from b12dx.store.patients import NotFoundError
from b12dx.store.tables import AuditEntry, Patient

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
    replaced: bool = False  # an existing patient's record was replaced


class AlreadyHeld(B12dxError):
    """The file's patient is already held in this practice (see the module's docstring)."""

    def __init__(self, patient: Patient, identifier: str) -> None:
        self.patient = patient
        self.identifier = identifier
        held = f"as {patient.id}" if patient.id != identifier else "under that id"
        super().__init__(
            f"the file's patient {identifier} is already held here {held} "
            f"({patient.name}, born {patient.birth_date})"
        )


def held(session: Session, actor: Actor, identifier: str | None) -> Patient | None:
    """The practice's patient a Bundle's b12dx identifier names: the patient of that id,
    else the one an import of that identifier made (the latest, should there be two)."""
    if identifier is None:
        return None
    try:
        return patients.get(session, actor, identifier)
    except NotFoundError:
        pass
    imports = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.practice_id == actor.practice_id,
            AuditEntry.action == "import",
            AuditEntry.entity == "patient",
        )
        .order_by(AuditEntry.id.desc())
    )
    for entry in imports:
        if entry.detail.get("identifier") == identifier and entry.patient_id is not None:
            try:
                return patients.get(session, actor, entry.patient_id)
            except NotFoundError:
                continue
    return None


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
    *,
    replace: bool = False,
) -> Imported:
    """A new patient from a Bundle's JSON, in the caller's transaction (on any error the
    caller rolls back and nothing is written). ``source`` names the file in the audit.
    A patient already held is refused (AlreadyHeld), or its record replaced if
    ``replace``."""
    plan = read_bundle(kb, data, now.date())
    ref = plan.patient_ref
    existing = held(session, actor, plan.identifier)
    if existing is not None and not replace:
        assert plan.identifier is not None
        raise AlreadyHeld(existing, plan.identifier)
    try:
        patient = _person(session, kb, actor, now, plan, existing)
    except InputError as exc:
        raise _at(ref, FIELDS["patient"], exc) from None
    except ProfileError as exc:
        raise refused(ref, "extension(profile)", str(exc)) from None
    _fill(session, kb, actor, now, plan, patient)
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
            "identifier": plan.identifier,
            "replaced": existing is not None,
            "used": len(plan.used),
            "ignored": [n.to_json() for n in plan.ignored],
        },
    )
    return Imported(patient, plan.used, plan.ignored, existing is not None)


def _person(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    plan: Plan,
    existing: Patient | None,
) -> Patient:
    """The patient the plan's entries go to: a new one, or ``existing`` emptied and given
    the file's details."""
    d = plan.details
    details: dict[str, Any] = {
        "name": d["name"],
        "birth_date": d["birth_date"],
        "sex": d["sex"],
        "diet": d.get("diet", "omnivore"),
        "ethnicity": d.get("ethnicity", "unknown"),
        "conditions": [cid for _, cid, _, _ in plan.conditions],
        "profile": d.get("profile"),
    }
    if existing is None:
        return patients.add(session, kb, actor, now, **details)
    return patients.replace(session, kb, actor, now, existing, **details)


def _fill(
    session: Session, kb: Knowledge, actor: Actor, now: dt.datetime, plan: Plan, patient: Patient
) -> None:
    """Everything else the plan holds, written through the store's own checks."""
    ref = plan.patient_ref
    on_patient = FIELDS["patient"]
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
