"""Who is asking, and may they: sign-in sessions, CSRF tokens and the loopback guard of
the follow-up pages and API.

Login required (the default, and always beyond loopback):
  the session cookie ``__Host-b12dx_session`` holds a random token (only its SHA-256 is
  stored; ``store/users.py`` has the lifetimes); HttpOnly, Secure, SameSite=Strict,
  Path=/, no Domain. Every form carries the session's CSRF token in a hidden field; every
  JSON POST/DELETE carries it in ``X-CSRF-Token`` and must be ``application/json``.

Login off (``b12dx serve`` on loopback only):
  everyone is ``local:<os user>`` in practice 1. A page on another site can still make
  the browser POST to localhost, so forms carry a token that must equal the one in a
  cookie signed with the server's key (signed double submit; the key stops another
  program on localhost, which shares its cookies, from planting a pair). JSON POSTs must
  be ``application/json`` (a cross-site page cannot send that without a CORS preflight,
  which is never granted). Requests must come from a loopback address and name a loopback
  host: a DNS-rebinding page (evil.example resolving to 127.0.0.1) is refused by its Host.

The login form itself (before there is a session) uses the signed double submit too.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from b12dx.network import is_loopback
from b12dx.store import users
from b12dx.store.audit import LOCAL_PRACTICE_ID, Actor
from b12dx.store.db import Database, open_database
from b12dx.web.rate_limit import FAILURE_WINDOW_S, FAILURES_PER_NAME, SlidingWindowLimiter
from b12dx.web.settings import FollowupSettings

T = TypeVar("T")
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8000" -> "::1")."""
    h = header.strip()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    return h.partition(":")[0] if h.count(":") == 1 else h


class NotSignedIn(Exception):
    """No valid session: pages send the browser to /login, the API answers 401."""


