"""The follow-up part of the web app: patients over time, the clinic's due list, sign-in,
the JSON API under /api/v1/patients and /api/v1/due, and the calendar feeds.

``install`` adds it to the app: its state (settings, the database opened on first use),
its routes, and the answers to its own errors (401 not signed in, 403 CSRF or not from
this machine, 404 no such patient in this practice, 503 database unavailable).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.datastructures import URL

from b12dx.store.db import DatabaseError
from b12dx.store.patients import NotFoundError
from b12dx.web import clinic_pages, followup_api, followup_pages, followup_patients
from b12dx.web.auth import CsrfFailed, Followup, NotLocal, NotSignedIn
from b12dx.web.settings import FollowupSettings, settings_from_env

log = logging.getLogger("b12dx.web")
_CALENDAR_PATH = re.compile(r"^/calendar/[^/?]+")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class _RedactCalendarTokens(logging.Filter):
    """The access log never holds a calendar token (it opens a patient's schedule)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and args[2].startswith("/calendar/")
        ):
            path = _CALENDAR_PATH.sub("/calendar/<token>.ics", args[2])
            record.args = (*args[:2], path, *args[3:])
        return True


def install(app: FastAPI, settings: FollowupSettings | None = None) -> Followup:
    state = Followup(settings if settings is not None else settings_from_env())
    app.state.followup = state
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactCalendarTokens) for f in access.filters):
        access.addFilter(_RedactCalendarTokens())

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Any:
        if _is_api(request):
            return JSONResponse(
                {"error": "not_signed_in", "message": "sign in first (POST /login)"},
                status_code=401,
            )
        if request.method == "GET":
            # Back to the very page, its query included (a CDS card's ?ref= link).
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = URL("/login").include_query_params(next=back)
            return RedirectResponse(str(target), status_code=303)
        return followup_pages.message_page(
            request, 401, "Please sign in", "Your session has ended, so nothing was saved. "
            "Sign in again and repeat the change.", sign_in=True,
        )  # fmt: skip

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Any:
        if _is_api(request):
            error = "unsupported_media_type" if exc.status == 415 else "csrf_failed"
            return JSONResponse({"error": error, "message": str(exc)}, status_code=exc.status)
        return followup_pages.message_page(request, exc.status, "Nothing was saved", str(exc))

    @app.exception_handler(NotLocal)
    async def not_local(request: Request, exc: NotLocal) -> Any:
        text = (
            "Sign-in is off on this server, so it answers only on this computer, at "
            "127.0.0.1 or localhost. To use it from elsewhere, start it with sign-in "
            "(b12dx serve --require-login) behind HTTPS."
        )
        if _is_api(request):
            return JSONResponse({"error": "not_local", "message": text}, status_code=403)
        return followup_pages.message_page(request, 403, "Only on this computer", text)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Any:
        if _is_api(request):
            return JSONResponse({"error": "not_found", "message": str(exc)}, status_code=404)
        return followup_pages.message_page(
            request, 404, "No such patient", "There is no patient with that id in your "
            "practice. Find them on the patients page.",
        )  # fmt: skip

    @app.exception_handler(DatabaseError)
    async def database_error(request: Request, exc: DatabaseError) -> Any:
        log.error("follow-up database: %s", exc)
        text = "The follow-up database cannot be used just now; the server log says why."
        if _is_api(request):
            return JSONResponse({"error": "database_unavailable", "message": text}, 503)
        return followup_pages.message_page(request, 503, "Records unavailable", text)

    app.include_router(followup_api.router)
    app.include_router(followup_pages.router)
    app.include_router(followup_patients.router)
    app.include_router(clinic_pages.router)
    return state
