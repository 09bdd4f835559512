"""Settings of the follow-up pages and API, and how ``b12dx serve`` hands them to its
worker processes (environment variables: uvicorn imports ``create_app`` in each worker).

B12DX_DATABASE_URL   the follow-up database (see ``store/db.py``)
B12DX_REQUIRE_LOGIN  1 (default) or 0; 0 is only for a server on loopback
B12DX_CSRF_SECRET    hex key signing the CSRF cookie used before sign-in and when login is
                     off; ``serve`` makes a random one per start so all workers share it
B12DX_PUBLIC_URL     the URL users reach the server at (calendar links), behind a proxy
B12DX_SIGN_IN_PER_MINUTE  sign-in attempts one client address may make a minute (20)
B12DX_CDS_OPEN_WARNED  1 when ``serve`` has already warned, once, that CDS clients need
                     not authenticate: its workers do not warn again
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from b12dx.errors import InputError
from b12dx.network import is_loopback

ENV_REQUIRE_LOGIN = "B12DX_REQUIRE_LOGIN"
ENV_CSRF_SECRET = "B12DX_CSRF_SECRET"
ENV_DATABASE_URL = "B12DX_DATABASE_URL"
ENV_CDS_OPEN_WARNED = "B12DX_CDS_OPEN_WARNED"
ENV_SIGN_IN_PER_MINUTE = "B12DX_SIGN_IN_PER_MINUTE"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class FollowupSettings:
    database_url: str | None = None  # None: B12DX_DATABASE_URL, else the default file
    require_login: bool = True
    csrf_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    public_url: str | None = None
    # Sign-in attempts per client address a minute (web/rate_limit.py); a practice
    # whose staff all reach the server from one address may need more.
    sign_in_per_minute: int = 20
    now: Callable[[], dt.datetime] = utcnow  # the adapter reads the clock, not the store

    @property
    def secure_cookies(self) -> bool:
        # Login is required when served beyond loopback, which must be behind TLS.
        return self.require_login


# A date to assess or list what is due "as of": the past century, or a few years ahead
# (beyond that no schedule is meaningful, and far dates overflow date arithmetic).
AS_OF_YEARS_BACK = 100
AS_OF_YEARS_AHEAD = 5


def check_as_of(day: dt.date, today: dt.date, field: str = "as_of") -> None:
    low = today.replace(year=today.year - AS_OF_YEARS_BACK, day=min(today.day, 28))
    high = today.replace(year=today.year + AS_OF_YEARS_AHEAD, day=min(today.day, 28))
    if not low <= day <= high:
        raise InputError.single(field, f"{day} is out of range", f"{low} to {high}")


def assessment_date(record: Mapping[str, Any], today: dt.date) -> dt.date | None:
    """What to pass the engine as ``as_of`` for a record typed into a web form: today
    when the record gives none, else None (the record's own). An assessment is made for
    today or a day before it: a later ``as_of`` dated the whole plan in the future."""
    given = record.get("as_of")
    if not given:
        return today
    try:
        day = dt.date.fromisoformat(given) if isinstance(given, str) else None
    except ValueError:
        day = None  # not a date: the engine names it
    # A day of leeway: the browser's today may be a day ahead of the server's.
    if day is not None and day > today + dt.timedelta(days=1):
        raise InputError.single(
            "as_of", f"{day} is after today ({today})", "today or an earlier date"
        )
    return None


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def settings_from_env() -> FollowupSettings:
    secret = os.environ.get(ENV_CSRF_SECRET)
    return FollowupSettings(
        database_url=os.environ.get(ENV_DATABASE_URL) or None,
        require_login=_flag(os.environ.get(ENV_REQUIRE_LOGIN), True),
        csrf_secret=bytes.fromhex(secret) if secret else secrets.token_bytes(32),
        public_url=os.environ.get("B12DX_PUBLIC_URL") or None,
        sign_in_per_minute=_positive(os.environ.get(ENV_SIGN_IN_PER_MINUTE), 20),
    )


def _positive(value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InputError.single(
            ENV_SIGN_IN_PER_MINUTE, f"{value!r} is not a whole number", "1 or more"
        )
    return number


def configure_serve(
    host: str, db: str | None, require_login: bool | None, behind_proxy: bool = False
) -> list[str]:
    """Check the serve options, open (and migrate) the database once before the workers
    start, and put the settings where each worker reads them. Returns lines to print.
    ``behind_proxy``: a public URL or trusted proxies were given, so requests come through
    a proxy on this machine (their client and Host look local): served as beyond
    loopback, sign-in required."""
    from b12dx.store import users
    from b12dx.store.db import open_database

    local = is_loopback(host) and not behind_proxy
    login = (not local) if require_login is None else require_login
    if not login and not local:
        where = f"behind a proxy ({host})" if behind_proxy else f"on {host}"
        raise InputError.single(
            "--no-require-login",
            f"sign-in cannot be turned off {where}: anyone who reaches it could read and "
            "change patient records",
            "--no-require-login only on loopback with no --public-url or --trusted-proxies",
        )
    _positive(os.environ.get(ENV_SIGN_IN_PER_MINUTE), 20)  # an error here, not in a worker
    database = open_database(db)
    try:
        with database.reading() as s:
            count = len(users.users(s))
    finally:
        database.dispose()
    os.environ[ENV_DATABASE_URL] = database.url
    os.environ[ENV_REQUIRE_LOGIN] = "1" if login else "0"
    os.environ.setdefault(ENV_CSRF_SECRET, secrets.token_hex(32))
    opened = "Created a new database at" if database.created else "follow-up database:"
    lines = [f"{opened} {database.where}"]
    if login:
        lines.append(
            "sign-in required for the follow-up pages; session cookies are Secure, so serve "
            "it behind HTTPS (a TLS-terminating proxy)."
        )
        if count == 0:
            lines.append(
                "WARNING: no users yet: add one with `b12dx practice add NAME` and "
                "`b12dx user add USERNAME --practice NAME`."
            )
    else:
        who = "unknown"
        try:
            import getpass

            who = getpass.getuser()
        except (KeyError, OSError):
            pass
        lines.append(
            f"sign-in is off (loopback only): changes are recorded as local:{who}, practice 1."
        )
    return lines


def check_port(host: str, port: int) -> None:
    """Bind ``host``:``port`` for a moment and let it go, so that a port in use is a clear
    error before the database is opened and the workers start, rather than uvicorn's own
    after "Application startup complete". Every address the name has is tried, as the
    server binds them all (localhost is 127.0.0.1 and ::1)."""
    if not 0 < port < 65536:
        raise InputError.single("--port", f"{port} is not a port", "1 to 65535")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError.single(
            "--host", f"{host!r} is not an address of this machine ({exc.strerror})"
        ) from None
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            # As the server binds: reusing a port just closed, IPv6 apart from IPv4.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _bind_error(host, port, exc) from None


def _bind_error(host: str, port: int, exc: OSError) -> InputError:
    if exc.errno == errno.EADDRINUSE:
        return InputError.single(
            "--port", f"port {port} on {host} is in use", "a port no other program listens on"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InputError.single("--host", f"{host} is not an address of this machine")
    return InputError.single("--port", f"port {port} on {host} cannot be used: {exc.strerror}")
