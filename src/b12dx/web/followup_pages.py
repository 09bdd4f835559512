"""Follow-up pages (server-rendered, working without JavaScript): sign-in and each
patient's timeline with its forms (the patients page is in ``followup_patients``, the
clinic's due list and the calendar feed in ``clinic_pages``; all render with ``render``).

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

from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.patient import Drug, Route
from b12dx.store import entries, patients, snapshots, users
from b12dx.web.auth import Followup, Visitor, followup
from b12dx.web.followup_recorded import NOT_RECORDED, batch_and_site, recorded, ref, undo
from b12dx.web.forms import form_number
from b12dx.web.pages import templates
from b12dx.web.rate_limit import FAILURE_WINDOW_S, FAILURES_PER_NAME, client_address
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
    "undo": "Undone: marked as entered in error, and no longer part of the assessment.",
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


async def form_fields(request: Request) -> dict[str, str]:
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


def required_date(form: Mapping[str, str], field: str) -> dt.date:
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
    form = await form_fields(request)
    anonymous = fu.anonymous(request)
    fu.check_form(anonymous, form)
    username, password = form.get("username", ""), form.get("password", "")

    fu.guard(request)
    # Wrong passwords for this username from this address wait their window out, and the
    # password is not even checked; any other address, the user's own, is not held up.
    pair = f"{client_address(request)}\x00{username.strip().lower()}"
    wait = fu.failed_sign_ins.blocked(pair) or fu.sign_in_limiter.wait(client_address(request))
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
        fu.failed_sign_ins.count(pair)
        return render(
            request,
            "login.html",
            anonymous,
            401,
            next=_safe_next(form.get("next")),
            failed=True,
            username=username,
            per_name=FAILURES_PER_NAME,
            window_minutes=int(FAILURE_WINDOW_S // 60),
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
    form = await form_fields(request)
    token = request.cookies.get(fu.session_cookie, "")

    def work(s: Session) -> None:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        users.end_session(s, token, fu.settings.now())

    await fu.run(request, work)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    fu.clear_cookie(response, fu.session_cookie)
    return response


# -- a patient's timeline and its forms ----------------------------------------------


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
    just = (
        recorded(s, load_knowledge(), context["patient"], request.query_params.get("entry", ""))
        if saved in ("lab", "dose", "rating", "review")
        else None
    )
    return render(
        request,
        "patient.html",
        visitor,
        status,
        calendar_url=calendar_url,
        saved=SAVED.get(saved or ""),
        just=just,
        not_recorded=NOT_RECORDED,
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

    def work(s: Session) -> tuple[str, list[str]]:
        visitor = fu.visitor(s, request)
        fu.check_form(visitor, form)
        p = patients.get(s, visitor.actor, pid)
        now = fu.settings.now()
        made: list[str] = []  # the entries written, for the notice's Undo
        if kind == "lab":
            value = form.get("value", "").strip()
            lab = entries.add_lab(
                s, kb, visitor.actor, now, p,
                test=form.get("test", ""),
                value=value,
                unit=form.get("unit") or None,
                taken_on=required_date(form, "date"),
                reference_low=form_number(form, "reference_low"),
                reference_high=form_number(form, "reference_high"),
            )  # fmt: skip
            made.append(ref("lab", lab.id))
        elif kind == "dose":
            route = form.get("route", "")
            batch, site = batch_and_site(kb, form, route)
            dose = entries.add_dose(
                s, visitor.actor, now, p,
                given_on=required_date(form, "date"),
                drug=form.get("drug", ""),
                dose=form.get("dose", ""),
                route=route,
                given_by=form.get("given_by") or None,
                kb=kb,
                force=form.get("force") == "1",  # the "Record anyway" box
                batch=batch,
                site=site,
            )  # fmt: skip
            made.append(ref("dose", dose.id))
        elif kind == "rating":
            rating = entries.add_rating(
                s, kb, visitor.actor, now, p,
                symptom=form.get("symptom", ""),
                rating=form.get("rating", ""),
                rated_on=required_date(form, "date"),
            )  # fmt: skip
            made.append(ref("rating", rating.id))
        elif kind == "review":
            day = required_date(form, "date")
            chosen = [
                (sid, form[f"rate_{sid}"])
                for sid in dict.fromkeys(r.symptom_id for r in p.ratings)
                if form.get(f"rate_{sid}")
            ]
            if not chosen:
                raise InputError.single("review", "rate at least one symptom")
            for sid, rated in chosen:
                entry = entries.add_rating(
                    s, kb, visitor.actor, now, p, symptom=sid, rating=rated, rated_on=day
                )
                made.append(ref("rating", entry.id))
        elif kind == "details":
            start = form.get("start_medication", "")
            stop = form.get("stop_medication", "")
            pregnant = {"yes": True, "no": False}.get(form.get("pregnant", ""))
            patients.update(
                s, kb, visitor.actor, now, p,
                start_medications=[(start, form_date(form, "since"))] if start else [],
                stop_medications=[(stop, required_date(form, "stopped"))] if stop else [],
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
        elif kind == "undo":
            undo(s, visitor.actor, now, p, form.get("entry", ""))
        elif kind == "assessment":
            snapshots.save(s, kb, visitor.actor, now, p, today_for(fu))
        elif kind == "calendar":
            patients.new_calendar_token(s, visitor.actor, now, p)
        return p.id, made

    try:
        found, made = await fu.run(request, work)
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
    entry = f"&entry={quote(','.join(made))}" if made else ""
    back = form.get("return_to", "")
    if back.startswith("/clinic") and "//" not in back:
        # Recorded (or undone) from the clinic's list: back to the list, which says so.
        joiner = "&" if "?" in back else "?"
        said = "undone" if kind == "undo" else "recorded"
        return RedirectResponse(f"{back}{joiner}{said}={found}{entry}", status_code=303)
    return RedirectResponse(f"/patients/{found}?saved={kind}{entry}#{anchor}", status_code=303)


# The forms of a patient's page: where each posts, what it records (``_change``'s kind)
# and the section of the page it returns to.
_FORMS = {
    "labs": ("lab", "labs"),
    "doses": ("dose", "doses"),
    "symptoms": ("rating", "symptoms"),
    "review": ("review", "symptoms"),
    "details": ("details", "record"),
    "entered-in-error": ("void", "correct"),
    "undo": ("undo", "main"),
    "assessments": ("assessment", "assessment"),
    "calendar-token": ("calendar", "calendar"),
}


def _form_route(kind: str, anchor: str) -> Callable[[Request, str], Awaitable[Any]]:
    async def record(request: Request, pid: str) -> Any:
        return await _change(request, pid, kind, anchor, await form_fields(request))

    record.__name__ = f"record_{kind}"
    return record


for _path, (_kind, _anchor) in _FORMS.items():
    router.add_api_route(
        f"/patients/{{pid}}/{_path}", _form_route(_kind, _anchor), methods=["POST"]
    )
