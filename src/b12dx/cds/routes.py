"""The CDS Hooks 2.0.1 endpoints, mounted in the web app.

GET  /cds-services                  discovery
POST /cds-services/{id}             a hook call -> {"cards": [...]}
POST /cds-services/{id}/feedback    what the clinician did with a card (idempotent)

Client authentication (Bearer JWT, RS384/ES384, allowlisted issuers) is on whenever
issuers are configured (``B12DX_CDS_ISSUERS``: a JSON file, see ``cds/auth.py``);
without them the service answers only this machine by a loopback name, and says so at
start. A hook call is read only as application/json, and the FHIR server it names is
called only when allowlisted (``cds/fhir_servers.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from b12dx.cds.auth import AuthError, ClientAuthenticator, ClientIdentity, load_issuers
from b12dx.cds.cards import actionable, patient_view_cards
from b12dx.cds.feedback import FeedbackError, FeedbackStore, default_path, parse
from b12dx.cds.fetch import PreconditionFailed, gather
from b12dx.cds.fhir_servers import FhirServer, servers_from_env
from b12dx.cds.orders import draft_orders, draft_type_problems, order_cards
from b12dx.cds.replay import SharedReplayCache
from b12dx.cds.replay import default_path as replay_path
from b12dx.cds.services import discovery, prefetch_keys
from b12dx.cds.state import CARD_MEMORY, CdsState
from b12dx.cds.state import default_path as state_path
from b12dx.engine.assess import assess
from b12dx.errors import B12dxError, InputError
from b12dx.fhir.assess import with_fhir_input
from b12dx.fhir.read import Resource
from b12dx.fhir.record import record_from_resources
from b12dx.jsonio import parse_json, parse_large_json
from b12dx.knowledge.loader import load_knowledge
from b12dx.network import is_loopback

log = logging.getLogger("b12dx.cds")

ENV_CDS_OPEN = "B12DX_CDS_OPEN"  # set by `b12dx serve --cds-open`
ENV_CORS_ORIGINS = "B12DX_CDS_CORS_ORIGINS"  # set by `b12dx serve --cds-cors-origins`

# The most resources of one type read for one patient in one hook call (a patient with
# decades of orders has about 2,000; the answer past it is 413).
MAX_RESOURCES_PER_TYPE = 5000


@dataclass
class CdsSettings:
    authenticator: ClientAuthenticator = field(default_factory=lambda: ClientAuthenticator([]))
    feedback: FeedbackStore = field(default_factory=lambda: FeedbackStore(default_path()))
    # Cards issued and records handed to the clinician view, shared by every worker.
    state: CdsState = field(default_factory=lambda: CdsState(state_path()))
    fetch_timeout_seconds: float = 3.0
    # The longest one call's reading and assessing may take (413 past it); a patient at
    # the resource bound takes about 2 s on a 2-core machine.
    work_timeout_seconds: float = 10.0
    # Without issuers, the FHIR servers callers may name (B12DX_CDS_FHIR_SERVERS); with
    # issuers, each issuer's own list applies instead.
    fhir_servers: tuple[FhirServer, ...] = ()
    # `b12dx serve --cds-open`: without issuers, answer callers beyond this machine too.
    open_beyond_loopback: bool = False
    public_url: str | None = None  # the base URL clients call, when behind a proxy
    # Web origins whose pages may call the CDS routes (CORS; "*" for any), e.g. the CDS
    # Hooks sandbox's. None by default: a page on another site cannot call them.
    cors_origins: tuple[str, ...] = ()
    today: Callable[[], dt.date] = dt.date.today  # the adapter reads the clock, not the engine


def settings_from_env() -> CdsSettings:
    issuers_file = os.environ.get("B12DX_CDS_ISSUERS")
    issuers = load_issuers(Path(issuers_file)) if issuers_file else []
    timeout = float(os.environ.get("B12DX_CDS_FETCH_TIMEOUT", "3"))
    work_timeout = float(os.environ.get("B12DX_CDS_WORK_TIMEOUT", "10"))
    return CdsSettings(
        # One replay cache for every worker of the server (cds/replay.py).
        authenticator=ClientAuthenticator(issuers, replay=SharedReplayCache(replay_path())),
        fhir_servers=servers_from_env(os.environ.get("B12DX_CDS_FHIR_SERVERS")),
        open_beyond_loopback=os.environ.get(ENV_CDS_OPEN) == "1",
        fetch_timeout_seconds=timeout,
        work_timeout_seconds=work_timeout,
        public_url=os.environ.get("B12DX_PUBLIC_URL") or None,
        cors_origins=cors_origins(os.environ.get(ENV_CORS_ORIGINS)),
    )


def cors_origins(value: str | None) -> tuple[str, ...]:
    """The origins of ``B12DX_CDS_CORS_ORIGINS`` (comma-separated), each checked."""
    if not value or not value.strip():
        return ()
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path
        ):
            raise InputError.single(
                ENV_CORS_ORIGINS,
                f"{origin!r} is not a web origin",
                "origins such as https://sandbox.cds-hooks.org, comma-separated, or *",
            )
    return origins


_ERR: dict[str, Any] = {"description": "An error: {error, message} naming what is wrong."}


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def build_router(settings: CdsSettings) -> APIRouter:
    router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])
    kb = load_knowledge()
    services = {s.id: s for s in kb.cds.services}
    # At most one call's CPU work per core at once; the others wait their turn (within
    # the same time bound) instead of slowing every call down together.
    working = asyncio.Semaphore(os.cpu_count() or 1)
    # One large body read at a time per worker: parsing holds the interpreter's lock, and
    # several at once left the event loop (and the health check) waiting over a second.
    reading = asyncio.Semaphore(1)

    def base_url(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def authenticate(request: Request, *audiences: str) -> ClientIdentity | JSONResponse | None:
        auth = settings.authenticator
        if not auth.enabled and settings.open_beyond_loopback:
            return None  # served unauthenticated on purpose (b12dx serve --cds-open)
        if not auth.enabled:
            # Without client authentication only this machine may call, by a loopback
            # name: a web page the clinician visits (its script, or DNS rebinding of
            # evil.example to 127.0.0.1) is refused by its Host.
            client = request.client.host if request.client else None  # None: a socket
            name = urlsplit("//" + request.headers.get("host", "")).hostname
            if (client is not None and not is_loopback(client)) or not is_loopback(name):
                return _error(
                    403,
                    "forbidden",
                    "CDS client authentication is off: only this machine may call, "
                    "addressing it by a loopback name",
                )
            return None
        header = request.headers.get("authorization")
        failure: AuthError | None = None
        for audience in audiences:
            try:
                return auth.authenticate(header, audience)
            except AuthError as exc:
                failure = exc
        assert failure is not None
        response = _error(401, "unauthorized", failure.reason)
        response.headers["WWW-Authenticate"] = 'Bearer realm="b12dx CDS Hooks"'
        return response

    @router.get("", summary="CDS Hooks discovery", responses={401: _ERR, 403: _ERR})
    async def list_services(request: Request) -> Any:
        who = authenticate(request, f"{base_url(request)}/cds-services")
        if isinstance(who, JSONResponse):
            return who
        return discovery(kb)

    @router.post(
        "/{service_id}",
        summary="Call a CDS service (a hook)",
        responses={
            400: _ERR,
            401: _ERR,
            403: _ERR,
            404: _ERR,
            412: _ERR,
            413: _ERR,
            415: _ERR,
            503: _ERR,
        },
    )
    async def call_service(service_id: str, request: Request) -> Any:
        service = services.get(service_id)
        if service is None:
            return _error(404, "not_found", f"no CDS service {service_id!r}")
        who = authenticate(request, f"{base_url(request)}/cds-services/{service_id}")
        if isinstance(who, JSONResponse):
            return who
        if not _is_json(request):
            return _not_json()
        raw = await request.body()
        # Every step that grows with the body (parsing, checking, de-duplicating and
        # counting) runs off the event loop and inside the call's time bound, so that a
        # large body delays no one else's answer (the health check included).
        limit = settings.work_timeout_seconds
        started = time.monotonic()

        async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
            left = max(0.0, limit - (time.monotonic() - started))
            async with asyncio.timeout(left), reading:
                return await asyncio.to_thread(fn, *args)

        def too_much(n: int | None = None) -> JSONResponse:
            log.info("%s: over the time bound", service_id)
            size = f"{n} resources" if n is not None else f"{len(raw)} bytes"
            return _error(
                413,
                "too_much_work",
                f"the record took longer than {limit:g} s to read and assess ({size}); "
                "send fewer (a prefetch of what the discovery document asks for is enough)",
            )

        try:
            body = await off_loop(parse_large_json, raw, "the request")
            problems = await off_loop(_check_request, body, service.hook)
        except InputError as exc:
            return _error(400, "bad_request", str(exc.errors[0]))
        except TimeoutError:
            return too_much()
        if problems:
            return _error(400, "bad_request", "; ".join(problems), errors=problems)
        context = body["context"]
        patient_ref = f"Patient/{context['patientId']}"
        try:
            # The FHIR servers this caller may name: its issuer's, or without client
            # authentication the service's own list (cds/fhir_servers.py).
            servers = (
                settings.authenticator.fhir_servers(who.iss)
                if isinstance(who, ClientIdentity)
                else settings.fhir_servers
            )
            got = await gather(
                body,
                prefetch_keys(kb),
                timeout_seconds=settings.fetch_timeout_seconds,
                servers=servers,
            )
        except PreconditionFailed as exc:
            return _error(412, "precondition_failed", exc.message, missing=exc.missing)
        # Counted with the body by web/memory.py, which gives large work's memory back.
        request.state.bytes_read = got.bytes_read
        try:
            resources, over = await off_loop(_tally, got.resources)
        except TimeoutError:
            return too_much(len(got.resources))
        if over:
            # A bound on the work one call may cause: no one patient needs more.
            listed = ", ".join(f"{t}: {n}" for t, n in over)
            return _error(
                413,
                "too_many_resources",
                f"{listed}; at most {MAX_RESOURCES_PER_TYPE} resources of each type are "
                "read for one patient",
            )
        today = settings.today()
        link_base = base_url(request)

        abandoned = threading.Event()

        def answer() -> dict[str, Any]:
            try:
                imported = record_from_resources(resources, today, kb)
            except InputError as exc:
                # No single patient, no birth date, or the patient has died: there is no
                # advice to give, and a card saying so on every chart would be noise.
                log.info("%s: no assessment (%s)", service_id, exc.errors[0].path)
                return {"cards": []}
            if abandoned.is_set():  # past the time bound: nobody waits for the rest
                return {"cards": []}
            handoff: tuple[str, dict[str, Any]] | None = None
            try:
                if service.hook == "patient-view":
                    result = with_fhir_input(assess(imported.record, knowledge=kb), imported)
                    if actionable(result):
                        # The link refers to the record kept here for a clinic day; the
                        # record itself never goes into a URL (cds/state.py).
                        token = settings.state.new_reference()
                        handoff = (token, imported.record)
                    link = f"{link_base}/clinician?ref={token}" if handoff else None
                    cards = patient_view_cards(kb, result, patient_ref, link)
                else:
                    orders = draft_orders(context, selected_only=service.hook == "order-select")
                    cards = order_cards(kb, imported, orders, today, patient_ref)
            except B12dxError as exc:
                log.info("%s: record not assessable (%s)", service_id, type(exc).__name__)
                return {"cards": []}
            settings.state.answered(service_id, [str(c["uuid"]) for c in cards], handoff)
            return {"cards": cards}

        # Reading the record and assessing it is CPU work: off the event loop, so that one
        # large patient does not stop the worker answering anyone else; and bounded in
        # time, so that no call holds a worker thread for longer than the bound.
        try:
            async with asyncio.timeout(limit):
                await working.acquire()
        except TimeoutError:
            busy = _error(503, "busy", "the service is busy with other calls; try again")
            busy.headers["Retry-After"] = "5"
            return busy
        work = asyncio.ensure_future(asyncio.to_thread(answer))
        # The turn is given back when the thread ends, not when its caller stops waiting.
        work.add_done_callback(lambda _: working.release())
        try:
            return await asyncio.wait_for(
                asyncio.shield(work), max(0.0, limit - (time.monotonic() - started))
            )
        except TimeoutError:
            abandoned.set()
            return too_much(len(resources))

    @router.post(
        "/{service_id}/feedback",
        summary="Feedback on a card",
        responses={400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 413: _ERR, 415: _ERR},
    )
    async def feedback(service_id: str, request: Request) -> Any:
        if service_id not in services:
            return _error(404, "not_found", f"no CDS service {service_id!r}")
        base = f"{base_url(request)}/cds-services/{service_id}"
        # The spec does not say which URL the feedback JWT names; accept either.
        who = authenticate(request, f"{base}/feedback", base)
        if isinstance(who, JSONResponse):
            return who
        if not _is_json(request):
            return _not_json()
        try:
            items = parse(parse_json(await request.body(), "the request"))
        except InputError as exc:
            return _error(400, "bad_request", str(exc.errors[0]))
        except FeedbackError as exc:
            return _error(400, "bad_request", str(exc), errors=exc.errors)
        unknown = [
            {
                "path": f"feedback[{i}].card",
                "message": "no card with this uuid was issued by this service in the last "
                f"{int(CARD_MEMORY // 86400)} days",
            }
            for i, item in enumerate(items)
            if not settings.state.issued(service_id, item.card)
        ]
        if unknown:
            message = "; ".join(f"{e['path']}: {e['message']}" for e in unknown)
            return _error(400, "bad_request", message, errors=unknown)
        new, repeated, refused = settings.feedback.record(
            service_id, items, who.iss if isinstance(who, ClientIdentity) else None
        )
        answer: dict[str, Any] = {"recorded": new, "already_recorded": repeated}
        if refused:
            answer["not_recorded"] = refused
            answer["message"] = (
                f"a card keeps at most {settings.feedback.per_card} outcomes; "
                f"{refused} not recorded"
            )
        return answer

    return router


def _is_json(request: Request) -> bool:
    """CDS Hooks calls are JSON: a body of any other type (a form a web page can post
    without asking) is refused."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json"


