"""Follow-up pages (server-rendered, working without JavaScript): sign-in, the practice's
patients and each patient's timeline with its forms (the clinic's due list and the
calendar feed are in ``clinic_pages``; both render with ``render``).

Every form POST is checked for its CSRF token before anything else happens; a change is
written with its audit entry in one transaction, then the browser is sent back to the
page (POST, redirect, GET), or the page is shown again with the errors and the answers.
Patient names never travel in URLs (the search is a POST), so they are in no access log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from b12dx.errors import B12dxError, FieldError, InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.patient import Diet, Drug, Route, Sex
from b12dx.store import entries, history, patients, snapshots, users
from b12dx.store.tables import Patient
from b12dx.web.auth import Followup, Visitor, followup
from b12dx.web.forms import form_number
from b12dx.web.pages import templates
from b12dx.web.rate_limit import client_address
from b12dx.web.timeline import timeline_context

router = APIRouter(include_in_schema=False)
SAVED = {
    "patient": "Patient added.",
    "lab": "Lab result saved.",
    "dose": "Dose saved.",
    "rating": "Symptom rating saved.",
    "assessment": "Assessment saved.",
    "calendar": "New calendar link made; the old one no longer works.",
    "void": "Entry marked as entered in error; it is no longer part of the assessment.",
    "review": "Review saved.",
    "details": "Changes saved.",
}
RECORD_ANYWAY = "Record anyway"  # the dose form's confirmation box (patient.html)


def render(
    request: Request, name: str, visitor: Visitor | None, status: int = 200, **context: Any
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {
            "kb": load_knowledge(),
            "visitor": visitor,
            "csrf": visitor.csrf_token if visitor else "",
            "login_required": followup(request).settings.require_login,
            **context,
        },
        status_code=status,
    )
    followup(request).finish(response, visitor)
    return response


def message_page(
    request: Request, status: int, title: str, text: str, *, sign_in: bool = False
) -> HTMLResponse:
    return render(request, "fu_message.html", None, status, title=title, text=text, sign_in=sign_in)


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    out: dict[str, str] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            out[key] = f"{out[key]}\n{value}" if key in out else value
    if any("\x00" in v for v in out.values()):
        raise InputError.single("", "the form holds a NUL character")
    return out


def today_for(fu: Followup) -> dt.date:
    return fu.settings.now().date()


def form_date(form: Mapping[str, str], field: str) -> dt.date | None:
    raw = form.get(field, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InputError.single(field, f"{raw!r} is not a date", "YYYY-MM-DD") from None


def _required_date(form: Mapping[str, str], field: str) -> dt.date:
    day = form_date(form, field)
    if day is None:
        raise InputError.single(field, "is required", "YYYY-MM-DD")
    return day


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no //host, no scheme) may follow a sign-in."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/patients"


# -- sign in and out -----------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    fu = followup(request)
    if not fu.settings.require_login:
        return RedirectResponse("/patients", status_code=303)
    fu.guard(request)
    signed_out = request.query_params.get("signed_out") == "1"
    return render(
        request, "login.html", fu.anonymous(request), next=_safe_next(next), signed_out=signed_out
    )


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    fu = followup(request)
    if not fu.settings.require_login:
        return RedirectResponse("/patients", status_code=303)
    form = await _form(request)
    anonymous = fu.anonymous(request)
    fu.check_form(anonymous, form)
    username, password = form.get("username", ""), form.get("password", "")

    fu.guard(request)
    wait = fu.sign_in_limiter.wait(client_address(request))
    if wait:
        return render(
            request,
            "login.html",
            anonymous,
            429,
            next=_safe_next(form.get("next")),
            too_many=True,
            wait_seconds=wait,
            username=username,
        )
    # The password is checked outside any transaction (argon2 is slow on purpose), then
    # one short write counts the attempt and starts the session.
    token = await run_in_threadpool(users.sign_in, fu.db, username, password, fu.settings.now())
    if token is None:
        return render(
            request,
            "login.html",
            anonymous,
            401,
            next=_safe_next(form.get("next")),
            failed=True,
            username=username,
            max_failed=users.MAX_FAILED_LOGINS,
            lockout_minutes=int(users.LOCKOUT.total_seconds() // 60),
        )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    fu.set_cookie(response, fu.session_cookie, token)
    return response


@router.get("/logout", response_class=HTMLResponse)
async def logout_form(request: Request) -> Response:
    fu = followup(request)
    if not fu.settings.require_login:
        return RedirectResponse("/patients", status_code=303)
    visitor = await fu.run(request, lambda s: fu.visitor(s, request))
    return render(request, "logout.html", visitor)


@router.post("/logout")
async def logout(request: Request) -> Response:
    fu = followup(request)
    if not fu.settings.require_login:
        return RedirectResponse("/patients", status_code=303)
    form = await _form(request)
    token = request.cookies.get(fu.session_cookie, "")

    def work(s: Session) -> None:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        users.end_session(s, token, fu.settings.now())

    await fu.run(request, work)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    fu.clear_cookie(response, fu.session_cookie)
    return response


# -- patients ------------------------------------------------------------------------


def _patients_page(
    request: Request,
    s: Session,
    visitor: Visitor,
    *,
    query: str = "",
    form: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
    status: int = 200,
) -> HTMLResponse:
    people = patients.all_in_practice(s, visitor.actor, full=True)
    if query.strip():
        q = query.strip().lower()
        wanted = patients.normalise_id(query)
        people = [p for p in people if q in p.name.lower() or p.id == wanted]
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
    form = await _form(request)

    def work(s: Session) -> HTMLResponse:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        return _patients_page(request, s, visitor, query=form.get("q", ""))

    return await fu.run(request, work)


@router.post("/patients", response_class=HTMLResponse)
async def patient_add(request: Request) -> Response:
    fu = followup(request)
    form = await _form(request)
    kb = load_knowledge()

    def work(s: Session) -> str:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        birth = _required_date(form, "birth_date")
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
        )
        return p.id

    try:
        pid = await fu.run(request, work)
    except InputError as exc:
        errors = exc.errors
        return await fu.run(
            request,
            lambda s: _patients_page(
                request, s, fu.visitor(s, request), form=form, errors=errors, status=422
            ),
        )
    return RedirectResponse(f"/patients/{pid}?saved=patient", status_code=303)


def _timeline(
    request: Request,
    s: Session,
    visitor: Visitor,
    pid: str,
    *,
    form_kind: str | None = None,
    form: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
    status: int = 200,
    confirm_dose: bool = False,
) -> HTMLResponse:
    fu = followup(request)
    context = timeline_context(s, load_knowledge(), visitor.actor, pid, today_for(fu))
    base = fu.settings.public_url or str(request.base_url)
    calendar_url = f"{base.rstrip('/')}/calendar/{quote(context['patient'].calendar_token)}.ics"
    saved = request.query_params.get("saved") if status == 200 else None
    return render(
        request,
        "patient.html",
        visitor,
        status,
        calendar_url=calendar_url,
        saved=SAVED.get(saved or ""),
        form_kind=form_kind,
        form=form or {},
        errors=errors or [],
        drugs=get_args(Drug),
        routes=get_args(Route),
        ratings=entries.RATINGS,
        confirm_dose=confirm_dose,
        **context,
    )


@router.get("/patients/{pid}", response_class=HTMLResponse)
async def patient_timeline(request: Request, pid: str) -> Response:
    fu = followup(request)
    return await fu.run(request, lambda s: _timeline(request, s, fu.visitor(s, request), pid))


async def _change(request: Request, pid: str, kind: str, anchor: str, form: dict[str, str]) -> Any:
    """Apply one timeline form (its CSRF token checked first), then back to the page."""
    fu = followup(request)
    kb = load_knowledge()

    def work(s: Session) -> str:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        p = patients.get(s, visitor.actor, pid)
        now = fu.settings.now()
        if kind == "lab":
            value = form.get("value", "").strip()
            entries.add_lab(
                s, kb, visitor.actor, now, p,
                test=form.get("test", ""),
                value=value,
                unit=form.get("unit") or None,
                taken_on=_required_date(form, "date"),
                reference_low=form_number(form, "reference_low"),
                reference_high=form_number(form, "reference_high"),
            )  # fmt: skip
        elif kind == "dose":
            entries.add_dose(
                s, visitor.actor, now, p,
                given_on=_required_date(form, "date"),
                drug=form.get("drug", ""),
                dose=form.get("dose", ""),
                route=form.get("route", ""),
                given_by=form.get("given_by") or None,
                kb=kb,
                force=form.get("force") == "1",  # the "Record anyway" box
                batch=form.get("batch") or None,
                site=form.get("site") or None,
            )  # fmt: skip
        elif kind == "rating":
            entries.add_rating(
                s, kb, visitor.actor, now, p,
                symptom=form.get("symptom", ""),
                rating=form.get("rating", ""),
                rated_on=_required_date(form, "date"),
            )  # fmt: skip
        elif kind == "review":
            day = _required_date(form, "date")
            chosen = [
                (sid, form[f"rate_{sid}"])
                for sid in dict.fromkeys(r.symptom_id for r in p.ratings)
                if form.get(f"rate_{sid}")
            ]
            if not chosen:
                raise InputError.single("review", "rate at least one symptom")
            for sid, rating in chosen:
                entries.add_rating(
                    s, kb, visitor.actor, now, p, symptom=sid, rating=rating, rated_on=day
                )
        elif kind == "details":
            start = form.get("start_medication", "")
            stop = form.get("stop_medication", "")
            pregnant = {"yes": True, "no": False}.get(form.get("pregnant", ""))
            patients.update(
                s, kb, visitor.actor, now, p,
                start_medications=[(start, form_date(form, "since"))] if start else [],
                stop_medications=[(stop, _required_date(form, "stopped"))] if stop else [],
                add_conditions=[form["add_condition"]] if form.get("add_condition") else [],
                add_exposures=[form["add_exposure"]] if form.get("add_exposure") else [],
                pregnant=pregnant if pregnant != p.pregnant else None,
            )  # fmt: skip
        elif kind == "void":
            what, _, number = form.get("entry", "").partition(":")
            if not number.isdigit():
                raise InputError.single("entry", "choose the entry that is wrong")
            entries.void_entry(
                s, visitor.actor, now, p, kind=what, entry_id=int(number),
                reason=form.get("reason", ""),
            )  # fmt: skip
        elif kind == "assessment":
            snapshots.save(s, kb, visitor.actor, now, p, today_for(fu))
        elif kind == "calendar":
            patients.new_calendar_token(s, visitor.actor, now, p)
        return p.id

    try:
        found = await fu.run(request, work)
    except InputError as exc:
        # A dose that looks wrong is shown again with why, and a box to record it anyway.
        unusual = exc if isinstance(exc, entries.UnusualDose) else None
        errors = (unusual.confirm_with(f"tick {RECORD_ANYWAY!r}") if unusual else exc).errors
        return await fu.run(
            request,
            lambda s: _timeline(
                request, s, fu.visitor(s, request), pid, form_kind=kind, form=form,
                errors=errors, status=422, confirm_dose=unusual is not None,
            ),
        )  # fmt: skip
    back = form.get("return_to", "")
    if back.startswith("/clinic") and "//" not in back:
        # Recorded from the clinic's list: back to the list, which says so.
        joiner = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{joiner}recorded={found}", status_code=303)
    return RedirectResponse(f"/patients/{found}?saved={kind}#{anchor}", status_code=303)


# The forms of a patient's page: where each posts, what it records (``_change``'s kind)
# and the section of the page it returns to.
_FORMS = {
    "labs": ("lab", "labs"),
    "doses": ("dose", "doses"),
    "symptoms": ("rating", "symptoms"),
    "review": ("review", "symptoms"),
    "details": ("details", "record"),
    "entered-in-error": ("void", "correct"),
    "assessments": ("assessment", "assessment"),
    "calendar-token": ("calendar", "calendar"),
}


def _form_route(kind: str, anchor: str) -> Callable[[Request, str], Awaitable[Any]]:
    async def record(request: Request, pid: str) -> Any:
        return await _change(request, pid, kind, anchor, await _form(request))

    record.__name__ = f"record_{kind}"
    return record


for _path, (_kind, _anchor) in _FORMS.items():
    router.add_api_route(
        f"/patients/{{pid}}/{_path}", _form_route(_kind, _anchor), methods=["POST"]
    )
