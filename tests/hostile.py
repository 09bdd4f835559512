"""What hostile clients send to `b12dx serve`, and the health check polled beside them:
shared by tests/test_serve_limits.py (at a size the suite can afford) and
benchmarks/bench_serve_attacks.py (at full size)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@dataclass
class HealthPoller:
    """Polls /api/v1/health every 0.1 s on fresh connections, recording each answer's
    time (a failure counts as infinitely slow). ``run`` in a thread; set ``stop``.
    ``tls``: through TLS (a proxy in front), its certificate not checked; ``source``: the
    loopback address it connects from (another client than the attacker's 127.0.0.1)."""

    port: int
    tls: bool = False
    source: str = "127.0.0.1"
    times: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                with connect(self.port, self.tls, self.source) as s:
                    s.sendall(HEALTH)
                    ok = s.recv(64).startswith(b"HTTP/1.1 200")
                self.times.append(time.monotonic() - start if ok else float("inf"))
            except OSError:
                self.times.append(float("inf"))
            time.sleep(0.1)


def connect(port: int, tls: bool = False, source: str = "127.0.0.1") -> socket.socket:
    """A connection to a loopback port from ``source``; ``tls``: through TLS, the
    certificate unchecked (the test's own, self-signed)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if not tls:
        return raw
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(raw, server_hostname="localhost")


def large_cds_call(resources: int) -> bytes:
    """A whole patient-view request whose prefetch holds ``resources`` resources of 1,000
    made-up types (each under the per-type bound): all work, no patient to assess."""
    filler = [{"resourceType": f"Made{i % 1000}", "id": str(i)} for i in range(resources)]
    body = json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "large",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"},
                "conditions": {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [{"resource": r} for r in filler],
                },
                "labs": None,
                "medicationRequests": None,
                "procedures": None,
            },
        }
    ).encode()
    head = (
        b"POST /cds-services/b12dx-patient-view HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head + body
