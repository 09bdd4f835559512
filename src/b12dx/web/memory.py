"""Giving memory back to the system after a large request.

Parsing a large CDS Hooks body or a FHIR server's large answers leaves the freed memory
with the C allocator, which keeps it: three rounds of three 13 MB calls took a worker
from 130 to about 250 MB, and it stayed, though Python itself held 3 MB more
(docs/performance.md "Memory after large calls"). Two measures, together (each alone
gave back little):

- ``limit_arenas``: glibc gives each thread its own heap (up to 8 per core), and the
  threads that parse large bodies each leave theirs fragmented; `serve` keeps them to
  ``ARENAS``.
- ``TrimAfterLargeRequests``: after a request that read
a large body, or read large answers from elsewhere (a CDS call's FHIR server: it sets
``request.state.bytes_read``), glibc's ``malloc_trim`` returns the free pages, in a
thread and one trim at a time. On a C library without it (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# A request that read this many bytes is followed by a trim: above the largest real
# patient's prefetch measured (2.2 MB, docs/performance.md), so an ordinary chart pays
# nothing, while the multi-megabyte calls that leave memory behind are trimmed.
LARGE_BYTES = 4 * 1024 * 1024


def _find_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)  # 0: keep no padding at the heap's top

    return run


TRIM = _find_trim()
_trimming = threading.Lock()

M_ARENA_MAX = -8  # glibc's mallopt parameter number for the arena limit
ARENAS = 2  # measured: 1 gave 40 MB back, 2 54 MB, glibc's default about 120 MB


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc heaps in this process (glibc only; False elsewhere).
    For a server process: set before its threads start allocating."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError, TypeError):
        return False


def trim_memory() -> bool:
    """Return the allocator's free pages to the system; False when another trim is under
    way or the C library has no ``malloc_trim``."""
    if TRIM is None or not _trimming.acquire(blocking=False):
        return False
    try:
        TRIM()
        return True
    finally:
        _trimming.release()


class TrimAfterLargeRequests:
    """Trim after each request that read ``LARGE_BYTES``, of body or from elsewhere,
    once its answer is sent and its objects are freed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or TRIM is None:
            await self.app(scope, receive, send)
            return
        read = 0

        async def counting() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counting, send)
        finally:
            state = scope.get("state") or {}
            if read + int(state.get("bytes_read", 0)) >= LARGE_BYTES:
                await asyncio.to_thread(trim_memory)
