"""Patients: adding them, finding them (only within the actor's practice), and changing
the facts the engine reads from them (diet, conditions, medicines, exposures)."""

from __future__ import annotations

import datetime as dt
import secrets
import string
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import get_args

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.base import ExecutableOption

from b12dx.errors import B12dxError, FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.patient import Diet, Ethnicity, Sex
from b12dx.store import audit, identifiers
from b12dx.store.audit import Actor
from b12dx.store.tables import (
    Patient,
    PatientCondition,
    PatientExposure,
    PatientMedication,
)

# Patient ids are typed by people: 8 characters from an alphabet without look-alikes
# (Crockford base32: no I, L, O, U), random so that they reveal nothing.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 8
MAX_AGE_YEARS = 120  # the contract's age_years range


# A calendar token as new_calendar_token makes it (secrets.token_urlsafe(24): 32
# URL-safe characters): the calendar feed's address is its only secret.
CALENDAR_TOKEN_MIN = 32
CALENDAR_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


class NotFoundError(B12dxError):
    """No such patient in the actor's practice."""


def new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def normalise_id(patient_id: str) -> str:
    return patient_id.strip().upper().replace("O", "0").replace("I", "1").replace("L", "1")


def has_control_characters(text: str) -> bool:
    """Tabs, newlines, NUL and the like have no place in a name (PostgreSQL refuses NUL)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


# Letters by their Unicode category that draw nothing (Unicode's
# Default_Ignorable_Code_Point letters and the Hangul and halfwidth fillers, and the
# braille blank, which is a symbol but shows as a space): a name of them alone is blank.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u180b\u180c\u180d")


def has_visible_characters(text: str) -> bool:
    """A name a person can read: at least one letter, mark or digit, not only format
    characters (bidi overrides, zero-width joiners) and spaces that show nothing."""
    return any(unicodedata.category(ch)[0] in "LMN" and ch not in _BLANK_LETTERS for ch in text)


def _one_of(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def check_details(
    kb: Knowledge,
    today: dt.date,
    *,
    name: str | None = None,
    birth_date: dt.date | None = None,
    sex: str | None = None,
    diet: str | None = None,
    ethnicity: str | None = None,
    conditions: Sequence[str] = (),
    medications: Sequence[str] = (),
    exposures: Sequence[str] = (),
) -> None:
    """Every problem at once, each naming the field and what is accepted."""
    errors: list[FieldError] = []
    if name is not None and not (0 < len(name.strip()) <= 200):
        errors.append(FieldError("name", "must be 1 to 200 characters"))
    elif name is not None and has_control_characters(name):
        errors.append(FieldError("name", "must not contain control characters"))
    elif name is not None and not has_visible_characters(name):
        errors.append(
            FieldError("name", "must hold a letter or digit, not only invisible characters")
        )
    if birth_date is not None:
        if birth_date > today:
            errors.append(FieldError("birth_date", f"{birth_date} is in the future"))
        elif (today.year - birth_date.year) > MAX_AGE_YEARS:
            errors.append(FieldError("birth_date", f"age over {MAX_AGE_YEARS} years"))
    for field, value, allowed in (
        ("sex", sex, get_args(Sex)),
        ("diet", diet, get_args(Diet)),
        ("ethnicity", ethnicity, get_args(Ethnicity)),
    ):
        if value is not None and value not in allowed:
            errors.append(FieldError(field, f"unknown value {value!r}", _one_of(allowed)))
    for field, ids, table in (
        ("condition", conditions, kb.conditions),
        ("medication", medications, kb.medications),
        ("exposure", exposures, kb.exposures),
    ):
        for i in ids:
            if i not in table:
                errors.append(FieldError(field, f"unknown id {i!r}", _one_of(sorted(table))))
    if errors:
        raise InputError(errors)


def add(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    *,
    name: str,
    birth_date: dt.date,
    sex: str,
    diet: str = "omnivore",
    ethnicity: str = "unknown",
    conditions: Sequence[str] = (),
    profile: str | None = None,
    nhs_number: str | None = None,
    local_number: str | None = None,
    namesake_ok: bool = True,
) -> Patient:
    """Add a patient. A patient of the practice with the same NHS or local number is
    refused, and one with the same name and birth date too unless ``namesake_ok`` (the
    doors where people type patients in pass what the user confirmed): see
    :mod:`b12dx.store.identifiers`."""
    today = now.date()
    detail = _checked(kb, today, name, birth_date, sex, diet, ethnicity, conditions, profile)
    nhs = identifiers.nhs_number(nhs_number)
    local = identifiers.local_number(local_number)
    identifiers.refuse_duplicates(
        session,
        actor,
        name=name,
        birth_date=birth_date,
        nhs=nhs,
        local=local,
        namesake_ok=namesake_ok,
    )
    detail |= {k: v for k, v in (("nhs_number", nhs), ("local_number", local)) if v}
    patient = Patient(
        id=_unused_id(session),
        practice_id=actor.practice_id,
        name=name.strip(),
        birth_date=birth_date,
        sex=sex,
        diet=diet,
        ethnicity=ethnicity,
        pregnant=False,
        breastfeeding=False,
        profile=profile,
        nhs_number=nhs,
        local_number=local,
        calendar_token=secrets.token_urlsafe(24),
        created_at=now,
    )
    for cid in dict.fromkeys(conditions):
        patient.conditions.append(PatientCondition(condition_id=cid, recorded_on=today))
    session.add(patient)
    session.flush()
    audit.record(session, actor, now, "create", "patient", patient.id, patient.id, detail)
    return patient


def _checked(
    kb: Knowledge,
    today: dt.date,
    name: str,
    birth_date: dt.date,
    sex: str,
    diet: str,
    ethnicity: str,
    conditions: Sequence[str],
    profile: str | None,
) -> dict[str, object]:
    """A new or replacing patient's details, checked (InputError naming the field, or
    ProfileError naming the accepted profiles), as the audit entry records them."""
    check_details(
        kb,
        today,
        name=name,
        birth_date=birth_date,
        sex=sex,
        diet=diet,
        ethnicity=ethnicity,
        conditions=list(conditions),
    )
    if profile is not None:
        kb.profile(profile)
    return {
        "name": name.strip(),
        "birth_date": str(birth_date),
        "sex": sex,
        "diet": diet,
        "ethnicity": ethnicity,
        "conditions": list(dict.fromkeys(conditions)),
        "profile": profile,
    }


RECORD_COLLECTIONS = ("conditions", "medications", "exposures", "labs", "ratings", "doses")


def replace(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    name: str,
    birth_date: dt.date,
    sex: str,
    diet: str = "omnivore",
    ethnicity: str = "unknown",
    conditions: Sequence[str] = (),
    profile: str | None = None,
) -> Patient:
    """Replace what is recorded about ``patient`` (loaded whole) with these details and
    conditions and nothing else: its medicines, exposures, lab results, ratings and doses
    are removed, for the caller to add anew (``b12dx.store.bundle_import``). The id, the
    calendar link, the saved assessments and the audit trail stay: they are its history."""
    detail = _checked(kb, now.date(), name, birth_date, sex, diet, ethnicity, conditions, profile)
    removed = {c: len(getattr(patient, c)) for c in RECORD_COLLECTIONS}
    for collection in RECORD_COLLECTIONS:
        getattr(patient, collection).clear()
    session.flush()  # the old rows go before new ones with the same keys come
    patient.name, patient.birth_date, patient.sex = name.strip(), birth_date, sex
    patient.diet, patient.ethnicity, patient.profile = diet, ethnicity, profile
    patient.pregnant = patient.breastfeeding = False
    for cid in dict.fromkeys(conditions):
        patient.conditions.append(PatientCondition(condition_id=cid, recorded_on=now.date()))
    session.flush()
    detail |= {"removed": removed}
    audit.record(session, actor, now, "replace", "patient", patient.id, patient.id, detail)
    return patient


def _unused_id(session: Session) -> str:
    while True:
        pid = new_id()
        if session.get(Patient, pid) is None:
            return pid


def get(session: Session, actor: Actor, patient_id: str, *, full: bool = True) -> Patient:
    """The patient, if they belong to the actor's practice. A patient of another practice
    gets the same answer as one that does not exist (no hint that the id is in use)."""
    pid = normalise_id(patient_id)
    if not 0 < len(pid) <= 16 or not set(pid) <= set(_ALPHABET):
        # Not an id at all (and PostgreSQL refuses a NUL in a query parameter).
        raise NotFoundError(f"patient: no patient {patient_id!r} in this practice")
    q = select(Patient).where(Patient.id == pid, Patient.practice_id == actor.practice_id)
    if full:
        q = q.options(*history_loads())
    patient = session.scalars(q).one_or_none()
    if patient is None:
        raise NotFoundError(f"patient: no patient {patient_id!r} in this practice")
    return patient


def history_loads() -> list[ExecutableOption]:
    return [
        selectinload(Patient.conditions),
        selectinload(Patient.medications),
        selectinload(Patient.exposures),
        selectinload(Patient.labs),
        selectinload(Patient.ratings),
        selectinload(Patient.doses),
    ]


def all_in_practice(session: Session, actor: Actor, *, full: bool = False) -> list[Patient]:
    q = select(Patient).where(Patient.practice_id == actor.practice_id)
    if full:
        q = q.options(*history_loads())
    return list(session.scalars(q.order_by(Patient.name, Patient.id)))


def by_calendar_token(session: Session, token: str) -> Patient | None:
    q = select(Patient).where(Patient.calendar_token == token).options(*history_loads())
    return session.scalars(q).one_or_none()


def update(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    *,
    diet: str | None = None,
    ethnicity: str | None = None,
    pregnant: bool | None = None,
    breastfeeding: bool | None = None,
    profile: str | None = None,
    add_conditions: Sequence[str] = (),
    remove_conditions: Sequence[str] = (),
    egfr: float | None = None,
    start_medications: Sequence[tuple[str, dt.date | None]] = (),
    stop_medications: Sequence[tuple[str, dt.date]] = (),
    add_exposures: Sequence[str] = (),
    end_exposures: Sequence[str] = (),
) -> dict[str, object]:
    """Change what is recorded about the person; returns what changed (also audited)."""
    today = now.date()
    check_details(
        kb,
        today,
        diet=diet,
        ethnicity=ethnicity,
        conditions=[*add_conditions, *remove_conditions],
        medications=[m for m, _ in [*start_medications, *stop_medications]],
        exposures=[*add_exposures, *end_exposures],
    )
    errors: list[FieldError] = []
    if profile is not None:
        kb.profile(profile)
    if egfr is not None and not 0 < egfr <= 200:
        errors.append(FieldError("egfr", f"{egfr:g} is outside 0-200 mL/min/1.73m2"))
    for _mid, since in start_medications:
        if since is not None and since > today:
            errors.append(FieldError("since", f"{since} is in the future"))
    for mid, until in stop_medications:
        if until > today:
            errors.append(FieldError("stopped", f"{until} is in the future"))
        taken = [m for m in patient.medications if m.medication_id == mid and m.stopped_on is None]
        if not taken:
            errors.append(FieldError("medication", f"{mid!r} is not recorded as taken now"))
        for m in taken:
            if m.started_on is not None and until < m.started_on:
                errors.append(
                    FieldError("stopped", f"{until} is before {mid} was started ({m.started_on})")
                )
    # The engine refuses these states; stored, they would leave the patient unassessable
    # (and the practice's due list with them).
    for flag, set_true in (("pregnant", pregnant), ("breastfeeding", breastfeeding)):
        if set_true and patient.sex == "male":
            errors.append(FieldError(flag, "cannot be true for a male patient"))
    have = {c.condition_id for c in patient.conditions}
    for cid in remove_conditions:
        if cid not in have:
            errors.append(FieldError("condition", f"{cid!r} is not recorded for this patient"))
    for eid in end_exposures:
        if not any(e.exposure_id == eid and e.ongoing is not False for e in patient.exposures):
            errors.append(FieldError("exposure", f"{eid!r} is not recorded as ongoing"))
    if errors:
        raise InputError(errors)

    changed: dict[str, object] = {}
    lists: defaultdict[str, list[object]] = defaultdict(list)
    for field, value in (
        ("diet", diet),
        ("ethnicity", ethnicity),
        ("pregnant", pregnant),
        ("breastfeeding", breastfeeding),
        ("profile", profile),
    ):
        if value is not None and getattr(patient, field) != value:
            setattr(patient, field, value)
            changed[field] = value
    for cid in dict.fromkeys(add_conditions):
        if cid not in have:
            patient.conditions.append(PatientCondition(condition_id=cid, recorded_on=today))
            lists["conditions_added"].append(cid)
    for cid in remove_conditions:
        for c in list(patient.conditions):
            if c.condition_id == cid:
                patient.conditions.remove(c)
        lists["conditions_removed"].append(cid)
    if egfr is not None:
        ckd = [c for c in patient.conditions if c.condition_id == "chronic_kidney_disease"]
        if not ckd:
            raise InputError.single(
                "egfr", "eGFR is recorded with chronic_kidney_disease; add that condition first"
            )
        ckd[0].egfr = egfr
        changed["egfr"] = egfr
    for mid, since in start_medications:
        patient.medications.append(PatientMedication(medication_id=mid, started_on=since))
        lists["medications_started"].append({"id": mid, "since": str(since) if since else None})
    for mid, until in stop_medications:
        for m in patient.medications:
            if m.medication_id == mid and m.stopped_on is None:
                m.stopped_on = until
        lists["medications_stopped"].append({"id": mid, "on": str(until)})
    for eid in dict.fromkeys(add_exposures):
        known = [e for e in patient.exposures if e.exposure_id == eid]
        if known and all(e.ongoing for e in known):
            continue  # already recorded as ongoing (a second row would be a duplicate id)
        for e in known:
            e.ongoing = True  # an exposure that had ended has started again
        if not known:
            patient.exposures.append(PatientExposure(exposure_id=eid, ongoing=True))
        lists["exposures_added"].append(eid)
    for eid in end_exposures:
        for e in patient.exposures:
            if e.exposure_id == eid:
                e.ongoing = False
        lists["exposures_ended"].append(eid)
    changed.update(lists)
    if changed:
        session.flush()
        audit.record(session, actor, now, "update", "patient", patient.id, patient.id, changed)
    return changed


def new_calendar_token(session: Session, actor: Actor, now: dt.datetime, patient: Patient) -> str:
    """Replace the patient's calendar token: the old feed address stops working (for a
    link that was shared too widely). The token itself is never audited."""
    patient.calendar_token = secrets.token_urlsafe(24)
    session.flush()
    audit.record(session, actor, now, "regenerate", "calendar_token", patient.id, patient.id, {})
    return patient.calendar_token
