"""HTML pages: the landing page, the patient check, the clinician view and the API docs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from b12dx.cds.state import CdsState
from b12dx.engine.assess import assess
from b12dx.engine.schedule import dose_runs
from b12dx.errors import InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.numbers import format_si
from b12dx.web import forms
from b12dx.web.ics import schedule_calendar

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# A lab value in its SI unit, written by the one rounding rule (b12dx.numbers).
templates.env.filters["si"] = format_si

URGENCY_HEADLINE = {
    "emergency": "Call emergency services or go to the emergency department now",
    "urgent": "See a doctor today",
    "soon": "Book an appointment with your doctor within 2 weeks",
    "routine": "Mention it at your next routine appointment",
    "self_care": "You can look after this yourself",
}


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    kb = load_knowledge()
    return templates.TemplateResponse(
        request, name, {"kb": kb, "headline": URGENCY_HEADLINE, **context}, status_code=status
    )


def error_page(request: Request, exc: InputError, status: int) -> HTMLResponse:
    return _render(request, "error.html", status=status, errors=exc.errors)


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return _render(request, "index.html")


@router.get("/check", response_class=HTMLResponse)
def check_form(request: Request) -> HTMLResponse:
    return _render(request, "check.html", questions=forms.RED_FLAG_QUESTIONS, form={}, errors=[])


@router.post("/check", response_class=HTMLResponse)
async def check_result(request: Request) -> HTMLResponse:
    form = await _form(request)
    kb = load_knowledge()
    if forms.red_flags_answered(form) and not form.get("age_years", "").strip():
        # Red-flag answers go straight to the emergency advice, before any other question.
        ticked = [q for q in forms.RED_FLAG_QUESTIONS if form.get(q.field)]
        return _render(request, "check_emergency.html", ticked=ticked)
    try:
        record = forms.patient_check_record(form, kb)
        a = assess(record, as_of=dt.date.today())
    except InputError as exc:
        return _render(
            request,
            "check.html",
            status=422,
            questions=forms.RED_FLAG_QUESTIONS,
            form=form,
            errors=exc.errors,
        )
    tests = [s for s in a.next_steps if s.id.startswith("order_")]
    return _render(request, "check_result.html", a=a, record=record, tests=tests)


def _clinician_context(a: Assessment) -> dict[str, Any]:
    runs = dose_runs(a.treatment.schedule) if a.treatment else []
    span = 15 * 30  # the recovery chart covers 15 months from the first dose
    chart = []
    if a.treatment and a.recovery_milestones:
        for i, m in enumerate(a.recovery_milestones):
            days = (m.expected_by - a.treatment.start).days
            chart.append({"m": m, "x": 60 + 520 * min(days, span) / span, "y": 30 + 24 * i})
    return {"runs": runs, "chart": chart}


@router.get("/clinician", response_class=HTMLResponse)
def clinician_form(request: Request, ref: str | None = None) -> HTMLResponse:
    if ref is None:
        return _render(request, "clinician.html", form={}, errors=[], today=dt.date.today())
    # A CDS card's link: the record it refers to, kept for a clinic day (cds/state.py).
    state: CdsState = request.app.state.cds_state
    record = state.handed_over(ref)
    if record is None:
        return _render(
            request,
            "clinician.html",
            status=404,
            form={},
            errors=[],
            today=dt.date.today(),
            expired_link=True,
        )
    a = assess(record, as_of=None if record.get("as_of") else dt.date.today())
    return _render(
        request,
        "clinician_result.html",
        a=a,
        record_json=json.dumps(record),
        profile=a.profile,
        **_clinician_context(a),
    )


@router.post("/clinician", response_class=HTMLResponse)
async def clinician_result(request: Request) -> HTMLResponse:
    form = await _form(request)
    kb = load_knowledge()
    try:
        record = forms.clinician_record(form, kb)
        as_of = None if record.get("as_of") else dt.date.today()
        a = assess(record, profile=form.get("profile") or None, as_of=as_of)
    except InputError as exc:
        return _render(
            request,
            "clinician.html",
            status=422,
            form=form,
            errors=exc.errors,
            today=dt.date.today(),
        )
    return _render(
        request,
        "clinician_result.html",
        a=a,
        record_json=json.dumps(record),
        profile=a.profile,
        **_clinician_context(a),
    )


@router.post("/clinician/schedule.ics")
async def clinician_calendar(request: Request) -> Response:
    form = await _form(request)
    kb = load_knowledge()
    record = forms.clinician_record({"record_json": form.get("record_json", "")}, kb)
    as_of = None if record.get("as_of") else dt.date.today()
    a = assess(record, profile=form.get("profile") or None, as_of=as_of)
    if a.treatment is None:
        raise InputError.single("", "no treatment is indicated, so there is no schedule")
    return Response(
        schedule_calendar(a.treatment, a.as_of),
        media_type="text/calendar",
        headers={"content-disposition": 'attachment; filename="b12-schedule.ics"'},
    )


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    spec = request.app.openapi()
    return _render(request, "docs.html", spec=spec)
