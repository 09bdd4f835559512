"""CORS for the CDS Hooks routes only.

CDS Hooks 2.0.1 asks services to support CORS, since browser-based CDS clients (the
CDS Hooks sandbox among them) call them from a page of their own origin. The rest of
the app (the patient check, the clinician view, the follow-up pages and their JSON API)
stays same-origin: its forms and cookies must not be reachable from another site.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CDS_PREFIX = "/cds-services"


class CdsCorsMiddleware:
    """Starlette's CORS middleware, applied to the paths under ``/cds-services``."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            # A CDS client sends its JWT in Authorization and its body as JSON; no
            # cookies, so no credentials mode.
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
