"""The HTTP connection limits of ``b12dx serve`` (docs/security.md, "Connections").

uvicorn parses HTTP with httptools and, unbounded, keeps a connection that never finishes
its request line or headers, and grows the request line it is sent byte by byte: one
client could hold a worker or every file descriptor. ``GuardedProtocol`` is uvicorn's own
httptools protocol with the limits a server facing such clients needs, answered quickly
and in one short log line:

- the request line and headers (the head) within ``MAX_HEAD_BYTES`` (431), the request
  target within ``MAX_TARGET_BYTES`` (414);
- the head sent within ``head_timeout`` of the connection or of the request's first byte,
  the body within ``body_timeout`` of the head (408);
- at most ``max_connections`` open connections per worker (503 to the next, closed), and
  at most ``max_requests`` requests being answered at once per worker (503);
- an idle keep-alive connection closed after uvicorn's ``timeout_keep_alive``.

The limits are read from the environment that ``b12dx serve`` sets for its workers
(``ENV_NAMES``), so every worker process applies the same ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from b12dx.web.memory import limit_arenas

logger = logging.getLogger("uvicorn.error")  # the server log uvicorn prints

# The event loop shares the interpreter lock with the threads that read and assess large
# records: handed over every 1 ms instead of 5, a health check waits for it a fifth as
# long (measured: the slowest of 27 health checks during three 12 MB CDS calls).
SWITCH_INTERVAL_S = 0.001

MAX_HEAD_BYTES = 16 * 1024  # request line and headers, as h11's and nginx's defaults
MAX_TARGET_BYTES = 8 * 1024  # the request target (path and query)
# The variables `b12dx serve` sets for its workers, one per limit.
ENV_NAMES = {
    "head_timeout": "B12DX_SERVE_HEAD_TIMEOUT",
    "body_timeout": "B12DX_SERVE_BODY_TIMEOUT",
    "max_connections": "B12DX_SERVE_MAX_CONNECTIONS",
    "max_requests": "B12DX_SERVE_MAX_REQUESTS",
}


@dataclass(frozen=True)
class Limits:
    head_timeout: float = 10.0  # seconds to send the request line and headers
    body_timeout: float = 60.0  # seconds to send the whole body after the head
    max_connections: int = 2000  # open connections per worker
    max_requests: int = 200  # requests being answered at once per worker

    def to_env(self) -> dict[str, str]:
        return {ENV_NAMES[k]: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_env(cls) -> Limits:
        out: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            raw = os.environ.get(ENV_NAMES[name])
            if raw is not None:
                out[name] = type(default)(raw)
        return cls(**out)


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (never past the
    hard limit), so that the connection limit, not the system's 1,024, is what a flood
    meets. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the head, the time to send it and the
    body, and on connections and requests per worker."""

    limits: Limits | None = None  # read once per worker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedProtocol.limits is None:
            GuardedProtocol.limits = Limits.from_env()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            limit_arenas()  # web/memory.py: large calls' memory is given back
        self._limits = GuardedProtocol.limits
        self._head_bytes = 0
        self._in_head = True
        self._timer: asyncio.TimerHandle | None = None

    # -- the clock -----------------------------------------------------------------------

    def _arm(self, seconds: float, status: int, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, status, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, status: int, what: str) -> None:
        self._timer = None
        self._refuse(status, what)

    def _refuse(self, status: int, what: str) -> None:
        """Answer ``status`` (when no response has begun) and close the connection."""
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        started = cycle is not None and getattr(cycle, "response_started", False)
        logger.info("%s: %d, connection closed", what, status)
        if not started:
            body = f"{what}\n".encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, _REASONS[status], len(body), body)
            )
        if cycle is not None:
            cycle.disconnected = True
        self.transport.close()

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(503, "too many open connections")
            return
        self._arm(self._limits.head_timeout, 408, "request head not sent in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._timer is None:
            # The first byte of a request on a kept-alive connection starts its clock.
            self._arm(self._limits.head_timeout, 408, "request head not sent in time")
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if len(getattr(self, "url", b"")) > MAX_TARGET_BYTES and self._in_head:
            self._refuse(414, f"request target longer than {MAX_TARGET_BYTES} bytes")
        elif self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request head longer than {MAX_HEAD_BYTES} bytes")

    # -- the parser's callbacks ----------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        if len(self.url) > MAX_TARGET_BYTES:
            self._refuse(414, f"request target longer than {MAX_TARGET_BYTES} bytes")
            return
        if len(self.tasks) >= self._limits.max_requests:
            self._refuse(503, "too many requests being answered")
            return
        self._arm(self._limits.body_timeout, 408, "request body not sent in time")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()
