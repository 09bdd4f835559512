"""What one hostile client can do to `b12dx serve`, on a real server started here: a
request line or header that never ends, a thousand half-sent requests, a body sent a byte
at a time, requests abandoned mid-body, idle connections. Each is answered quickly
(414, 431, 408, 503) or closed, in one short log line, and /api/v1/health answers within
1 s throughout (web/server.py, docs/security.md "Connections")."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from b12dx.web import memory
from hostile import HealthPoller, large_cds_call
from processes import Served, raise_open_files, start_serve

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serve_limits")]

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0


def _start(tmp: Path, *extra: str) -> Served:
    return start_serve(
        tmp, "--head-timeout", str(HEAD_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT), *extra
    )


def _concurrently(server: Served, request: bytes, calls: int) -> list[bytes]:
    """``request`` sent by ``calls`` clients at once; the start of each answer."""
    answers: list[bytes] = []

    def call() -> None:
        with server.connect() as c:
            c.settimeout(90)
            c.sendall(request)
            answers.append(_answer(c))

    threads = [threading.Thread(target=call) for _ in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    raise_open_files()  # the test process itself opens a thousand sockets
    s = _start(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


@pytest.fixture
def health(server: Served) -> Iterator[HealthPoller]:
    h = HealthPoller(server.port)
    thread = threading.Thread(target=h.run, daemon=True)
    thread.start()
    yield h
    h.stop.set()
    thread.join(timeout=10)
    assert h.times, "health was never asked"
    print(f"health: {len(h.times)} answers, slowest {max(h.times):.3f} s")
    assert max(h.times) < 1.0, f"health answered in up to {max(h.times):.2f} s"


def _answer(s: socket.socket) -> bytes:
    try:
        return s.recv(200)
    except OSError:
        return b""


def _send_until_stopped(s: socket.socket, head: bytes, chunk: bytes, most: int) -> float:
    """Send ``head`` then ``chunk`` repeatedly, up to ``most`` bytes, until the server
    stops reading; the seconds it took."""
    start = time.monotonic()
    try:
        s.sendall(head)
        sent = len(head)
        while sent < most:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return time.monotonic() - start


def test_a_request_line_that_never_ends_is_a_quick_414(
    server: Served, health: HealthPoller
) -> None:
    with server.connect() as s:
        took = _send_until_stopped(s, b"GET /", b"a" * 65536, 160 * 1024 * 1024)
        assert _answer(s).startswith(b"HTTP/1.1 414")
    assert took < 5


def test_a_header_that_never_ends_is_a_quick_431(server: Served, health: HealthPoller) -> None:
    with server.connect() as s:
        head = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Fill: "
        took = _send_until_stopped(s, head, b"b" * 65536, 128 * 1024 * 1024)
        assert _answer(s).startswith(b"HTTP/1.1 431")
    assert took < 5


def test_a_thousand_half_sent_requests_are_closed_and_health_answers(
    server: Served, health: HealthPoller
) -> None:
    socks = []
    for _ in range(1100):
        s = server.connect()
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        socks.append(s)
    deadline = time.monotonic() + HEAD_TIMEOUT + 10
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        answer = _answer(s)
        assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
        s.close()
    assert time.monotonic() < deadline


def test_a_body_sent_too_slowly_is_408_and_an_idle_connection_is_closed(
    server: Served, health: HealthPoller
) -> None:
    with server.connect() as s:
        start = time.monotonic()
        s.sendall(
            b"POST /api/v1/assess HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"age'
        )
        assert _answer(s).startswith(b"HTTP/1.1 408")
        assert BODY_TIMEOUT - 0.5 < time.monotonic() - start < BODY_TIMEOUT + 3
    with server.connect() as s:
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(s).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        s.settimeout(15)
        while _answer(s):  # the rest of the answer, then the server's close
            pass
        assert time.monotonic() - start < 8  # keep-alive is 5 s


def test_requests_abandoned_mid_body_are_one_short_line_each(
    server: Served, health: HealthPoller
) -> None:
    before = server.log.read_text(errors="replace")
    for _ in range(30):
        with server.connect() as s:
            s.sendall(
                b"POST /api/v1/assess HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 5000\r\n\r\n{"age_years": 4'
            )
            time.sleep(0.02)
    time.sleep(1)
    added = server.log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in added and "ERROR" not in added
    lines = [line for line in added.splitlines() if line.strip()]
    assert len(lines) <= 30 and all(len(line) < 200 for line in lines)


def test_too_many_connections_or_requests_are_503(tmp_path: Path) -> None:
    s = _start(tmp_path, "--max-connections", "20", "--max-requests", "5")
    try:
        held = [s.connect() for _ in range(20)]
        for c in held:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half-sent: held open
        time.sleep(0.3)
        with s.connect() as extra:
            assert _answer(extra).startswith(b"HTTP/1.1 503")
        for c in held:
            c.close()
        time.sleep(0.3)
        with s.connect() as again:
            again.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answer(again).startswith(b"HTTP/1.1 200")
    finally:
        s.stop()


def test_large_cds_calls_are_read_off_the_event_loop(server: Served, health: HealthPoller) -> None:
    """Three concurrent CDS calls of about 6 MB each, 125,000 resources of made-up types
    (each type under the per-type bound): parsing, de-duplicating and counting them runs
    off the event loop, so health answers within 1 s while they are read."""
    request = large_cds_call(125_000)
    assert len(request) > 5_000_000
    answers = _concurrently(server, request, 3)
    assert len(answers) == 3
    assert all(a.startswith((b"HTTP/1.1 200", b"HTTP/1.1 413")) for a in answers), answers


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_is_given_back_after_large_calls(tmp_path: Path) -> None:
    """Two rounds of three concurrent 13 MB CDS calls: a worker used to keep about
    230 MB more than before them once they were done (freed memory held by the C
    allocator across one heap per thread); with the heaps limited and a trim after each
    large call, it keeps about 110 MB (web/memory.py; docs/performance.md "Memory after
    large calls")."""
    s = _start(tmp_path)
    try:
        request = large_cds_call(250_000)
        before = _rss_mb(s.proc.pid)
        answers = [*_concurrently(s, request, 3), *_concurrently(s, request, 3)]
        # Read and parsed whole either way (413: past the work bound on a busy machine).
        assert len(answers) == 6
        assert all(a.startswith((b"HTTP/1.1 200", b"HTTP/1.1 413")) for a in answers), answers
        # A call answered 413 is still being read in its thread on a busy machine (one
        # measured at once kept +293 MB): its memory comes back when that work ends, so
        # watch for it, a minute at most.
        deadline = time.monotonic() + 60
        kept = _rss_mb(s.proc.pid) - before
        while kept >= 170 and time.monotonic() < deadline:
            time.sleep(0.5)
            kept = min(kept, _rss_mb(s.proc.pid) - before)
        print(f"memory: {before:.0f} MB before, {kept:+.0f} MB after six 13 MB calls")
        # Measured this way: +228 and +235 MB without the change; with it +104 and
        # +113 MB, and +132 MB while Spark tests ran beside it.
        assert kept < 170, f"the worker kept {kept:.0f} MB after the calls"
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("body", "fetched", "trims"),
    [(b"x" * 5_000_000, 0, 1), (b"{}", 5_000_000, 1), (b"{}", 3_000_000, 0), (b"x" * 1000, 0, 0)],
)
def test_a_trim_follows_each_large_request_only(
    monkeypatch: pytest.MonkeyPatch, body: bytes, fetched: int, trims: int
) -> None:
    """A large body, or large answers read from elsewhere (a CDS call's FHIR server, told
    by ``request.state.bytes_read``), is followed by one trim; a small request by none."""
    calls: list[int] = []
    monkeypatch.setattr(memory, "TRIM", lambda: calls.append(1))

    async def endpoint(request: Request) -> PlainTextResponse:
        await request.body()
        request.state.bytes_read = fetched
        return PlainTextResponse("ok")

    app = memory.TrimAfterLargeRequests(Starlette(routes=[Route("/", endpoint, methods=["POST"])]))

    async def post() -> int:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            return (await c.post("/", content=body)).status_code

    assert asyncio.run(post()) == 200
    assert len(calls) == trims
