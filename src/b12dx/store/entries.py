"""What the clinic records over time: lab results, doses given and symptom ratings.
Each is checked before anything is written (against the same knowledge base the engine
uses) and written together with its audit entry in one transaction."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from b12dx.engine.dose_check import dose_concerns
from b12dx.engine.validate import check_patient
from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.patient import Drug, LabResult, PatientRecord, Route
from b12dx.store import audit
from b12dx.store.audit import Actor
from b12dx.store.patients import has_control_characters
from b12dx.store.tables import DoseEntry, LabEntry, Patient, SymptomRatingEntry
from b12dx.typed_numbers import ACCEPTED, read_number

Rating = Literal["none", "mild", "moderate", "severe"]
RATINGS: tuple[str, ...] = get_args(Rating)

# "1 mg", "1000 micrograms", "1000 mcg", "500 µg": B12 doses are written in mg or µg.
_DOSE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mg|milligrams?|mcg|µg|ug|micrograms?)\s*$", re.I)
_PER_MG = {"mg": 1.0, "milligram": 1.0, "milligrams": 1.0}
MAX_DOSE_MG = 10.0  # the contract's b12_treatment.dose_mg limit


def parse_dose(text: str) -> float:
    """The dose in mg, or an InputError naming what is accepted."""
    m = _DOSE.match(text)
    if m is None:
        raise InputError.single(
            "dose", f"{text!r} is not a dose", 'a number and mg or micrograms, e.g. "1 mg"'
        )
    amount, unit = float(m.group(1)), m.group(2).lower()
    mg = amount * _PER_MG.get(unit, 0.001)
    if not 0 < mg <= MAX_DOSE_MG:
        raise InputError.single("dose", f"{text!r} is outside 0-{MAX_DOSE_MG:g} mg")
    return mg


def _not_future(field: str, day: dt.date, today: dt.date, patient: Patient) -> list[FieldError]:
    if day > today:
        return [FieldError(field, f"{day} is in the future (today is {today})")]
    if day < patient.birth_date:
        return [FieldError(field, f"{day} is before the patient's birth date")]
    return []


def _lock(session: Session, patient: Patient, collection: str) -> None:
    """Take the patient's row lock and re-read ``collection`` under it, so that the check
    for a duplicate and the insert see every entry committed before. Without it, two
    PostgreSQL transactions (READ COMMITTED) could each miss the other's dose and both
    store it. SQLite needs no row lock (BEGIN IMMEDIATE already queues the writers), so
    FOR UPDATE is not rendered there; the re-read is harmless."""
    session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update())
    session.refresh(patient, [collection])


E = TypeVar("E", LabEntry, DoseEntry, SymptomRatingEntry)


def _keep(
    session: Session,
    actor: Actor,
    now: dt.datetime,
    kept: list[E],
    entry: E,
    patient: Patient,
    what: str,
    detail: dict[str, Any],
) -> E:
    """Add a checked entry to the patient's ``kept`` list, with its audit record."""
    kept.append(entry)
    session.flush()
    audit.record(session, actor, now, "create", what, entry.id, patient.id, detail)
    return entry


def _lab_value(kb: Knowledge, test: str, raw: str | float) -> str | float:
    """The value as typed: a number for a numeric test, read by the one rule for typed
    numbers (never a guess at a separator); a word for a qualitative one."""
    if isinstance(raw, float | int):
        return float(raw)
    known = kb.labs.get(test)
    if known is not None and known.kind == "numeric":
        number = read_number(raw, "value")
        if number is None:
            raise InputError.single("value", f"is required for {test}", ACCEPTED)
        return number
    return raw.strip().lower()


