"""The follow-up pages and JSON API in-process (httpx + ASGI), each test with its own
SQLite database: sign-in and lockout, sessions, CSRF, practices kept apart, the audit
log, every API route and its errors, the timeline, the clinic list and the calendar."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from sqlalchemy import func, select

from b12dx.cli.app import main
from b12dx.engine.labs import band_rule
from b12dx.errors import InputError
from b12dx.models.patient import PatientRecord
from b12dx.store import users
from b12dx.store.audit import Actor
from b12dx.store.db import Database, open_database
from b12dx.store.tables import AuditEntry, DoseEntry, LabEntry, LoginSession, Patient
from b12dx.web.app import create_app
from b12dx.web.settings import ENV_CDS_OPEN_WARNED, FollowupSettings, configure_serve
from cli_calls import call

TODAY = dt.date(2026, 11, 21)
PASSWORD = "correct horse battery"
SECURE_BASE = "https://b12dx.example"
LOCAL_BASE = "http://127.0.0.1:8000"


def days_ago(n: int) -> str:
    return (TODAY - dt.timedelta(days=n)).isoformat()


class Clock:
    """The server's clock, moved by the tests (no sleeping)."""

    def __init__(self) -> None:
        self.now = dt.datetime.combine(TODAY, dt.time(9, 0), tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    # argon2 at its real cost takes ~50 ms a hash; the tests sign in many times.
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))


@dataclass
class Site:
    """A server (the app in-process) on its own database, with two practices."""

    db: Database
    url: str
    clock: Clock
    practice_a: int
    practice_b: int

    def app(self, require_login: bool) -> Any:
        settings = FollowupSettings(
            database_url=self.url, require_login=require_login, now=self.clock
        )
        return create_app(followup_settings=settings)

    def count(self, model: Any) -> int:
        with self.db.transaction() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    def audit(self) -> list[AuditEntry]:
        with self.db.transaction() as s:
            return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'followup.sqlite3'}"
    db = open_database(url)
    clock = Clock()
    admin = Actor("cli:admin")
    with db.transaction() as s:
        a = users.create_practice(s, admin, clock(), "Riverside Surgery")
        b = users.create_practice(s, admin, clock(), "Hillside Practice")
        users.create_user(
            s, admin, clock(), username="nurse.a", password=PASSWORD, practice_id=a.id
        )
        users.create_user(s, admin, clock(), username="gp.b", password=PASSWORD, practice_id=b.id)
    yield Site(db, url, clock, a.id, b.id)
    db.dispose()


def client_for(app: Any, base: str = SECURE_BASE, **kw: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, **kw)
    return httpx.AsyncClient(transport=transport, base_url=base)


