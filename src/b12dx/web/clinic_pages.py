"""The clinic's pages: the due list (injections, reviews and follow-up tests due, by
kind, to print or download as CSV) and each patient's calendar feed."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.spreadsheet import safe_row
from b12dx.store import due, patients, snapshots
from b12dx.store.periods import parse_days
from b12dx.store.tables import Patient
from b12dx.web.auth import followup
from b12dx.web.followup_pages import form_date, render, today_for
from b12dx.web.followup_recorded import NOT_RECORDED, recorded
from b12dx.web.ics import followup_calendar
from b12dx.web.settings import check_as_of

router = APIRouter(include_in_schema=False)

DUE_WINDOWS = (7, 14, 30, 90)  # the due list's "within" choices, in days


# -- the clinic's list ---------------------------------------------------------------


KIND_LABELS = {
    "cannot_assess": "Cannot be assessed",
    "act_now": "Act now",
    "maintenance_overdue": "Injection overdue",
    "test_overdue": "Follow-up test overdue",
    "review_overdue": "Review overdue",
    "start_treatment": "Start treatment",
    "recovery_behind": "Recovery behind",
    "dose_due": "Injection due",
    "test_due": "Follow-up test due",
    "review_due": "Review due",
}


@router.get("/clinic.csv")
async def clinic_csv(request: Request) -> Response:
    """The same list as /clinic, for a spreadsheet (the practice's own patients)."""

    fu = followup(request)
    today = today_for(fu)

    def work(s: Session) -> str:
        visitor = fu.visitor(s, request)
        as_of = form_date({"as_of": request.query_params.get("as_of", "")}, "as_of") or today
        check_as_of(as_of, today)
        within = parse_days(request.query_params.get("within") or "14")
        kind = request.query_params.get("kind", "")
        items = due.due(s, load_knowledge(), visitor.actor, as_of, within)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["patient_id", "patient_name", "what", "kind", "date", "overdue", "urgency", "detail"]
        )
        for i in items:
            if kind and i.kind != kind:
                continue
            writer.writerow(
                safe_row(
                    [
                        i.patient_id,
                        i.patient_name,
                        KIND_LABELS[i.kind],
                        i.kind,
                        i.date,
                        i.overdue,
                        i.urgency,
                        i.text,
                    ]
                )
            )
        return out.getvalue()

    body = await fu.run(request, work)
    return Response(
        body,
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="b12-due.csv"'},
    )


@router.get("/clinic", response_class=HTMLResponse)
async def clinic(request: Request) -> Response:
    fu = followup(request)
    today = today_for(fu)
    raw_as_of = request.query_params.get("as_of", "")
    raw_within = request.query_params.get("within", "")
    kind = request.query_params.get("kind", "")

    def work(s: Session) -> HTMLResponse:
        visitor = fu.visitor(s, request)
        errors: list[FieldError] = []
        as_of, within = today, 14
        try:
            as_of = form_date({"as_of": raw_as_of}, "as_of") or today
            check_as_of(as_of, today)
        except InputError as exc:
            errors += exc.errors
        if raw_within.strip():
            try:
                within = parse_days(raw_within)
            except InputError as exc:
                errors += exc.errors
        items: list[due.DueItem] = []
        if not errors:
            try:
                items = due.due(s, load_knowledge(), visitor.actor, as_of, within)
            except InputError as exc:
                errors += exc.errors
        kinds = list(dict.fromkeys(i.kind for i in items))
        shown = [i for i in items if not kind or i.kind == kind]
        just = None
        for key in ("recorded", "undone"):
            pid = request.query_params.get(key, "")
            if pid:
                try:
                    who = patients.get(s, visitor.actor, pid)
                except patients.NotFoundError:
                    continue
                just = recorded(s, load_knowledge(), who, request.query_params.get("entry", ""))
        return render(
            request,
            "clinic.html",
            visitor,
            422 if errors else 200,
            overdue=[i for i in shown if i.overdue],
            due_today=[i for i in shown if not i.overdue and i.date <= as_of],
            upcoming=[i for i in shown if not i.overdue and i.date > as_of],
            kinds=kinds,
            kind=kind,
            labels=KIND_LABELS,
            just=just,
            undone=bool(request.query_params.get("undone")),
            not_recorded=NOT_RECORDED,
            as_of=as_of,
            raw_as_of=raw_as_of or as_of.isoformat(),
            within=raw_within if errors and raw_within else str(within),
            within_days=within,
            windows=DUE_WINDOWS,
            errors=errors,
        )

    return await fu.run(request, work)


# -- calendar feed -------------------------------------------------------------------


@router.get("/calendar/{token}.ics")
async def calendar_feed(request: Request, token: str) -> Response:
    """A patient's dose schedule for a calendar app: no sign-in (calendar apps cannot),
    so the address itself is the secret; the feed names the patient by id only."""
    fu = followup(request)
    kb = load_knowledge()
    today = today_for(fu)

    def work(s: Session) -> bytes | None:
        wellformed = len(token) <= 64 and set(token) <= patients.CALENDAR_TOKEN_CHARS
        p: Patient | None = patients.by_calendar_token(s, token) if wellformed else None
        if p is None:
            return None
        try:
            treatment = snapshots.current(kb, p, today).assessment.treatment
        except InputError:
            treatment = None
        return followup_calendar(p.id, treatment, fu.settings.now())

    body = await fu.run(request, work, signed_in=False)
    if body is None:
        return Response("no such calendar\n", status_code=404, media_type="text/plain")
    return Response(
        body,
        media_type="text/calendar",
        headers={"content-disposition": 'inline; filename="b12-schedule.ics"'},
    )