def add_lab(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    test: str,
    value: str | float,
    unit: str | None,
    taken_on: dt.date,
    reference_low: float | None = None,
    reference_high: float | None = None,
) -> LabEntry:
    today = now.date()
    errors = _not_future("date", taken_on, today, patient)
    try:
        typed = _lab_value(kb, test, value)
    except InputError as exc:
        raise InputError(errors + exc.errors) from None
    lab = LabResult(
        test=test,
        value=typed,
        unit=unit or None,
        date=taken_on,
        reference_low=reference_low,
        reference_high=reference_high,
    )
    try:
        # The engine's own checks (test id, unit of the test, plausible value, reference
        # limits), on a record holding just this result.
        as_of = max(taken_on, today)
        age = min(120.0, max(0.0, (as_of - patient.birth_date).days / 365.25))
        check_patient(PatientRecord(age_years=age, labs=[lab]), kb, as_of=as_of)
    except InputError as exc:
        # The store's own date check (to the day of birth) already named the date.
        named = {e.path for e in errors}
        errors += [
            FieldError(path, e.message, e.accepted)
            for e in exc.errors
            if (path := e.path.removeprefix("labs[0].")) not in named
        ]
    if errors:
        raise InputError(errors)
    _lock(session, patient, "labs")
    for old in patient.labs:
        if (old.test, old.taken_on, old.value_number, old.value_text, old.unit) == (
            test,
            taken_on,
            lab.value if isinstance(lab.value, float) else None,
            lab.value if isinstance(lab.value, str) else None,
            lab.unit,
        ):
            raise InputError.single(
                "lab", f"this {test} result of {taken_on} is already recorded (entry {old.id})"
            )
    entry = LabEntry(
        test=test,
        value_number=lab.value if isinstance(lab.value, float) else None,
        value_text=lab.value if isinstance(lab.value, str) else None,
        unit=lab.unit,
        taken_on=taken_on,
        reference_low=reference_low,
        reference_high=reference_high,
        recorded_at=now,
        recorded_by=actor.name,
    )
    detail = {
        "test": test,
        "value": lab.value,
        "unit": lab.unit,
        "date": str(taken_on),
        "reference_low": reference_low,
        "reference_high": reference_high,
    }
    return _keep(session, actor, now, patient.labs, entry, patient, "lab_result", detail)


class UnusualDose(InputError):
    """The dose does not fit the knowledge base's regimens (``engine.dose_check``): each
    error says why. Recorded when the user confirms it (``force``)."""

    def confirm_with(self, how: str) -> InputError:
        """The same errors, each saying how the adapter's user records the dose anyway."""
        anyway = f"{how} to record it as given"
        return InputError(
            [
                FieldError(
                    e.path, e.message, f"{e.accepted}; or {anyway}" if e.accepted else anyway
                )
                for e in self.errors
            ]
        )


def add_dose(
    session: Session,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    given_on: dt.date,
    drug: str,
    dose: str,
    route: str,
    given_by: str | None = None,
    kb: Knowledge | None = None,
    force: bool = False,
    batch: str | None = None,
    site: str | None = None,
) -> DoseEntry:
    """Record a dose given. With ``kb`` (what the clinic records now), a dose that does
    not fit any of its regimens for the drug and route (the amount, or too soon after or
    before another recorded dose) is refused with UnusualDose unless ``force``; the
    audit entry of a forced one keeps what was confirmed. Without ``kb`` (an import of
    history already given) the dose is stored as the source records it."""
    today = now.date()
    errors = _not_future("date", given_on, today, patient)
    # Written as every output prints them ("IM", "Hydroxocobalamin"): one id each.
    drug, route = drug.strip().lower(), route.strip().lower()
    if drug not in get_args(Drug):
        errors.append(FieldError("drug", f"unknown drug {drug!r}", ", ".join(get_args(Drug))))
    if route not in get_args(Route):
        errors.append(FieldError("route", f"unknown route {route!r}", ", ".join(get_args(Route))))
    mg: float | None = None
    try:
        mg = parse_dose(dose)
    except InputError as exc:
        errors += exc.errors
    who = (given_by or actor.name).strip()
    if not 0 < len(who) <= 100:
        errors.append(FieldError("given_by", "must be 1 to 100 characters"))
    elif has_control_characters(who):
        errors.append(FieldError("given_by", "must not contain control characters"))
    batch, site = (" ".join(x.split()) or None if x else None for x in (batch, site))
    for field, text in (("batch", batch), ("site", site)):
        if text is not None and (len(text) > 40 or has_control_characters(text)):
            errors.append(FieldError(field, "must be at most 40 characters, on one line"))
    if errors:
        raise InputError(errors)
    assert mg is not None
    _lock(session, patient, "doses")
    for old in patient.doses:
        if (old.given_on, old.drug, old.route) == (given_on, drug, route):
            raise InputError.single(
                "dose", f"a {drug} {route} dose on {given_on} is already recorded (entry {old.id})"
            )
    concerns = []
    if kb is not None:
        others = [d.given_on for d in patient.doses if (d.drug, d.route) == (drug, route)]
        concerns = dose_concerns(
            kb, drug=drug, route=route, dose_mg=mg, given_on=given_on, other_days=others
        )
        if concerns and not force:
            raise UnusualDose(concerns)
    entry = DoseEntry(
        given_on=given_on,
        drug=drug,
        dose_mg=mg,
        route=route,
        given_by=who,
        recorded_at=now,
        recorded_by=actor.name,
        batch=batch,
        site=site,
    )
    detail = (
        {"date": str(given_on), "drug": drug, "dose_mg": mg, "route": route, "given_by": who}
        | ({"batch": batch} if batch else {})
        | ({"site": site} if site else {})
        | ({"confirmed": [str(c) for c in concerns]} if concerns else {})
    )
    return _keep(session, actor, now, patient.doses, entry, patient, "dose", detail)


