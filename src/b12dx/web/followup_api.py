"""The follow-up JSON API (version 1): patients, their labs, doses, symptom ratings and
saved assessments, and what is due across the practice.

Every write is a POST of ``application/json`` (else 415); when sign-in is required it
also carries the session's CSRF token in ``X-CSRF-Token`` (else 403; the token is in
``GET /api/v1/session``). Errors: 401 not signed in, 404 no such patient in your practice
(the same for another practice's patient), 422 naming each field and what is accepted.
Nothing is written when the answer is an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from b12dx.errors import FieldError, InputError
from b12dx.jsonio import parse_json
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.patient import Diet, Drug, Rating, Route, Sex
from b12dx.store import due, entries, patients, snapshots, users
from b12dx.store.audit import Actor
from b12dx.store.periods import parse_days
from b12dx.store.tables import (
    AssessmentSnapshot,
    DoseEntry,
    LabEntry,
    Patient,
    SymptomRatingEntry,
)
from b12dx.web.api import ERROR_RESPONSE
from b12dx.web.auth import followup
from b12dx.web.followup_recorded import WHAT, needed_batch_and_site
from b12dx.web.settings import check_as_of

router = APIRouter(prefix="/api/v1", tags=["follow-up"])
M = TypeVar("M", bound=BaseModel)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PatientIn(_In):
    name: str = Field(
        min_length=1, max_length=200, description="The name the practice knows the person by."
    )
    birth_date: dt.date
    sex: Sex
    conditions: list[str] = Field(
        default_factory=list, description="Condition ids (GET /api/v1/knowledge/conditions)."
    )
    diet: Diet = "omnivore"
    nhs_number: str | None = Field(
        default=None, description="10 digits with a valid modulus-11 check digit."
    )
    local_number: str | None = Field(default=None, description="The practice's own number.")
    add_anyway: bool = Field(
        default=False,
        description="Add although a patient of the same name and birth date is held (a "
        "namesake); without it that is a 422 naming the patient held. A patient with the "
        "same NHS or local number is always refused.",
    )


class LabIn(_In):
    test: str = Field(description="Test id (GET /api/v1/knowledge/labs).")
    value: float | str = Field(description="A number, or positive/negative for antibodies.")
    unit: str | None = Field(default=None, description="One of the test's units.")
    date: dt.date = Field(description="The day the sample was taken.")
    reference_low: float | None = None
    reference_high: float | None = None


class DoseIn(_In):
    date: dt.date = Field(description="The day the dose was given.")
    drug: Drug
    dose: str = Field(description='Amount and unit: "1 mg", "1000 micrograms".')
    route: Route
    given_by: str | None = Field(default=None, description="Default: the signed-in user.")
    batch: str | None = Field(
        default=None, description='The batch (lot) number; or "batch_not_recorded": true.'
    )
    site: str | None = Field(
        default=None,
        description='The injection site, e.g. "left deltoid"; or "site_not_recorded": true. '
        "Asked for an injection only.",
    )
    batch_not_recorded: bool = Field(
        default=False, description="The batch number is not known: say so, or give it."
    )
    site_not_recorded: bool = Field(
        default=False, description="The injection site is not known: say so, or give it."
    )
    force: bool = Field(
        default=False,
        description="Record it although it does not fit the knowledge base's regimens for "
        "the drug and route (an amount none gives, or sooner after another dose than any "
        "gives); without it such a dose is a 422 saying why.",
    )


class RatingIn(_In):
    symptom: str = Field(description="Symptom id (GET /api/v1/knowledge/symptoms).")
    rating: Rating
    date: dt.date


class EnteredInErrorIn(_In):
    kind: Literal["lab", "rating", "dose"] = Field(description="What the entry is.")
    id: int = Field(description="The entry's id (as GET /api/v1/patients/{id} lists it).")
    reason: str = Field(description="Why it is wrong (3 to 200 characters).")


class AssessIn(_In):
    as_of: dt.date | None = Field(default=None, description="Default: today.")


_ACCEPTED = {
    "name": "1 to 200 characters",
    "sex": ", ".join(get_args(Sex)),
    "diet": ", ".join(get_args(Diet)),
    "drug": ", ".join(get_args(Drug)),
    "route": ", ".join(get_args(Route)),
    "rating": ", ".join(get_args(Rating)),
    "birth_date": "a date, YYYY-MM-DD",
    "date": "a date, YYYY-MM-DD",
    "as_of": "a date, YYYY-MM-DD",
    "value": "a number, or positive / negative",
    "reference_low": "a number",
    "reference_high": "a number",
    "conditions": "a list of condition ids",
    "force": "true or false",
}


def _body(model: type[M], raw: bytes) -> M:
    """The request body as ``model``, or a 422 naming each field and what it accepts."""
    if not raw and model is AssessIn:
        raw = b"{}"  # every field is optional
    data = parse_json(raw, "the request body")
    if not isinstance(data, dict):
        raise InputError.single("", "the request body must be a JSON object")
    if any("\x00" in v for v in _strings(data)):
        raise InputError.single("", "the request body holds a NUL character")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            # float | str unions report each branch: keep the field, not the branch.
            loc = [p for p in loc if p not in ("float", "str", "int", "date", "list[str]")]
            path = ".".join(loc)
            field = loc[0] if loc else ""
            accepted = ", ".join(model.model_fields) if e["type"] == "extra_forbidden" else None
            errors.append(
                FieldError(
                    path,
                    "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
                    accepted or _ACCEPTED.get(field),
                )
            )
        unique = list({(e.path, e.message): e for e in errors}.values())
        raise InputError(unique) from None


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []


def _dt(value: dt.datetime) -> str:
    return users.utc(value).isoformat()


def patient_json(p: Patient) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "birth_date": p.birth_date.isoformat(),
        "sex": p.sex,
        "nhs_number": p.nhs_number,
        "local_number": p.local_number,
        "diet": p.diet,
        "ethnicity": p.ethnicity,
        "conditions": [c.condition_id for c in p.conditions],
        "medications": [
            {
                "id": m.medication_id,
                "started_on": m.started_on.isoformat() if m.started_on else None,
                "stopped_on": m.stopped_on.isoformat() if m.stopped_on else None,
            }
            for m in p.medications
        ],
        "exposures": [{"id": e.exposure_id, "ongoing": e.ongoing} for e in p.exposures],
        "pregnant": p.pregnant,
        "breastfeeding": p.breastfeeding,
        "profile": p.profile,
        "created_at": _dt(p.created_at),
    }


def lab_json(lab: LabEntry) -> dict[str, Any]:
    return {
        "id": lab.id,
        "test": lab.test,
        "value": lab.value_number if lab.value_number is not None else lab.value_text,
        "unit": lab.unit,
        "date": lab.taken_on.isoformat(),
        "reference_low": lab.reference_low,
        "reference_high": lab.reference_high,
        "recorded_at": _dt(lab.recorded_at),
        "recorded_by": lab.recorded_by,
    }


def dose_json(d: DoseEntry) -> dict[str, Any]:
    return {
        "id": d.id,
        "date": d.given_on.isoformat(),
        "drug": d.drug,
        "dose": f"{d.dose_mg:g} mg",
        "dose_mg": d.dose_mg,
        "route": d.route,
        "given_by": d.given_by,
        "batch": d.batch,
        "site": d.site,
        "recorded_at": _dt(d.recorded_at),
        "recorded_by": d.recorded_by,
    }


def rating_json(r: SymptomRatingEntry) -> dict[str, Any]:
    return {
        "id": r.id,
        "symptom": r.symptom_id,
        "rating": r.rating,
        "date": r.rated_on.isoformat(),
        "recorded_at": _dt(r.recorded_at),
        "recorded_by": r.recorded_by,
    }


def snapshot_json(s: Session, snap: AssessmentSnapshot) -> dict[str, Any]:
    return {
        "id": snap.id,
        "as_of": snap.as_of.isoformat(),
        "created_at": _dt(snap.created_at),
        "created_by": snap.created_by,
        "profile": snap.profile,
        "engine_version": snap.engine_version,
        "knowledge_version": snap.knowledge_version,
        "urgency": snap.urgency,
        "deficiency_status": snap.deficiency_status,
        "planned_doses": [
            {"date": d.due_on.isoformat(), "dose": d.dose, "phase": d.phase}
            for d in snapshots.planned(s, snap)
        ],
    }


def _json(data: Any, status: int = 200, location: str | None = None) -> Response:
    headers = {"location": location} if location else None
    return JSONResponse(data, status_code=status, headers=headers)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Not signed in (sign-in is required on this server)",
        403: "Missing or wrong X-CSRF-Token, or (sign-in off) not from this machine",
        404: "No such patient in your practice",
        413: "Body larger than the limit",
        415: "The body is not sent as application/json",
        422: "Invalid input: each error names its field and what is accepted",
        503: "The database is unavailable",
    }
    return {c: {"description": text[c], **ERROR_RESPONSE} for c in codes}


READ = _responses(401, 403, 404, 422, 503)
WRITE = _responses(401, 403, 404, 413, 415, 422, 503)


def _request_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
_LIST = {"content": {"application/json": {"schema": {"type": "array"}}}}


@router.get(
    "/session",
    summary="Who is signed in, and the CSRF token for writes",
    responses={200: {"description": "The signed-in user", **_OBJECT}, **READ},
)
async def session_info(request: Request) -> Response:
    fu = followup(request)

    def work(s: Session) -> dict[str, Any]:
        v = fu.visitor(s, request)
        return {
            "user": v.display_name,
            "practice": v.practice_name,
            "login_required": fu.settings.require_login,
            "csrf_token": v.csrf_token if v.signed_in else None,
        }

    return _json(await fu.run(request, work))


@router.post(
    "/patients",
    status_code=201,
    summary="Add a patient to your practice",
    responses={201: {"description": "The patient, with its new id", **_OBJECT}, **WRITE},
    openapi_extra=_request_body(PatientIn),
)
async def add_patient(request: Request) -> Response:
    fu = followup(request)
    kb = load_knowledge()
    raw = await request.body()

    def work(s: Session) -> dict[str, Any]:
        v = fu.visitor(s, request)
        fu.check_json(request, v)
        body = _body(PatientIn, raw)
        p = patients.add(
            s,
            kb,
            v.actor,
            fu.settings.now(),
            name=body.name,
            birth_date=body.birth_date,
            sex=body.sex,
            diet=body.diet,
            conditions=body.conditions,
            nhs_number=body.nhs_number,
            local_number=body.local_number,
            namesake_ok=body.add_anyway,
        )
        return patient_json(p)

    data = await fu.run(request, work)
    return _json(data, 201, f"/api/v1/patients/{data['id']}")


@router.get(
    "/patients",
    summary="Your practice's patients",
    responses={200: {"description": "The patients, by name", **_LIST}, **READ},
)
async def list_patients(request: Request) -> Response:
    fu = followup(request)

    def work(s: Session) -> list[dict[str, Any]]:
        v = fu.visitor(s, request)
        return [patient_json(p) for p in patients.all_in_practice(s, v.actor, full=False)]

    return _json(await fu.run(request, work))


@router.get(
    "/patients/{patient_id}",
    summary="One patient: history, saved assessments and the assessment as of today",
    responses={
        200: {
            "description": "{patient, labs, ratings, doses, history, assessment}: history "
            "is the saved assessments (oldest first) with their planned doses; assessment "
            "is the contract's output as of today (not saved).",
            **_OBJECT,
        },
        **READ,
    },
)
async def get_patient(request: Request, patient_id: str) -> Response:
    fu = followup(request)
    kb = load_knowledge()
    today = fu.settings.now().date()

    def work(s: Session) -> dict[str, Any]:
        v = fu.visitor(s, request)
        p = patients.get(s, v.actor, patient_id)
        return {
            "patient": patient_json(p),
            "labs": [lab_json(x) for x in p.labs],
            "ratings": [rating_json(x) for x in p.ratings],
            "doses": [dose_json(x) for x in p.doses],
            "history": [snapshot_json(s, x) for x in snapshots.history(s, p)],
            "assessment": snapshots.current(kb, p, today).assessment.model_dump(mode="json"),
        }

    return _json(await fu.run(request, work))


def _child_post(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "status_code": 201,
        "summary": summary,
        "responses": {201: {"description": "What was recorded, with its id", **_OBJECT}, **WRITE},
        "openapi_extra": _request_body(model),
    }


@dataclass(frozen=True)
class _Write(Generic[M]):
    """What a write to one patient works with: the session, who is writing and when,
    the patient (found in the writer's practice) and the request body."""

    s: Session
    actor: Actor
    now: dt.datetime
    patient: Patient
    body: M


async def _patient_write(
    request: Request,
    patient_id: str,
    model: type[M],
    write: Callable[[_Write[M]], dict[str, Any]],
) -> Response:
    """A JSON write to one patient: the session and CSRF token checked, the patient found
    in the writer's practice (else 404), the body read as ``model`` (else 422), then
    ``write`` in one transaction; 201 with what was written."""
    fu = followup(request)
    raw = await request.body()

    def work(s: Session) -> dict[str, Any]:
        v = fu.visitor(s, request)
        fu.check_json(request, v)
        p = patients.get(s, v.actor, patient_id)
        body = _body(model, raw)
        return write(_Write(s, v.actor, fu.settings.now(), p, body))

    return _json(await fu.run(request, work), 201)


@router.post("/patients/{patient_id}/labs", **_child_post("Record a lab result", LabIn))
async def add_lab(request: Request, patient_id: str) -> Response:
    kb = load_knowledge()

    def write(w: _Write[LabIn]) -> dict[str, Any]:
        b = w.body
        entry = entries.add_lab(
            w.s, kb, w.actor, w.now, w.patient,
            test=b.test, value=b.value, unit=b.unit, taken_on=b.date,
            reference_low=b.reference_low, reference_high=b.reference_high,
        )  # fmt: skip
        return lab_json(entry)

    return await _patient_write(request, patient_id, LabIn, write)


@router.post("/patients/{patient_id}/doses", **_child_post("Record a dose given", DoseIn))
async def add_dose(request: Request, patient_id: str) -> Response:
    kb = load_knowledge()

    def write(w: _Write[DoseIn]) -> dict[str, Any]:
        b = w.body
        batch, site = needed_batch_and_site(
            kb, b.route, b.batch, b.site,
            batch_not_recorded=b.batch_not_recorded, site_not_recorded=b.site_not_recorded,
            accepted=lambda f: f'"{f}": the {WHAT[f]}, or "{f}_not_recorded": true',
        )  # fmt: skip
        try:
            entry = entries.add_dose(
                w.s, w.actor, w.now, w.patient,
                given_on=b.date, drug=b.drug, dose=b.dose, route=b.route,
                given_by=b.given_by, kb=kb, force=b.force, batch=batch, site=site,
            )  # fmt: skip
        except entries.UnusualDose as exc:
            raise exc.confirm_with('"force": true') from None
        return dose_json(entry)

    return await _patient_write(request, patient_id, DoseIn, write)


@router.post("/patients/{patient_id}/symptoms", **_child_post("Rate a symptom", RatingIn))
async def add_rating(request: Request, patient_id: str) -> Response:
    kb = load_knowledge()

    def write(w: _Write[RatingIn]) -> dict[str, Any]:
        b = w.body
        entry = entries.add_rating(
            w.s, kb, w.actor, w.now, w.patient,
            symptom=b.symptom, rating=b.rating, rated_on=b.date,
        )  # fmt: skip
        return rating_json(entry)

    return await _patient_write(request, patient_id, RatingIn, write)


@router.post(
    "/patients/{patient_id}/entered-in-error",
    **_child_post("Mark a lab result, rating or dose as entered in error", EnteredInErrorIn),
)
async def mark_entered_in_error(request: Request, patient_id: str) -> Response:
    """The entry is kept, with why, and left out of the patient's record from now on."""

    def write(w: _Write[EnteredInErrorIn]) -> dict[str, Any]:
        b = w.body
        entries.void_entry(
            w.s, w.actor, w.now, w.patient, kind=b.kind, entry_id=b.id, reason=b.reason
        )
        return {"kind": b.kind, "id": b.id, "entered_in_error": True, "reason": b.reason}

    return await _patient_write(request, patient_id, EnteredInErrorIn, write)


@router.post(
    "/patients/{patient_id}/assessments",
    status_code=201,
    summary="Assess the patient and save the assessment (with its planned doses)",
    responses={
        201: {"description": "The saved assessment and the contract's output", **_OBJECT},
        **WRITE,
    },
    openapi_extra=_request_body(AssessIn, required=False),
)
async def save_assessment(request: Request, patient_id: str) -> Response:
    kb = load_knowledge()

    def write(w: _Write[AssessIn]) -> dict[str, Any]:
        today = w.now.date()
        as_of = w.body.as_of or today
        if as_of > today:
            raise InputError.single("as_of", f"{as_of} is in the future (today is {today})")
        if as_of < w.patient.birth_date:
            raise InputError.single("as_of", f"{as_of} is before the patient's birth date")
        snap, a = snapshots.save(w.s, kb, w.actor, w.now, w.patient, as_of)
        return snapshot_json(w.s, snap) | {"assessment": a.model_dump(mode="json")}

    return await _patient_write(request, patient_id, AssessIn, write)


@router.get(
    "/due",
    summary="What is due and overdue across your practice, the most pressing first",
    responses={
        200: {
            "description": "Due items: patient_id, patient_name, kind, date, text, urgency, "
            "overdue",
            **_LIST,
        },
        **READ,
    },
)
async def due_list(request: Request, within: str = "7", as_of: str | None = None) -> Response:
    fu = followup(request)
    kb = load_knowledge()

    def work(s: Session) -> list[dict[str, Any]]:
        v = fu.visitor(s, request)
        errors: list[FieldError] = []
        day = fu.settings.now().date()
        if as_of:
            try:
                day = dt.date.fromisoformat(as_of)
            except ValueError:
                errors.append(FieldError("as_of", f"{as_of!r} is not a date", "YYYY-MM-DD"))
        days = 0
        try:
            days = parse_days(within)
        except InputError as exc:
            errors += exc.errors
        if errors:
            raise InputError(errors)
        check_as_of(day, fu.settings.now().date())
        return [item.as_dict() for item in due.due(s, kb, v.actor, day, days)]

    return _json(await fu.run(request, work))
