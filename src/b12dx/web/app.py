"""The web app: patient check, clinician view, follow-up and JSON API in one FastAPI
application.

The patient check, clinician view and assessment API keep no patient data. The follow-up
pages (``followup.py``) keep theirs in the database, behind sign-in beyond loopback. The
access log holds method, path and status only (patient data travels in request bodies,
never in URLs; calendar tokens are masked).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from b12dx.cds.routes import CdsSettings, build_router, settings_from_env
from b12dx.errors import InputError, LookupError_, ProfileError
from b12dx.knowledge.loader import load_knowledge
from b12dx.schema import input_schema
from b12dx.version import ENGINE_VERSION
from b12dx.web import api, followup, pages
from b12dx.web.cors import CdsCorsMiddleware
from b12dx.web.memory import TrimAfterLargeRequests
from b12dx.web.security import BodySizeLimit, SecurityHeaders
from b12dx.web.settings import ENV_CDS_OPEN_WARNED, FollowupSettings

HERE = Path(__file__).parent
log = logging.getLogger("b12dx.web")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/openapi")) and "text/html" in (
        request.headers.get("accept", "")
    )


def _validation_payload(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append({"path": ".".join(loc), "message": err.get("msg", ""), "accepted": None})
    return {
        "error": "invalid_request",
        "message": "; ".join(
            f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in errors
        ),
        "errors": errors,
    }


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # What exists once the server has started (the knowledge base, the app, the models'
    # validators: ~70 000 objects) lives as long as the process. Freezing it keeps it out
    # of the garbage collector's full collections, which otherwise take ~30 ms each, stall
    # every request in flight on the worker, and set the API's tail latency under load.
    gc.collect()
    gc.freeze()
    yield


def create_app(
    cds_settings: CdsSettings | None = None, followup_settings: FollowupSettings | None = None
) -> FastAPI:
    load_knowledge()  # fail at start, not on the first request, if the data is broken
    app = FastAPI(
        title="b12dx",
        version=ENGINE_VERSION,
        description="Decision support for vitamin B12 deficiency with neurological or "
        "muscular involvement. Supports and does not replace a clinician's judgement.",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Any:
        if _wants_html(request):
            return pages.error_page(request, exc, 422)
        return JSONResponse(exc.as_dict(), status_code=422)

    @app.exception_handler(ProfileError)
    async def profile_error(request: Request, exc: ProfileError) -> Any:
        body = {
            "error": "unknown_profile",
            "message": str(exc),
            "errors": [
                {
                    "path": "profile",
                    "message": str(exc),
                    "accepted": ", ".join(load_knowledge().profiles),
                }
            ],
        }
        return JSONResponse(body, status_code=400)

    @app.exception_handler(LookupError_)
    async def lookup_error(request: Request, exc: LookupError_) -> Any:
        return JSONResponse({"error": "not_found", "message": str(exc)}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Any:
        return JSONResponse(_validation_payload(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if _wants_html(request) and exc.status_code in (404, 405):
            # A person's browser gets a page (with its language and title), not JSON.
            return pages.missing_page(request, exc.status_code)
        return JSONResponse(
            {"error": "http_error", "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.include_router(api.router)
    settings = cds_settings if cds_settings is not None else settings_from_env()
    if not settings.authenticator.enabled and not os.environ.get(ENV_CDS_OPEN_WARNED):
        # Started some other way than `b12dx serve`, which has said it once already.
        log.warning(
            "CDS Hooks client authentication is OFF: no trusted issuers configured "
            "(set B12DX_CDS_ISSUERS to a JSON file of issuers and their JWKS)."
        )
    app.state.cds_state = settings.state  # the clinician view reads a card's record
    app.include_router(build_router(settings))
    if settings.cors_origins:
        app.add_middleware(CdsCorsMiddleware, origins=settings.cors_origins)
    followup.install(app, followup_settings)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=[r for r in app.routes if getattr(r, "include_in_schema", True)],
        )
        record = input_schema(ref_template="#/components/schemas/{model}")
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(record.pop("$defs", {}))
        record.pop("$id", None)
        schemas["PatientRecord"] = record
        # Name the accepted profiles and topics, as the record's schema names its ids (the
        # routes take plain strings so that an unknown one gets b12dx's own 400/404).
        kb = load_knowledge()
        accepted = {"profile": list(kb.profiles), "topic": list(kb.topics())}
        for item in spec.get("paths", {}).values():
            for operation in item.values():
                for param in operation.get("parameters", []):
                    if param["name"] in accepted:
                        param["schema"] = {"type": "string", "enum": accepted[param["name"]]}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit)
    app.add_middleware(SecurityHeaders)
    # Outermost: the trim follows the answer, once every object of the request is freed.
    app.add_middleware(TrimAfterLargeRequests)
    return app