def add_rating(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    symptom: str,
    rating: str,
    rated_on: dt.date,
) -> SymptomRatingEntry:
    today = now.date()
    errors = _not_future("date", rated_on, today, patient)
    if symptom not in kb.symptoms:
        errors.append(FieldError("symptom", f"unknown symptom {symptom!r}", ", ".join(kb.symptoms)))
    if rating not in RATINGS:
        errors.append(FieldError("rating", f"unknown rating {rating!r}", ", ".join(RATINGS)))
    if errors:
        raise InputError(errors)
    _lock(session, patient, "ratings")
    for old in patient.ratings:
        if (old.symptom_id, old.rated_on) == (symptom, rated_on):
            raise InputError.single(
                "symptom",
                f"{symptom} is already rated {old.rating} on {rated_on} (entry {old.id})",
            )
    entry = SymptomRatingEntry(
        symptom_id=symptom,
        rating=rating,
        rated_on=rated_on,
        recorded_at=now,
        recorded_by=actor.name,
    )
    detail = {"symptom": symptom, "rating": rating, "date": str(rated_on)}
    return _keep(session, actor, now, patient.ratings, entry, patient, "symptom_rating", detail)


# What can be marked entered in error, by the name the web and API use.
VOIDABLE: dict[str, tuple[type[LabEntry | SymptomRatingEntry | DoseEntry], str]] = {
    "lab": (LabEntry, "labs"),
    "rating": (SymptomRatingEntry, "ratings"),
    "dose": (DoseEntry, "doses"),
}


def void_entry(
    session: Session,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    kind: str,
    entry_id: int,
    reason: str,
) -> None:
    """Mark a lab result, rating or dose entered in error, with why. Nothing is deleted:
    the entry stays (with who marked it and when) for the audit trail and the saved
    assessments that used it, and is left out of the patient's record from now on."""
    if kind not in VOIDABLE:
        raise InputError.single("kind", f"{kind!r} cannot be marked", ", ".join(VOIDABLE))
    model, collection = VOIDABLE[kind]
    why = " ".join(reason.split())
    if not 3 <= len(why) <= 200 or has_control_characters(why):
        raise InputError.single(
            "reason", "say why the entry is wrong, in 3 to 200 characters", "e.g. wrong patient"
        )
    # One of the three entry models; they share the columns used here.
    entry: Any = session.scalars(select(model).where(model.id == entry_id)).first()
    if entry is None or entry.patient_id != patient.id or entry.voided_at is not None:
        raise InputError.single(
            "entry", f"no {kind} {entry_id} recorded for this patient (or already marked)"
        )
    entry.voided_at = now
    entry.voided_by = actor.name
    entry.void_reason = why
    session.flush()
    session.expire(patient, [collection])
    audit.record(
        session, actor, now, "entered_in_error", kind, entry.id, patient.id, {"reason": why}
    )