class CsrfFailed(Exception):
    """A POST without the right CSRF token (or a JSON POST that is not JSON): 403/415."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class NotLocal(Exception):
    """Login is off, and the request is not from this machine to a loopback name."""


@dataclass(frozen=True)
class Visitor:
    """The person behind a request, in the follow-up pages."""

    actor: Actor
    display_name: str
    practice_name: str
    csrf_token: str
    signed_in: users.SignedIn | None = None
    new_csrf_cookie: str | None = None  # a signed cookie to set with the response


class Followup:
    """What the follow-up routes share in one app: settings and the database, opened on
    first use (the stateless pages never open it)."""

    def __init__(self, settings: FollowupSettings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._lock = threading.Lock()
        self.sign_in_limiter = SlidingWindowLimiter(attempts=settings.sign_in_per_minute)
        # Failed sign-ins per client address and username, on the settings' clock.
        self.failed_sign_ins = SlidingWindowLimiter(
            attempts=FAILURES_PER_NAME,
            window=FAILURE_WINDOW_S,
            clock=lambda: settings.now().timestamp(),
        )
        try:
            local_user = getpass.getuser()
        except (KeyError, OSError):
            local_user = "unknown"
        self.local_actor = Actor(f"local:{local_user}", LOCAL_PRACTICE_ID)

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                self._db = open_database(self.settings.database_url)
            return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.dispose()
                self._db = None

    # -- cookies -------------------------------------------------------------------

    @property
    def session_cookie(self) -> str:
        return "__Host-b12dx_session" if self.settings.secure_cookies else "b12dx_session"

    @property
    def csrf_cookie(self) -> str:
        return "__Host-b12dx_csrf" if self.settings.secure_cookies else "b12dx_csrf"

    def set_cookie(self, response: Response, name: str, value: str) -> None:
        # No Max-Age: the browser forgets it when it closes; the server's own expiry of
        # the session (store/users.py) is what counts.
        response.set_cookie(
            name,
            value,
            path="/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/", secure=self.settings.secure_cookies, httponly=True, samesite="strict"
        )

    def _sign(self, token: str) -> str:
        return hmac.new(self.settings.csrf_secret, token.encode(), hashlib.sha256).hexdigest()

    def cookie_csrf_token(self, request: Request) -> str | None:
        """The token in a validly signed CSRF cookie, if there is one."""
        raw = request.cookies.get(self.csrf_cookie, "")
        token, _, signature = raw.partition(".")
        if token and hmac.compare_digest(signature, self._sign(token)):
            return token
        return None

    def new_csrf_cookie(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, f"{token}.{self._sign(token)}"

    def finish(self, response: Response, visitor: Visitor | None) -> Response:
        if visitor is not None and visitor.new_csrf_cookie is not None:
            self.set_cookie(response, self.csrf_cookie, visitor.new_csrf_cookie)
        return response

    # -- who is asking -------------------------------------------------------------

    def guard(self, request: Request) -> None:
        """With login off, only this machine may ask, by a loopback name."""
        if self.settings.require_login:
            return
        client = request.client.host if request.client else None  # None: a Unix socket
        name = host_name(request.headers.get("host", ""))
        if (client is not None and not is_loopback(client)) or not is_loopback(name):
            raise NotLocal

    def anonymous(self, request: Request) -> Visitor:
        """A visitor before sign-in (the login form), or anyone when login is off: their
        CSRF token is the signed cookie's."""
        token = self.cookie_csrf_token(request)
        cookie = None
        if token is None:
            token, cookie = self.new_csrf_cookie()
        actor = self.local_actor
        return Visitor(actor, actor.name, "", token, None, cookie)

    def visitor(self, s: Session, request: Request) -> Visitor:
        """The signed-in user (or the local user when login is off); NotSignedIn else."""
        if not self.settings.require_login:
            v = self.anonymous(request)
            return Visitor(
                v.actor,
                v.display_name,
                users.practice_name(s, LOCAL_PRACTICE_ID),
                v.csrf_token,
                None,
                v.new_csrf_cookie,
            )
        token = request.cookies.get(self.session_cookie)
        signed = users.resume_session(s, token, self.settings.now()) if token else None
        if signed is None:
            raise NotSignedIn
        return Visitor(
            signed.actor,
            signed.username,
            users.practice_name(s, signed.practice_id),
            signed.csrf_token,
            signed,
        )

    @staticmethod
    def check_form(visitor: Visitor, form: Mapping[str, str]) -> None:
        sent = form.get(CSRF_FIELD, "")
        if not sent or not hmac.compare_digest(sent.encode(), visitor.csrf_token.encode()):
            raise CsrfFailed(
                "This form has expired or did not come from this site, so nothing was saved. "
                "Go back, reload the page and try again."
            )

    def check_json(self, request: Request, visitor: Visitor) -> None:
        """A JSON write: the body must be declared JSON, and (signed in) carry the token."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise CsrfFailed(
                f"the request body must be sent as application/json (got {kind or 'nothing'})",
                415,
            )
        if visitor.signed_in is None:
            return
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), visitor.csrf_token.encode()):
            raise CsrfFailed(
                "missing or wrong X-CSRF-Token header: send the csrf_token of GET /api/v1/session"
            )

    async def run(
        self, request: Request, work: Callable[[Session], T], *, signed_in: bool = True
    ) -> T:
        """``work`` in one transaction, in a worker thread (the database calls block):
        committed when it returns, rolled back when it raises; a read (no write lock) for
        GET and HEAD, a write transaction otherwise. ``signed_in``: ``work``
        needs a visitor, so a request without a session cookie is turned away before the
        database is opened."""
        self.guard(request)
        if signed_in and self.settings.require_login and self.session_cookie not in request.cookies:
            raise NotSignedIn

        # A page or an answer that only shows (GET) reads a snapshot without the write
        # lock, so it never waits behind a writer (a backup, a sign-in) nor holds one up.
        reading = request.method in ("GET", "HEAD")

        def in_transaction() -> T:
            with self.db.reading() if reading else self.db.transaction() as s:
                try:
                    return work(s)
                except NotSignedIn as exc:
                    # Asking who it is comes first in every ``work``: nothing else was
                    # written, and the expired session's deletion is kept.
                    ended = exc
            raise ended

        return await run_in_threadpool(in_transaction)


def followup(request: Request) -> Followup:
    state: Followup = request.app.state.followup
    return state