@pytest_asyncio.fixture
async def secure(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(site.app(require_login=True)) as c:
        yield c


@pytest_asyncio.fixture
async def local(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(site.app(require_login=False), LOCAL_BASE) as c:
        yield c


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def sign_in(c: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await c.get("/login")
    assert page.status_code == 200
    return await c.post(
        "/login",
        data={"csrf_token": csrf_in(page.text), "username": username, "password": password},
    )


async def signed_in(c: httpx.AsyncClient, username: str = "nurse.a") -> str:
    """Sign in and return the session's CSRF token for the API."""
    r = await sign_in(c, username)
    assert r.status_code == 303, r.text
    info = await c.get("/api/v1/session")
    assert info.status_code == 200
    token: str = info.json()["csrf_token"]
    return token


async def api_post(
    c: httpx.AsyncClient, path: str, body: Any, token: str | None = None
) -> httpx.Response:
    headers = {"x-csrf-token": token} if token else {}
    return await c.post(path, json=body, headers=headers)


PATIENT = {"name": "Ann Smith", "birth_date": "1958-03-02", "sex": "female"}
# A dose through the API says what it does not know (the batch and site, else a 422).
NOT_RECORDED = {"batch_not_recorded": True, "site_not_recorded": True}


async def add_patient(c: httpx.AsyncClient, token: str | None = None, **extra: Any) -> str:
    body = PATIENT | {"conditions": ["pernicious_anemia"]} | extra
    r = await api_post(c, "/api/v1/patients", body, token)
    assert r.status_code == 201, r.text
    pid: str = r.json()["id"]
    return pid


async def course(c: httpx.AsyncClient, pid: str, token: str | None = None) -> None:
    """A treated patient: low B12, tingling, an assessment saved at the start, five loading
    doses then one more six weeks later, and maintenance never started."""
    base = f"/api/v1/patients/{pid}"
    posts: list[tuple[str, dict[str, Any]]] = [
        ("labs", {"test": "total_b12", "value": 110, "unit": "pg/mL", "date": days_ago(200)}),
        ("labs", {"test": "total_b12", "value": 300, "unit": "pg/mL", "date": days_ago(100)}),
        ("labs", {"test": "hemoglobin", "value": 104, "unit": "g/L", "date": days_ago(200)}),
        ("labs", {"test": "mcv", "value": 109, "unit": "fL", "date": days_ago(200)}),
        ("symptoms", {"symptom": "paresthesia", "rating": "severe", "date": days_ago(199)}),
        ("assessments", {"as_of": days_ago(199)}),
        ("symptoms", {"symptom": "paresthesia", "rating": "mild", "date": days_ago(20)}),
    ]
    posts += [
        ("doses", {"date": days_ago(d), "drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"}
         | NOT_RECORDED | ({"force": True} if d == 193 else {}))  # a day after the last: confirmed
        for d in (199, 197, 194, 193, 189, 150)
    ]  # fmt: skip
    for path, body in posts:
        r = await api_post(c, f"{base}/{path}", body, token)
        assert r.status_code == 201, (path, r.text)


# -- sign-in -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_beyond_localhost_pages_send_to_sign_in_and_the_api_answers_401(site, secure):
    r = await secure.get("/patients")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fpatients"
    for path in ("/api/v1/patients", "/api/v1/due", "/api/v1/session", "/api/v1/patients/X1"):
        r = await secure.get(path)
        assert r.status_code == 401 and r.json()["error"] == "not_signed_in"
    r = await api_post(secure, "/api/v1/patients", PATIENT)
    assert r.status_code == 401
    assert site.count(Patient) == 0
    # The stateless pages stay open to everyone (patients use the check).
    assert (await secure.get("/check")).status_code == 200
    assert (await secure.post("/api/v1/assess", json={"age_years": 40})).status_code == 200


@pytest.mark.asyncio
async def test_sign_in_sets_a_secure_host_only_cookie_and_sign_out_ends_the_session(site, secure):
    r = await sign_in(secure, "Nurse.A")  # usernames are not case-sensitive
    assert r.status_code == 303 and r.headers["location"] == "/patients"
    cookie = next(h for h in r.headers.get_list("set-cookie") if "b12dx_session" in h)
    assert cookie.startswith("__Host-b12dx_session=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower()
    assert "domain" not in cookie.lower() and "max-age" not in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    with site.db.transaction() as s:
        stored = s.scalars(select(LoginSession)).one()
        assert stored.token_hash == users.token_hash(token) != token

    page = await secure.get("/patients")
    assert page.status_code == 200 and "nurse.a" in page.text and "Riverside Surgery" in page.text
    out = await secure.post("/logout", data={"csrf_token": csrf_in(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    assert site.count(LoginSession) == 0
    secure.cookies.set("__Host-b12dx_session", token, domain="b12dx.example")
    assert (await secure.get("/api/v1/session")).status_code == 401

    actions = [(e.actor, e.action) for e in site.audit() if e.entity == "user"]
    assert ("nurse.a", "login") in actions and ("nurse.a", "logout") in actions
    logged = json.dumps([e.detail for e in site.audit()])
    assert PASSWORD not in logged and token not in logged


@pytest.mark.asyncio
async def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(secure):
    page = await secure.get("/login", params={"next": "/clinic"})
    assert 'name="next" value="/clinic"' in page.text
    for target, expected in (("/clinic", "/clinic"), ("//evil.example/x", "/patients")):
        r = await secure.post(
            "/login",
            data={
                "csrf_token": csrf_in(page.text),
                "username": "nurse.a",
                "password": PASSWORD,
                "next": target,
            },
        )
        assert r.headers["location"] == expected


def _failure_text(html: str) -> str:
    html = re.sub(r'value="[^"]*"', "", html)
    return re.search(r'<div class="errors".*?</div>', html, re.S).group(0)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_wrong_passwords_hold_up_that_address_for_that_name_and_never_lock_others_out(
    site, secure
):
    """Five wrong passwords for a username from one address: that address waits 15 minutes
    before trying that username again (429, no password checked), while the user, from
    their own address, signs in at once: knowing a username no longer lets anyone keep
    that account locked. The answers do not tell whether a username exists."""
    unknown = await sign_in(secure, "nobody", "whatever it is")
    assert unknown.status_code == 401
    for _ in range(5):
        wrong = await sign_in(secure, "nurse.a", "not the password")
        assert wrong.status_code == 401
        # The same answer as for a username that does not exist.
        assert _failure_text(wrong.text) == _failure_text(unknown.text)
    held = await sign_in(secure, "nurse.a")
    assert held.status_code == 429, "the right password from the guessing address waits"
    assert (await sign_in(secure, "gp.b")).status_code == 303, "other names are not held up"
    async with client_for(site.app(require_login=True), client=("10.1.1.7", 5000)) as own:
        assert (await sign_in(own, "nurse.a")).status_code == 303, "the user is not locked out"

    site.clock.advance(minutes=14, seconds=59)
    assert (await sign_in(secure, "nurse.a")).status_code == 429
    site.clock.advance(seconds=2)
    assert (await sign_in(secure, "nurse.a")).status_code == 303

    trail = [(e.actor, e.action, e.detail.get("reason")) for e in site.audit()]
    assert ("unknown user", "login_failed", "unknown user") in trail
    assert trail.count(("nurse.a", "login_failed", "wrong password")) == 5
    assert ("nurse.a", "lockout", None) not in trail
    assert "nobody" not in json.dumps([e.detail for e in site.audit()])


@pytest.mark.asyncio
async def test_guessing_spread_over_many_addresses_locks_the_account(site, monkeypatch):
    """NIST SP 800-63B 5.2.2: at most MAX_FAILED_LOGINS (100) wrong passwords in a row on
    one account, from any addresses; then even the right one is refused for 15 minutes."""
    monkeypatch.setattr(users, "MAX_FAILED_LOGINS", 8)
    app = site.app(require_login=True)
    for i in range(8):
        async with client_for(app, client=(f"10.2.0.{i + 1}", 5000)) as c:
            assert (await sign_in(c, "nurse.a", "not the password")).status_code == 401
    async with client_for(app, client=("10.2.1.1", 5000)) as c:
        locked = await sign_in(c, "nurse.a")
        assert locked.status_code == 401, "the right password during a lockout"
    trail = [(e.actor, e.action) for e in site.audit()]
    assert ("nurse.a", "lockout") in trail


@pytest.mark.asyncio
async def test_one_client_is_slowed_down_after_20_sign_in_attempts_a_minute(site, monkeypatch):
    """A client spraying usernames costs an argon2 check each: past 20 attempts in a
    minute it is told to wait (429), and no password is checked until it may try again."""
    from b12dx.web import rate_limit

    app = site.app(require_login=True)
    clock = [1000.0]
    app.state.followup.sign_in_limiter.clock = lambda: clock[0]
    async with client_for(app) as c:
        for i in range(rate_limit.SIGN_IN_ATTEMPTS):
            assert (await sign_in(c, f"user{i}", "wrong password!")).status_code == 401
        failures = site.count(AuditEntry)
        real = users.verify_password
        checked: list[str] = []
        monkeypatch.setattr(users, "verify_password", lambda *a: checked.append("x"))
        slowed = await sign_in(c, "nurse.a")
        assert slowed.status_code == 429
        assert "Too many sign-in attempts" in slowed.text and "Wait 60" in slowed.text
        assert checked == [] and site.count(AuditEntry) == failures, "nothing checked"
        monkeypatch.setattr(users, "verify_password", real)
        clock[0] += 61
        assert (await sign_in(c, "nurse.a")).status_code == 303, "a minute later, it may"


@pytest.mark.asyncio
async def test_a_right_password_resets_the_failure_count(site, monkeypatch):
    """The account's count of failures in a row (from any addresses) starts again at a
    right password: two runs of one under the lockout never lock it."""
    monkeypatch.setattr(users, "MAX_FAILED_LOGINS", 4)
    app = site.app(require_login=True)
    for run in range(2):
        for i in range(users.MAX_FAILED_LOGINS - 1):
            async with client_for(app, client=(f"10.3.{run}.{i + 1}", 5000)) as c:
                assert (await sign_in(c, "nurse.a", "not the password")).status_code == 401
        async with client_for(app, client=(f"10.4.{run}.1", 5000)) as c:
            assert (await sign_in(c, "nurse.a")).status_code == 303


@pytest.mark.asyncio
async def test_a_session_ends_after_30_idle_minutes_and_after_12_hours_in_any_case(site, secure):
    await signed_in(secure)
    site.clock.advance(minutes=29)
    assert (await secure.get("/api/v1/session")).status_code == 200
    site.clock.advance(minutes=29)  # active 29 minutes ago: still signed in
    assert (await secure.get("/api/v1/session")).status_code == 200
    site.clock.advance(minutes=31)
    assert (await secure.get("/api/v1/session")).status_code == 401
    assert site.count(LoginSession) == 0, "an expired session is deleted"

    await signed_in(secure)
    for _ in range(11 * 3 + 2):  # busy all day, a request every 20 minutes
        site.clock.advance(minutes=20)
        assert (await secure.get("/api/v1/session")).status_code == 200
    site.clock.advance(minutes=20)  # 12 h 20 min after signing in
    assert (await secure.get("/api/v1/session")).status_code == 401


@pytest.mark.asyncio
async def test_a_hash_made_with_old_parameters_is_replaced_at_sign_in(site, monkeypatch):
    old = users.HASHER.hash(PASSWORD)
    with site.db.transaction() as s:
        users.user_named(s, "nurse.a").password_hash = old
    stronger = PasswordHasher(time_cost=2, memory_cost=2048)
    monkeypatch.setattr(users, "HASHER", stronger)
    assert users.sign_in(site.db, "nurse.a", PASSWORD, site.clock()) is not None
    with site.db.transaction() as s:
        new = users.user_named(s, "nurse.a").password_hash
    assert new != old and not stronger.check_needs_rehash(new)
    assert stronger.verify(new, PASSWORD)


# -- CSRF and the loopback guard -----------------------------------------------------


@pytest.mark.asyncio
async def test_a_form_or_api_write_without_the_right_csrf_token_is_refused_and_writes_nothing(
    site, secure
):
    token = await signed_in(secure)
    before = (site.count(Patient), len(site.audit()))
    form = {"name": "Bob", "birth_date": "1950-01-01", "sex": "male"}
    for sent in ({}, {"csrf_token": "forged"}):
        r = await secure.post("/patients", data=form | sent)
        assert r.status_code == 403
        assert "nothing was saved" in r.text and r.text.count("<h1") == 1
    r = await api_post(secure, "/api/v1/patients", PATIENT)  # no X-CSRF-Token
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    r = await api_post(secure, "/api/v1/patients", PATIENT, "forged")
    assert r.status_code == 403
    r = await secure.post(
        "/api/v1/patients",
        content=json.dumps(PATIENT),
        headers={"content-type": "text/plain", "x-csrf-token": token},
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert (site.count(Patient), len(site.audit())) == before
    assert (await api_post(secure, "/api/v1/patients", PATIENT, token)).status_code == 201


@pytest.mark.asyncio
async def test_with_login_off_forms_need_the_signed_cookie_token(site, local):
    page = await local.get("/patients")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("b12dx_csrf=") and "secure" not in cookie.lower()
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    token = csrf_in(page.text)
    form = {"name": "Bob", "birth_date": "1950-01-01", "sex": "male"}
    assert (await local.post("/patients", data=form | {"csrf_token": "x"})).status_code == 403
    # A token and cookie pair made up elsewhere (another program on localhost shares the
    # cookie jar) is refused: the cookie must carry the server's signature.
    local.cookies.set("b12dx_csrf", "planted.0000", domain="127.0.0.1")
    assert (await local.post("/patients", data=form | {"csrf_token": "planted"})).status_code == 403
    assert site.count(Patient) == 0
    page = await local.get("/patients")
    token = csrf_in(page.text)
    r = await local.post("/patients", data=form | {"csrf_token": token})
    assert r.status_code == 303
    assert [e.actor for e in site.audit() if e.action == "create" and e.entity == "patient"] == [
        f"local:{__import__('getpass').getuser()}"
    ]


@pytest.mark.asyncio
async def test_with_login_off_json_posts_need_no_token_but_must_be_json(site, local):
    r = await local.post("/api/v1/patients", content=json.dumps(PATIENT))
    assert r.status_code == 415
    r = await local.post(
        "/api/v1/patients", data={"name": "x"}, headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert (await api_post(local, "/api/v1/patients", PATIENT)).status_code == 201
    session = (await local.get("/api/v1/session")).json()
    assert session["login_required"] is False and session["csrf_token"] is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "client", "allowed"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 5000), True),
        ("localhost:8000", ("127.0.0.1", 5000), True),
        ("[::1]:8000", ("::1", 5000), True),
        ("evil.example:8000", ("127.0.0.1", 5000), False),  # DNS rebinding
        ("127.0.0.1:8000", ("192.168.1.20", 5000), False),  # another machine
        ("", ("127.0.0.1", 5000), False),
    ],
)
async def test_with_login_off_only_this_machine_by_a_loopback_name_is_answered(
    site, host, client, allowed
):
    app = site.app(require_login=False)
    async with client_for(app, LOCAL_BASE, client=client) as c:
        r = await c.get("/api/v1/patients", headers={"host": host})
        assert (r.status_code == 200) is allowed, r.text
        if not allowed:
            assert r.status_code == 403 and r.json()["error"] == "not_local"
            page = await c.get("/patients", headers={"host": host})
            assert page.status_code == 403 and "only on this computer" in page.text.lower()
        assert (await c.get("/check", headers={"host": host})).status_code == 200


def test_serve_requires_login_beyond_loopback_and_refuses_to_turn_it_off(tmp_path, monkeypatch):
    for name in ("B12DX_DATABASE_URL", "B12DX_REQUIRE_LOGIN", "B12DX_CSRF_SECRET"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    with pytest.raises(InputError) as err:
        configure_serve("0.0.0.0", url, False)
    assert err.value.errors[0].path == "--no-require-login"
    lines = configure_serve("0.0.0.0", url, None)
    import os

    assert os.environ["B12DX_REQUIRE_LOGIN"] == "1" and os.environ["B12DX_DATABASE_URL"] == url
    assert any("HTTPS" in line for line in lines) and any("no users yet" in line for line in lines)
    secret = os.environ["B12DX_CSRF_SECRET"]
    configure_serve("127.0.0.1", url, None)
    assert os.environ["B12DX_REQUIRE_LOGIN"] == "0"
    assert os.environ["B12DX_CSRF_SECRET"] == secret, "one key for all workers"
    configure_serve("::1", url, True)
    assert os.environ["B12DX_REQUIRE_LOGIN"] == "1"
    # Behind a proxy on this machine (a public URL or trusted proxies given), every
    # request comes from 127.0.0.1 with a local Host: served as beyond loopback.
    configure_serve("127.0.0.1", url, None, behind_proxy=True)
    assert os.environ["B12DX_REQUIRE_LOGIN"] == "1"
    with pytest.raises(InputError) as behind:
        configure_serve("127.0.0.1", url, False, behind_proxy=True)
    assert behind.value.errors[0].path == "--no-require-login"


def test_serve_beyond_loopback_with_login_off_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("B12DX_REQUIRE_LOGIN", raising=False)
    monkeypatch.setenv("B12DX_PUBLIC_URL", "https://b12.example.org")
    with pytest.raises(SystemExit) as done:
        main(
            [
                "serve",
                "--host",
                "0.0.0.0",
                "--no-require-login",
                "--cds-open",
                "--db",
                str(tmp_path / "x.db"),
            ]
        )
    assert done.value.code == 2
    assert "--no-require-login" in capsys.readouterr().err


SERVE_ENV = (
    "B12DX_DATABASE_URL",
    "B12DX_REQUIRE_LOGIN",
    "B12DX_CSRF_SECRET",
    "B12DX_CDS_ISSUERS",
    ENV_CDS_OPEN_WARNED,
)


def _clean_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve hands its settings to the workers in os.environ: put them back afterwards."""
    for name in SERVE_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_serve_on_a_port_in_use_exits_2_before_anything_starts(tmp_path, capsys, monkeypatch):
    """Not uvicorn's error (exit 3) after "Application startup complete": the port is
    tried first, before the database is opened or made."""
    _clean_serve_env(monkeypatch)
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the server was started"))
    db = tmp_path / "serve.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as done:
            main(["serve", "--port", str(port), "--db", str(db)])
    assert done.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"b12dx: error: invalid input: --port: port {port} on 127.0.0.1 is in use "
        "(accepted: a port no other program listens on)\n"
    )
    assert not db.exists()


def test_serve_warns_once_that_anyone_may_call_the_cds_services(
    tmp_path, capsys, monkeypatch, caplog
):
    """serve says it before the workers start; they (two here) do not say it again. Started
    another way (uvicorn --factory, a test), the app still warns."""
    _clean_serve_env(monkeypatch)
    started: list[dict[str, Any]] = []

    def workers(target: str, **options: Any) -> None:
        assert target == "b12dx.web.app:create_app" and options["factory"]
        started.append(options)
        for _ in range(options["workers"]):
            create_app()

    monkeypatch.setattr("uvicorn.run", workers)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    argv = ["serve", "--port", str(port), "--workers", "2", "--db", str(tmp_path / "s.db")]
    with caplog.at_level(logging.WARNING, logger="b12dx.web"):
        try:
            main(argv)
        except SystemExit as exc:
            assert not exc.code
    assert started and started[0]["port"] == port
    err = capsys.readouterr().err
    assert err.lower().count("client authentication is off") == 1, err
    # True to what the server does without --cds-open: only this machine is answered.
    assert "only programs on this machine" in err and "any caller" not in err, err
    assert not [r for r in caplog.records if "authentication is OFF" in r.getMessage()]
    monkeypatch.delenv(ENV_CDS_OPEN_WARNED)
    with caplog.at_level(logging.WARNING, logger="b12dx.web"):
        create_app()
    assert [r for r in caplog.records if "authentication is OFF" in r.getMessage()]


# -- practices, audit ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_user_sees_only_their_own_practices_patients(site):
    async with client_for(site.app(True)) as a, client_for(site.app(True)) as b:
        token_a = await signed_in(a, "nurse.a")
        token_b = await signed_in(b, "gp.b")
        pid = await add_patient(a, token_a)
        await course(a, pid, token_a)
        assert [p["id"] for p in (await a.get("/api/v1/patients")).json()] == [pid]
        assert (await a.get("/api/v1/due", params={"within": 30})).json() != []

        assert (await b.get("/api/v1/patients")).json() == []
        assert (await b.get("/api/v1/due", params={"within": 30})).json() == []
        other = await b.get(f"/api/v1/patients/{pid}")
        unknown = await b.get("/api/v1/patients/ZZZZZZZZ")
        assert other.status_code == unknown.status_code == 404
        assert other.json()["error"] == "not_found"
        before = site.count(LabEntry)
        r = await api_post(
            b,
            f"/api/v1/patients/{pid}/labs",
            {"test": "mma", "value": 0.5, "unit": "umol/L", "date": days_ago(1)},
            token_b,
        )
        assert r.status_code == 404 and site.count(LabEntry) == before
        assert (await b.get(f"/patients/{pid}")).status_code == 404
        assert "Ann Smith" not in (await b.get("/patients")).text
        assert "Ann Smith" not in (await b.get("/clinic", params={"within": 90})).text

    by_practice = {(e.actor, e.practice_id) for e in site.audit() if e.patient_id == pid}
    assert by_practice == {("nurse.a", site.practice_a)}


# -- the JSON API --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_api_route_records_and_reads_back(site, local):
    pid = await add_patient(local)
    created = (await local.get("/api/v1/patients")).json()[0]
    assert created["id"] == pid and created["conditions"] == ["pernicious_anemia"]
    base = f"/api/v1/patients/{pid}"
    lab = await api_post(
        local,
        f"{base}/labs",
        {"test": "total_b12", "value": 150, "unit": "pg/mL", "date": days_ago(3),
         "reference_low": 180, "reference_high": 900},
    )  # fmt: skip
    assert lab.status_code == 201 and lab.json()["value"] == 150
    ifa = await api_post(
        local, f"{base}/labs", {"test": "intrinsic_factor_antibody", "value": "Positive",
                                "date": days_ago(3)}
    )  # fmt: skip
    assert ifa.status_code == 201 and ifa.json()["value"] == "positive"
    dose = await api_post(
        local,
        f"{base}/doses",
        {"date": days_ago(1), "drug": "hydroxocobalamin", "dose": "1000 micrograms",
         "route": "im", "given_by": "Sister Jones", "batch": "KX7731", "site": "left deltoid"},
    )  # fmt: skip
    assert dose.status_code == 201
    assert dose.json()["dose"] == "1 mg" and dose.json()["given_by"] == "Sister Jones"
    rating = await api_post(
        local, f"{base}/symptoms", {"symptom": "paresthesia", "rating": "moderate",
                                    "date": days_ago(3)}
    )  # fmt: skip
    assert rating.status_code == 201
    saved = await local.post(f"{base}/assessments", headers={"content-type": "application/json"})
    assert saved.status_code == 201
    snap = saved.json()
    assert snap["as_of"] == TODAY.isoformat() and snap["planned_doses"]
    assert snap["assessment"]["treatment"]["under_way"] is True

    full = (await local.get(base)).json()
    assert set(full) == {"patient", "labs", "ratings", "doses", "history", "assessment"}
    assert [x["test"] for x in full["labs"]] == ["total_b12", "intrinsic_factor_antibody"]
    assert full["doses"][0]["date"] == days_ago(1)
    assert full["ratings"][0]["symptom"] == "paresthesia"
    assert [h["id"] for h in full["history"]] == [snap["id"]]
    assert full["assessment"]["as_of"] == TODAY.isoformat()
    assert full["assessment"]["deficiency_status"] == snap["assessment"]["deficiency_status"]

    due = await local.get("/api/v1/due", params={"within": 60, "as_of": TODAY.isoformat()})
    assert due.status_code == 200
    assert {"patient_id", "kind", "date", "text", "urgency", "overdue"} <= set(due.json()[0])


BAD_BODIES = [
    ("", b'{"name": "A", "sex": "female"}', "birth_date", "Field required"),
    ("", b'{"name": "A", "birth_date": "2/3/1958", "sex": "female"}', "birth_date", "YYYY-MM-DD"),
    ("", b'{"name": "A", "birth_date": "1958-03-02", "sex": "woman"}', "sex", "female, male"),
    ("", b'{"name": "", "birth_date": "1958-03-02", "sex": "female"}', "name", "1 to 200"),
    ("", b'{"name": "A", "birth_date": "1958-03-02", "sex": "female", "age": 3}', "age", "name"),
    ("", b'{"name": "A", "birth_date": "1958-03-02", "sex": "female", "conditions": ["flu"]}',
     "condition", "pernicious_anemia"),
    ("", b'{"name": "A", "birth_date": "2099-01-01", "sex": "female"}', "birth_date", "future"),
    ("", b'{"name": "A\\u0000", "birth_date": "1958-03-02", "sex": "female"}', "", "NUL"),
    ("", b"{oops", "", "not valid JSON"),
    ("", b"[1, 2]", "", "JSON object"),
    ("/labs", b'{"test": "total_b12", "value": 150, "unit": "mg", "date": "2026-11-01"}',
     "unit", "pmol/L"),
    ("/labs", b'{"test": "b13", "value": 150, "unit": "pg/mL", "date": "2026-11-01"}',
     "test", "total_b12"),
    ("/labs", b'{"test": "total_b12", "value": 150, "unit": "pg/mL", "date": "2027-01-01"}',
     "date", "future"),
    ("/labs", b'{"test": "total_b12", "value": true, "unit": "pg/mL", "date": "2026-11-01"}',
     "value", "number"),
    ("/labs", b'{"test": "total_b12", "value": 1e400, "unit": "pg/mL", "date": "2026-11-01"}',
     "value", ""),
    ("/doses", b'{"date": "2026-11-01", "drug": "hydroxocobalamin", "dose": "lots", "route": "im",'
     b' "batch": "B1", "site": "arm"}',
     "dose", "mg or micrograms"),
    ("/doses", b'{"date": "2026-11-01", "drug": "aspirin", "dose": "1 mg", "route": "ear",'
     b' "batch_not_recorded": true}',
     "drug", "hydroxocobalamin"),
    ("/doses", b'{"date": "2026-11-01", "drug": "hydroxocobalamin", "dose": "1 mg"}',
     "route", "Field required"),
    ("/symptoms", b'{"symptom": "paresthesia", "rating": "awful", "date": "2026-11-01"}',
     "rating", "none, mild, moderate, severe"),
    ("/symptoms", b'{"symptom": "hiccups", "rating": "mild", "date": "2026-11-01"}',
     "symptom", "paresthesia"),
    ("/assessments", b'{"as_of": "2027-01-01"}', "as_of", "future"),
    ("/assessments", b'{"as_of": "1900-01-01"}', "as_of", "birth date"),
    ("/assessments", b'{"as_of": 20260101}', "as_of", "YYYY-MM-DD"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("route", "body", "path", "fragment"), BAD_BODIES)
async def test_bad_input_is_a_422_naming_the_field_and_nothing_is_written(
    site, local, route, body, path, fragment
):
    pid = await add_patient(local)
    before = [e.id for e in site.audit()]
    url = f"/api/v1/patients/{pid}{route}" if route else "/api/v1/patients"
    r = await local.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert path in [e["path"] for e in errors], errors
    assert fragment in json.dumps(errors), errors
    assert [e.id for e in site.audit()] == before


@pytest.mark.asyncio
async def test_a_duplicate_dose_is_refused(site, local):
    pid = await add_patient(local)
    body = {"date": days_ago(1), "drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"}
    body |= NOT_RECORDED
    assert (await api_post(local, f"/api/v1/patients/{pid}/doses", body)).status_code == 201
    again = await api_post(local, f"/api/v1/patients/{pid}/doses", body)
    assert again.status_code == 422 and "already recorded" in again.text
    assert site.count(DoseEntry) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "route"),
    [("get", ""), ("post", "/labs"), ("post", "/doses"), ("post", "/symptoms"),
     ("post", "/assessments")],
)  # fmt: skip
async def test_an_unknown_patient_is_404(local, method, route):
    kwargs = {"json": {}} if method == "post" else {}
    r = await getattr(local, method)(f"/api/v1/patients/NOPE1234{route}", **kwargs)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "path"),
    [({"within": "soon"}, "within"), ({"within": "400"}, "within"),
     ({"as_of": "21/11/2026"}, "as_of"), ({"as_of": "9999-12-31"}, "as_of")],
)  # fmt: skip
async def test_due_list_parameters_are_checked(local, params, path):
    r = await local.get("/api/v1/due", params=params)
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == path


@pytest.mark.asyncio
async def test_the_openapi_spec_documents_the_followup_api(local):
    spec = (await local.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/patients", "post"),
        ("/api/v1/patients", "get"),
        ("/api/v1/patients/{patient_id}", "get"),
        ("/api/v1/patients/{patient_id}/labs", "post"),
        ("/api/v1/patients/{patient_id}/doses", "post"),
        ("/api/v1/patients/{patient_id}/symptoms", "post"),
        ("/api/v1/patients/{patient_id}/assessments", "post"),
        ("/api/v1/due", "get"),
        ("/api/v1/session", "get"),
    ]:
        op = paths[path][method]
        assert {"401", "403", "422"} <= set(op["responses"]), path
        if method == "post":
            assert "415" in op["responses"]
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema["type"] == "object" and schema["properties"]
    dose = paths["/api/v1/patients/{patient_id}/doses"]["post"]["requestBody"]
    assert set(dose["content"]["application/json"]["schema"]["required"]) == {
        "date", "drug", "dose", "route"
    }  # fmt: skip


# -- pages ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_timeline_draws_lab_trends_with_the_profiles_thresholds(site, secure, kb):
    token = await signed_in(secure)
    pid = await add_patient(secure, token)
    await course(secure, pid, token)
    r = await secure.get(f"/patients/{pid}")
    assert r.status_code == 200
    html = r.text
    assert html.count("<h1") == 1 and "<h1>Ann Smith</h1>" in html
    for test in ("total_b12", "hemoglobin", "mcv"):
        assert f'<figure class="chart" data-test="{test}">' in html
    labs = html.split('id="labs"')[1].split("</section>")[0]
    assert 'data-test="mma"' not in labs, "no MMA results, no chart"
    # Total B12 is charted in pmol/L, so the thresholds are the profile's molar cut-offs.
    molar = next(r for r in kb.profile("nice-ng239").bands["total_b12"]
                 if r.when.unit_family == "molar")  # fmt: skip
    b12 = html.split('<figure class="chart" data-test="total_b12"')[1].split("</figure>")[0]
    drawn = [float(v) for v in re.findall(r'class="threshold" data-value="([^"]+)"', b12)]
    assert drawn == [c.below if c.below is not None else c.upto for c in molar.cutoffs]
    assert "below 133: deficient" in b12
    # Haemoglobin: the threshold for an adult woman who is not pregnant (the profile's
    # rule that fits her, as the engine chooses it).
    hb = html.split('<figure class="chart" data-test="hemoglobin"')[1].split("</figure>")[0]
    drawn = [float(v) for v in re.findall(r'class="threshold" data-value="([^"]+)"', hb)]
    woman = PatientRecord(age_years=40, sex="female")
    rule = band_rule(kb.profile("nice-ng239"), "hemoglobin", woman, None)
    assert drawn == [c.below for c in rule.cutoffs] == [120]
    # Each point keeps the value as recorded (and its SI value) on hover and in the table.
    assert "<title>" in b12 and "110 pg/mL = 81.2 pmol/L (deficient)" in b12
    assert "<desc" in b12 and "Thresholds:" in b12
    table = html.split("Total serum vitamin B12 (cobalamin): every result")[1].split("</table>")[0]
    assert table.count("<tr") == 3 and "110 pg/mL" in table and "nurse.a" in table
    # Symptom ratings, doses against the plan, recovery and the audit trail.
    assert 'data-symptom="paresthesia"' in html
    assert "severe (" in html and "→ mild (" in html
    statuses = set(re.findall(r'data-status="([a-z]+)"', html))
    # A loading dose a day off its alternate-day date is within the loading allowance
    # (profiles.yaml loading_grace_days, as the engine judges a course): given, not late.
    assert {"given", "missed", "overdue"} <= statuses
    assert "late" not in statuses
    assert "Maintenance dose overdue" in html
    assert 'class="milestone status-' in html
    audit = html.split('id="audit"')[1]
    assert "nurse.a" in audit and "create dose" in audit and "assess assessment" in audit


@pytest.mark.asyncio
async def test_the_timeline_forms_record_and_show_errors_with_the_answers_kept(site, secure):
    token = await signed_in(secure)
    pid = await add_patient(secure, token)
    page = await secure.get(f"/patients/{pid}")
    csrf = csrf_in(page.text)
    bad = await secure.post(
        f"/patients/{pid}/labs",
        data={"csrf_token": csrf, "test": "mma", "value": "0.9", "unit": "pg/mL",
              "date": days_ago(2)},
    )  # fmt: skip
    assert bad.status_code == 422
    assert 'id="errors"' in bad.text and "unit" in bad.text and 'value="0.9"' in bad.text
    assert site.count(LabEntry) == 0
    forms = {
        "labs": {"test": "mma", "value": "0.9", "unit": "umol/L", "date": days_ago(2)},
        "doses": {"date": days_ago(1), "drug": "hydroxocobalamin", "dose": "1 mg",
                  "route": "im", "given_by": "", "batch": "B1", "site_not_recorded": "yes"},
        "symptoms": {"symptom": "leg_weakness", "rating": "moderate", "date": days_ago(1)},
        "assessments": {},
        "calendar-token": {},
    }  # fmt: skip
    for route, form in forms.items():
        r = await secure.post(f"/patients/{pid}/{route}", data=form | {"csrf_token": csrf})
        assert r.status_code == 303, (route, r.text[:300])
        assert r.headers["location"].startswith(f"/patients/{pid}?saved=")
    shown = await secure.get(r.headers["location"])
    assert "New calendar link made" in shown.text
    assert 'data-test="mma"' in shown.text and "0.9 µmol/L" in shown.text
    assert 'data-symptom="leg_weakness"' in shown.text
    assert "hydroxocobalamin 1 mg IM, by nurse.a" in shown.text


@pytest.mark.asyncio
async def test_an_unusual_dose_is_refused_by_the_api_saying_why_unless_forced(site, local):
    """The knowledge base's check, through the API: a 422 naming the field, the accepted
    amounts or interval, and "force": true; forced, it is recorded and the audit says what
    was confirmed."""
    pid = await add_patient(local)
    doses = f"/api/v1/patients/{pid}/doses"
    first = {"date": days_ago(10), "drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"}
    first |= NOT_RECORDED
    assert (await api_post(local, doses, first)).status_code == 201
    soon = first | {"date": days_ago(9)}
    big = first | {"date": days_ago(5), "dose": "10 mg"}
    for body, path, message, accepted in (
        (
            soon,
            "date",
            f"{days_ago(9)} is 1 day after the previous hydroxocobalamin IM dose "
            f"({days_ago(10)}); no regimen in the knowledge base gives hydroxocobalamin IM "
            "more often than every 2 days",
            "a date 2 days or more from another hydroxocobalamin IM dose; "
            'or "force": true to record it as given',
        ),
        (
            big,
            "dose",
            "10 mg is not a dose of hydroxocobalamin IM in any of the knowledge base's regimens",
            '1 mg (im_neurological, im_standard); or "force": true to record it as given',
        ),
    ):
        before = site.count(DoseEntry)
        r = await api_post(local, doses, body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"path": path, "message": message, "accepted": accepted}]
        assert site.count(DoseEntry) == before
        forced = await api_post(local, doses, body | {"force": True})
        assert forced.status_code == 201, forced.text
    confirmed = [e.detail.get("confirmed") for e in site.audit() if e.entity == "dose"]
    assert confirmed[0] is None and len(confirmed) == 3
    assert "10 mg is not a dose" in confirmed[2][0]
    r = await api_post(local, doses, first | {"date": days_ago(3), "force": "yes"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "force"


@pytest.mark.asyncio
async def test_the_dose_form_shows_why_a_dose_looks_wrong_and_records_it_anyway(site, local):
    pid = await add_patient(local)
    page = await local.get(f"/patients/{pid}")
    csrf = csrf_in(page.text)
    assert 'name="force"' not in page.text
    form = {"csrf_token": csrf, "date": days_ago(2), "drug": "hydroxocobalamin",
            "dose": "10 mg", "route": "im", "given_by": "", "batch": "B1",
            "site": "left deltoid"}  # fmt: skip
    shown = await local.post(f"/patients/{pid}/doses", data=form)
    assert shown.status_code == 422
    text = " ".join(shown.text.split())
    assert "10 mg is not a dose of hydroxocobalamin IM" in text
    assert "1 mg (im_neurological, im_standard); or tick &#39;Record anyway&#39;" in text
    assert 'name="force" value="1"' in text and "Record anyway</label>" in text
    assert 'value="10 mg"' in text  # the answers are kept
    assert site.count(DoseEntry) == 0
    done = await local.post(f"/patients/{pid}/doses", data=form | {"force": "1"})
    assert done.status_code == 303, done.text[:300]
    assert site.count(DoseEntry) == 1


@pytest.mark.asyncio
async def test_patients_page_adds_and_finds_patients_by_name_or_id(site, local):
    page = await local.get("/patients")
    csrf = csrf_in(page.text)
    form = {"name": "Carol Jones", "birth_date": "1970-05-05", "sex": "female",
            "diet": "vegan", "cond_celiac_disease": "yes", "csrf_token": csrf}  # fmt: skip
    r = await local.post("/patients", data=form)
    assert r.status_code == 303
    pid = r.headers["location"].split("/")[2].split("?")[0]
    bad = await local.post("/patients", data=form | {"birth_date": "05/05/1970"})
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text and "Carol Jones" in bad.text
    await add_patient(local)
    for query, expected in (("carol", ["Carol Jones"]), (pid.lower(), ["Carol Jones"]),
                            ("smith", ["Ann Smith"]), ("nobody", [])):  # fmt: skip
        found = await local.post("/patients/search", data={"q": query, "csrf_token": csrf})
        assert found.status_code == 200
        rows = re.findall(r'<th scope="row"><a href="/patients/[^"]+">([^<]+)</a>', found.text)
        assert rows == expected, query


@pytest.mark.asyncio
async def test_the_clinic_lists_an_overdue_maintenance_dose_first(site, local):
    pid = await add_patient(local)
    await course(local, pid)
    later = await add_patient(local, name="Zed Brown")
    r = await local.get("/clinic", params={"as_of": TODAY.isoformat(), "within": "30"})
    assert r.status_code == 200 and r.text.count("<h1") == 1
    overdue = r.text.split('id="overdue-title"')[1].split("</section>")[0]
    assert 'data-kind="maintenance_overdue"' in overdue
    assert f'href="/patients/{pid}"' in overdue and "Maintenance hydroxocobalamin" in overdue
    assert later not in overdue
    bad = await local.get("/clinic", params={"as_of": "tomorrow"})
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text


@pytest.mark.asyncio
async def test_the_calendar_feed_has_the_planned_doses_and_nothing_identifying(site, secure):
    token = await signed_in(secure)
    pid = await add_patient(secure, token)
    await course(secure, pid, token)
    page = (await secure.get(f"/patients/{pid}")).text
    link = re.search(r'id="calendar-url" readonly value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert link.startswith(f"{SECURE_BASE}/calendar/") and link.endswith(".ics")
    schedule = (await secure.get(f"/api/v1/patients/{pid}")).json()["assessment"]["treatment"]

    async with client_for(site.app(True)) as anyone:  # a calendar app: no session
        feed = await anyone.get(link)
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
        text = feed.text
        assert text.count("BEGIN:VEVENT") == len(schedule["schedule"]) + len(
            schedule["review_dates"]
        )
        first = schedule["schedule"][0]["date"].replace("-", "")
        assert f"DTSTART;VALUE=DATE:{first}" in text
        assert f"SUMMARY:B12 injection · patient {pid}" in text
        for private in ("Ann", "Smith", "1958", "pernicious", "paresthesia"):
            assert private not in text
        assert (await anyone.get("/calendar/not-a-token.ics")).status_code == 404

        r = await secure.post(f"/patients/{pid}/calendar-token", data={"csrf_token": csrf_in(page)})
        assert r.status_code == 303
        assert (await anyone.get(link)).status_code == 404, "the old link stops working"
    trail = [(e.actor, e.action, e.entity) for e in site.audit() if e.patient_id == pid]
    assert ("nurse.a", "regenerate", "calendar_token") in trail


# -- the accounts command line -------------------------------------------------------


def run_cli(capsys, monkeypatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return call(capsys, argv)


def test_accounts_command_line(tmp_path, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    assert run_cli(capsys, monkeypatch, "practice", "add", "Riverside", "--db", db)[0] == 0
    code, _, err = run_cli(capsys, monkeypatch, "practice", "add", "riverside", "--db", db)
    assert code == 2 and "already exists" in err
    code, out, _ = run_cli(
        capsys, monkeypatch, "user", "add", "Sam", "--practice", "RIVERSIDE",
        "--password-stdin", "--db", db, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0 and "user sam added to Riverside" in out
    code, _, err = run_cli(
        capsys, monkeypatch, "user", "add", "kim", "--practice", "Riverside",
        "--password-stdin", "--db", db, stdin="short\n",
    )  # fmt: skip
    assert code == 2 and f"at least {users.MIN_PASSWORD_LENGTH}" in err
    code, _, err = run_cli(capsys, monkeypatch, "user", "add", "kim", "--practice", "Nowhere",
                           "--password-stdin", "--db", db, stdin=PASSWORD)  # fmt: skip
    assert code == 2 and "no practice named 'Nowhere'" in err
    code, out, _ = run_cli(capsys, monkeypatch, "practice", "list", "--db", db)
    assert re.search(r"1\W+0\W+0\W+Local practice", out) and re.search(
        r"2\W+1\W+0\W+Riverside", out
    )

    database = open_database(db)
    now = dt.datetime.now(dt.UTC)
    for _ in range(users.MAX_FAILED_LOGINS):
        assert users.sign_in(database, "sam", "wrong password!", now) is None
    code, out, _ = run_cli(capsys, monkeypatch, "user", "list", "--db", db)
    assert "locked until" in out
    code, out, _ = run_cli(capsys, monkeypatch, "user", "unlock", "SAM", "--db", db)
    assert code == 0 and "unlocked" in out
    assert users.sign_in(database, "sam", PASSWORD, now) is not None
    with database.reading() as s:
        trail = [(e.action, e.entity) for e in s.scalars(select(AuditEntry))]
    assert ("unlock", "user") in trail and ("create", "user") in trail
    database.dispose()


def test_a_password_change_or_deactivation_ends_the_users_sessions(tmp_path, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    assert run_cli(capsys, monkeypatch, "practice", "add", "Riverside", "--db", db)[0] == 0
    code, _, _ = run_cli(
        capsys, monkeypatch, "user", "add", "sam", "--practice", "Riverside",
        "--password-stdin", "--db", db, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0
    database = open_database(db)
    now = dt.datetime.now(dt.UTC)
    token = users.sign_in(database, "sam", PASSWORD, now)
    assert token is not None

    new_password = PASSWORD + " new"
    code, _, err = run_cli(capsys, monkeypatch, "user", "password", "sam", "--password-stdin",
                           "--db", db, stdin="short\n")  # fmt: skip
    assert code == 2 and f"at least {users.MIN_PASSWORD_LENGTH}" in err
    with database.transaction() as s:
        assert users.resume_session(s, token, now) is not None, "a refused change ends nothing"
    code, out, _ = run_cli(capsys, monkeypatch, "user", "password", "SAM", "--password-stdin",
                           "--db", db, stdin=new_password + "\n")  # fmt: skip
    assert code == 0 and "signed out everywhere" in out
    with database.transaction() as s:
        assert users.resume_session(s, token, now) is None
    assert users.sign_in(database, "sam", PASSWORD, now) is None
    token = users.sign_in(database, "sam", new_password, now)
    assert token is not None

    code, out, _ = run_cli(capsys, monkeypatch, "user", "deactivate", "sam", "--db", db)
    assert code == 0 and "deactivated" in out
    with database.transaction() as s:
        assert users.resume_session(s, token, now) is None
    assert users.sign_in(database, "sam", new_password, now) is None
    assert "deactivated" in run_cli(capsys, monkeypatch, "user", "list", "--db", db)[1]
    code, _, _ = run_cli(capsys, monkeypatch, "user", "activate", "sam", "--db", db)
    assert code == 0 and users.sign_in(database, "sam", new_password, now) is not None
    with database.reading() as s:
        trail = [e.action for e in s.scalars(select(AuditEntry)) if e.entity == "user"]
    assert trail.count("set_password") == 1 and "deactivate" in trail and "activate" in trail
    assert run_cli(capsys, monkeypatch, "user", "deactivate", "nobody", "--db", db)[0] == 2
    database.dispose()


@pytest.mark.asyncio
async def test_a_new_patient_is_not_enough_recorded_and_the_list_shows_today(site, secure):
    """Nothing recorded is never a green "self care"; the list shows today's assessment,
    which a new result changes before anyone saves one."""
    token = await signed_in(secure)
    r = await api_post(secure, "/api/v1/patients", PATIENT, token)
    pid = r.json()["id"]
    page = (await secure.get(f"/patients/{pid}")).text
    assessment = page.split('id="assessment"')[1].split("</section>")[0]
    assert "NOT ENOUGH RECORDED TO ASSESS" in assessment and "SELF CARE" not in assessment
    assert "Save this assessment" not in assessment
    listed = (await secure.get("/patients")).text
    row = listed.split(f"/patients/{pid}")[1].split("</tr>")[0]
    assert "not enough recorded" in row and "none yet" in row

    lab = {"test": "total_b12", "value": 90, "unit": "pg/mL", "date": days_ago(3)}
    assert (await api_post(secure, f"/api/v1/patients/{pid}/labs", lab, token)).status_code == 201
    listed = (await secure.get("/patients")).text
    row = listed.split(f"/patients/{pid}")[1].split("</tr>")[0]
    today_cell = row.split("<td>")[-2]
    assert "not enough recorded" not in today_cell and "confirmed" in today_cell, today_cell
    assert row.split("<td>")[-1].startswith("none yet"), "nothing was saved"
    page = (await secure.get(f"/patients/{pid}")).text
    assert "NOT ENOUGH RECORDED" not in page


@pytest.mark.asyncio
async def test_the_clinic_lists_follow_up_tests_filters_exports_and_records_from_the_row(
    site, local
):
    """An indeterminate B12 with no MMA or active B12 after it is a follow-up test, due and
    then overdue after 91 days (`b12dx screen`'s rule); the list filters by kind, downloads
    as CSV, and a due injection is recorded from its row."""
    fresh = await add_patient(local, name="Ida Indeterminate", conditions=[])
    lab = {"test": "total_b12", "value": 250, "unit": "pg/mL", "date": days_ago(10)}
    assert (await api_post(local, f"/api/v1/patients/{fresh}/labs", lab)).status_code == 201
    stale = await add_patient(local, name="Olga Old", conditions=[])
    lab = lab | {"date": days_ago(120)}
    assert (await api_post(local, f"/api/v1/patients/{stale}/labs", lab)).status_code == 201
    treated = await add_patient(local)
    await course(local, treated)

    params = {"as_of": TODAY.isoformat(), "within": "30"}
    page = (await local.get("/clinic", params=params)).text
    overdue = page.split('id="overdue-title"')[1].split("</section>")[0]
    upcoming = page.split('id="today-title"')[1].split("</section>")[0]
    assert 'data-kind="test_overdue"' in overdue and "Olga Old" in overdue
    assert 'data-kind="test_due"' in upcoming and "Ida Indeterminate" in upcoming
    assert "Indeterminate Total serum vitamin B12" in upcoming and " or " in upcoming

    only = (await local.get("/clinic", params=params | {"kind": "test_overdue"})).text
    assert "Olga Old" in only and "Ida Indeterminate" not in only and "Ann Smith" not in only

    csv_text = (await local.get("/clinic.csv", params=params)).text
    rows = csv_text.splitlines()
    assert rows[0].startswith("patient_id,patient_name,what,kind,date,overdue")
    assert any(stale in r and "Follow-up test overdue" in r for r in rows)

    # The overdue maintenance injection of the treated patient: "Given today" records it.
    form = re.search(
        rf'<form method="post" action="/patients/{treated}/doses" class="inline-form given-today">'
        r"(.*?)</form>",
        page,
        re.S,
    )
    assert form, "no 'Given today' on the overdue injection's row"
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
    assert fields["date"] == TODAY.isoformat() and fields["drug"] == "hydroxocobalamin"
    fields |= {"batch": "AB1234", "site": "left deltoid"}
    r = await local.post(f"/patients/{treated}/doses", data=fields)
    assert r.status_code == 303 and r.headers["location"].startswith("/clinic?")
    after = (await local.get(r.headers["location"])).text
    assert "Dose recorded for <strong>Ann Smith</strong>" in after
    doses = (await local.get(f"/api/v1/patients/{treated}")).json()["doses"]
    assert TODAY.isoformat() in {d["date"] for d in doses}


@pytest.mark.asyncio
async def test_the_nurse_sees_the_injections_at_a_glance_and_records_today_in_one_click(
    site, local
):
    pid = await add_patient(local)
    await course(local, pid)
    page = (await local.get(f"/patients/{pid}")).text
    card = page.split('id="nurse-title"')[1].split("</section>")[0]
    assert "Overdue since" in card, "the lapsed maintenance is the first thing said"
    assert "Last given" in card and "hydroxocobalamin 1 mg IM" in card
    assert re.search(r"Loading</dt><dd>\d+ of \d+ given", card)
    form = re.search(
        r'<form method="post" action="/patients/[^"]+/doses" class="record-today">(.*?)</form>',
        card,
        re.S,
    )
    assert form
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(1)))
    assert fields["date"] == TODAY.isoformat() and fields["dose"] == "1 mg"
    fields |= {"batch": "AB1234", "site": "left deltoid"}
    r = await local.post(f"/patients/{pid}/doses", data=fields)
    assert r.status_code == 303, r.text[:300]
    doses = (await local.get(f"/api/v1/patients/{pid}")).json()["doses"]
    today = [d for d in doses if d["date"] == TODAY.isoformat()]
    assert today and today[0]["batch"] == "AB1234" and today[0]["site"] == "left deltoid"
    page = (await local.get(f"/patients/{pid}")).text
    card = page.split('id="nurse-title"')[1].split("</section>")[0]
    assert f"{TODAY.isoformat()}: hydroxocobalamin 1 mg IM, left deltoid" in card
    trail = [e.detail for e in site.audit() if e.action == "create" and e.entity == "dose"]
    assert trail[-1]["batch"] == "AB1234"


@pytest.mark.asyncio
async def test_a_wrong_entry_is_marked_entered_in_error_never_deleted(site, local):
    """A dose recorded for the wrong patient: marked with why, audited, kept in its table,
    and left out of the assessment (the course is judged without it)."""
    pid = await add_patient(local)
    lab = {"test": "total_b12", "value": 90, "unit": "pg/mL", "date": days_ago(3)}
    assert (await api_post(local, f"/api/v1/patients/{pid}/labs", lab)).status_code == 201
    before = (await local.get(f"/api/v1/patients/{pid}")).json()
    assert before["assessment"]["deficiency_status"] == "confirmed"
    lab_id = before["labs"][0]["id"]
    page = (await local.get(f"/patients/{pid}")).text
    form = page.split('id="correct"')[1].split("</details>")[0]
    assert f'value="lab:{lab_id}"' in form
    data = {"csrf_token": csrf_in(page), "entry": f"lab:{lab_id}", "reason": "no"}
    short = await local.post(f"/patients/{pid}/entered-in-error", data=data)
    assert short.status_code == 422 and "3 to 200 characters" in short.text
    data["reason"] = "another patient's result"
    r = await local.post(f"/patients/{pid}/entered-in-error", data=data)
    assert r.status_code == 303
    after = (await local.get(f"/api/v1/patients/{pid}")).json()
    assert after["labs"] == [] and after["assessment"]["deficiency_status"] != "confirmed"
    from b12dx.store.tables import LabEntry

    with site.db.reading() as s:
        kept = s.get(LabEntry, lab_id)
        assert kept is not None and kept.void_reason == "another patient's result"
    trail = [(e.action, e.detail) for e in site.audit() if e.action == "entered_in_error"]
    assert trail == [("entered_in_error", {"reason": "another patient's result"})]
    again = await local.post(f"/patients/{pid}/entered-in-error", data=data)
    assert again.status_code == 422, "an entry is marked once"


@pytest.mark.asyncio
async def test_a_review_rates_every_followed_symptom_and_details_are_recorded_on_the_web(
    site, local
):
    pid = await add_patient(local, conditions=[])
    for sid in ("paresthesia", "fatigue"):
        body = {"symptom": sid, "rating": "severe", "date": days_ago(30)}
        assert (await api_post(local, f"/api/v1/patients/{pid}/symptoms", body)).status_code == 201
    page = (await local.get(f"/patients/{pid}")).text
    review = page.split('id="review-form"')[1].split("</form>")[0]
    assert 'name="rate_paresthesia"' in review and 'name="rate_fatigue"' in review
    assert "checked" not in review, "no answer is chosen for the nurse"
    single = page.split('id="rating-form"')[1].split("</form>")[0]
    assert "checked" not in single
    empty = await local.post(
        f"/patients/{pid}/review", data={"csrf_token": csrf_in(page), "date": days_ago(0)}
    )
    assert empty.status_code == 422 and "rate at least one symptom" in empty.text
    done = await local.post(
        f"/patients/{pid}/review",
        data={
            "csrf_token": csrf_in(page),
            "date": days_ago(0),
            "rate_paresthesia": "mild",
            "rate_fatigue": "none",
        },
    )
    assert done.status_code == 303
    ratings = (await local.get(f"/api/v1/patients/{pid}")).json()["ratings"]
    today = {r["symptom"]: r["rating"] for r in ratings if r["date"] == days_ago(0)}
    assert today == {"paresthesia": "mild", "fatigue": "none"}

    details = await local.post(
        f"/patients/{pid}/details",
        data={
            "csrf_token": csrf_in(page),
            "start_medication": "metformin",
            "since": days_ago(800),
            "add_exposure": "nitrous_oxide",
            "pregnant": "yes",
        },
    )
    assert details.status_code == 303, details.text[:300]
    patient = (await local.get(f"/api/v1/patients/{pid}")).json()["patient"]
    assert [m["id"] for m in patient["medications"]] == ["metformin"]
    assert [e["id"] for e in patient["exposures"]] == ["nitrous_oxide"]
    assert patient["pregnant"] is True


# -- the clinician's pages on a server that requires sign-in ----------------------------


@pytest.mark.asyncio
async def test_the_clinicians_pages_need_sign_in_and_a_csrf_token_where_sign_in_is_required(
    secure,
):
    """A CDS card's /clinician?ref= link showed the record (age, medicines, labs) to anyone
    holding it, and the clinician form and its calendar took no sign-in or CSRF token, on
    a server that requires sign-in. Now a browser is sent to sign in and back to the very
    link, and a form posted without the session's token saves and shows nothing."""
    link = await secure.get("/clinician?ref=abc123", follow_redirects=False)
    assert link.status_code == 303
    assert link.headers["location"] == "/login?next=%2Fclinician%3Fref%3Dabc123"
    record = json.dumps(
        {
            "as_of": "2026-11-21",
            "age_years": 60,
            "sex": "female",
            "symptoms": [{"id": "paresthesia", "onset": "gradual", "duration_weeks": 20}],
            "labs": [{"test": "total_b12", "value": 120, "unit": "ng/L", "date": "2026-11-20"}],
        }
    )
    anonymous = await secure.post("/clinician", data={"record_json": record})
    assert anonymous.status_code == 401 and "60" not in anonymous.text
    ics = await secure.post("/clinician/schedule.ics", data={"record_json": record})
    assert ics.status_code == 401

    csrf = await signed_in(secure)
    forged = await secure.post("/clinician", data={"record_json": record})
    assert forged.status_code == 403
    page = await secure.get("/clinician")
    assert page.status_code == 200 and f'name="csrf_token" value="{csrf}"' in page.text
    answered = await secure.post("/clinician", data={"record_json": record, "csrf_token": csrf})
    # The result's calendar form carries the token too.
    assert answered.status_code == 200
    assert f'name="csrf_token" value="{csrf}"' in answered.text and "ics-form" in answered.text
    forged_ics = await secure.post("/clinician/schedule.ics", data={"record_json": record})
    assert forged_ics.status_code == 403