def _not_json() -> JSONResponse:
    return _error(415, "unsupported_media_type", "the request must be application/json")


def _check_request(body: Any, hook: str) -> list[str]:
    if not isinstance(body, dict):
        return ["the request must be a JSON object"]
    problems = []
    if body.get("hook") != hook:
        problems.append(f"hook: this service answers {hook!r}, not {body.get('hook')!r}")
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        problems.append("hookInstance: is required (a UUID)")
    context = body.get("context")
    if not isinstance(context, dict):
        problems.append("context: is required (an object)")
        return problems
    pid = context.get("patientId")
    # A FHIR id: it goes into the queries sent to the FHIR server, so nothing else may.
    # Dots alone ("..", ".") are a FHIR id by the pattern but a path step in a URL: the
    # read of Patient/.. would fetch the FHIR server's base.
    if (
        not isinstance(pid, str)
        or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", pid)
        or set(pid) <= {"."}
    ):
        problems.append(
            "context.patientId: is required, a FHIR id ([A-Za-z0-9-.], 1-64, not dots alone)"
        )
    if hook in ("order-select", "order-sign"):
        draft = context.get("draftOrders")
        if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
            problems.append("context.draftOrders: is required (a Bundle of draft orders)")
        else:
            problems += draft_type_problems(draft)
    selections = context.get("selections")
    if hook == "order-select" and (
        not isinstance(selections, list) or not all(isinstance(x, str) for x in selections)
    ):
        problems.append("context.selections: is required (a list of references)")
    auth = body.get("fhirAuthorization")
    if auth is not None and not isinstance(body.get("fhirServer"), str):
        problems.append("fhirServer: is required when fhirAuthorization is given")
    return problems


def _tally(resources: list[Resource]) -> tuple[list[Resource], list[tuple[str, int]]]:
    """The resources without repeats, and each type with more than a patient needs."""
    kept = _dedupe(resources)
    counts = Counter(str(r.get("resourceType")) for r in kept)
    return kept, sorted((t, n) for t, n in counts.items() if n > MAX_RESOURCES_PER_TYPE)


def _dedupe(resources: list[Resource]) -> list[Resource]:
    seen: set[tuple[str, str]] = set()
    out = []
    for r in resources:
        rid = r.get("id")
        if isinstance(rid, str):
            key = (str(r.get("resourceType")), rid)
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out
