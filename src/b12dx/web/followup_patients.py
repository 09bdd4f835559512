"""The practice's patients page: the list with each patient's assessment today, the
search (by name, patient id, NHS number or local record number; a POST, so that no name
travels in a URL) and the form to add a patient.

Adding is where a second record of one person is made: a patient with the same NHS or
local number is refused with a link to the record that holds it, and one with the same
name and date of birth is stopped with a link and a deliberate "add anyway" for a true
namesake (``b12dx.store.identifiers``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from b12dx.errors import B12dxError, FieldError, InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.patient import Diet, Sex
from b12dx.store import history, identifiers, patients, snapshots
from b12dx.store.tables import Patient
from b12dx.web.auth import Visitor, followup
from b12dx.web.followup_pages import form_fields, render, required_date, today_for

router = APIRouter(include_in_schema=False)


def matches(p: Patient, query: str) -> bool:
    """A name containing the query, or the patient id, NHS number or local number."""
    q = query.strip()
    if not q:
        return True
    digits = "".join(q.split()).replace("-", "")
    return (
        q.casefold() in p.name.casefold()
        or p.id == patients.normalise_id(q)
        or (p.nhs_number is not None and p.nhs_number == digits)
        or (p.local_number is not None and p.local_number == "".join(q.split()).upper())
    )


def _patients_page(
    request: Request,
    s: Session,
    visitor: Visitor,
    *,
    query: str = "",
    form: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
    duplicates: list[identifiers.Match] | None = None,
    namesake: bool = False,
    status: int = 200,
) -> HTMLResponse:
    people = [p for p in patients.all_in_practice(s, visitor.actor, full=True) if matches(p, query)]
    today = today_for(followup(request))
    return render(
        request,
        "patients.html",
        visitor,
        status,
        people=people,
        last=snapshots.latest(s, [p.id for p in people]),
        current=_today_status(people, today),
        query=query,
        form=form or {},
        errors=errors or [],
        duplicates=duplicates or [],
        namesake=namesake,
        show_nhs=identifiers.show_nhs,
        sexes=get_args(Sex),
        diets=get_args(Diet),
        today=today,
    )


def _today_status(people: list[Patient], today: dt.date) -> dict[str, Any]:
    """Each patient's assessment as of today (what the list shows, not the last one
    saved): "nothing" when nothing clinical is recorded, None when the record cannot be
    assessed."""
    kb = load_knowledge()
    out: dict[str, Any] = {}
    for p in people:
        if history.nothing_recorded(p):
            out[p.id] = "nothing"
            continue
        try:
            out[p.id] = snapshots.current(kb, p, today).assessment
        except B12dxError:
            out[p.id] = None
    return out


@router.get("/patients", response_class=HTMLResponse)
async def patient_list(request: Request) -> Response:
    fu = followup(request)
    return await fu.run(request, lambda s: _patients_page(request, s, fu.visitor(s, request)))


@router.post("/patients/search", response_class=HTMLResponse)
async def patient_search(request: Request) -> Response:
    fu = followup(request)
    form = await form_fields(request)

    def work(s: Session) -> HTMLResponse:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        return _patients_page(request, s, visitor, query=form.get("q", ""))

    return await fu.run(request, work)


@router.post("/patients", response_class=HTMLResponse)
async def patient_add(request: Request) -> Response:
    fu = followup(request)
    form = await form_fields(request)
    kb = load_knowledge()

    def work(s: Session) -> str:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        birth = required_date(form, "birth_date")
        p = patients.add(
            s,
            kb,
            visitor.actor,
            fu.settings.now(),
            name=form.get("name", ""),
            birth_date=birth,
            sex=form.get("sex", ""),
            diet=form.get("diet") or "omnivore",
            conditions=[c for c in kb.conditions if form.get(f"cond_{c}")],
            nhs_number=form.get("nhs_number"),
            local_number=form.get("local_number"),
            # "Add anyway" is offered only once a namesake has been shown (patients.html).
            namesake_ok=form.get("add_anyway") == "yes",
        )
        return p.id

    try:
        pid = await fu.run(request, work)
    except InputError as exc:
        dup = exc if isinstance(exc, identifiers.LikelyDuplicate) else None
        errors = exc.errors
        return await fu.run(
            request,
            lambda s: _patients_page(
                request, s, fu.visitor(s, request), form=form, errors=errors, status=422,
                duplicates=dup.matches if dup else [], namesake=dup.namesake if dup else False,
            ),
        )  # fmt: skip
    return RedirectResponse(f"/patients/{pid}?saved=patient", status_code=303)
