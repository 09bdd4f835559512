"""What hostile clients do to `b12dx serve`, at full size, with the health check polled
throughout: four concurrent 26 MB CDS calls of 550,000 resources of made-up types, 1,100
half-sent requests, a 160 MB request line, and thousands of ordinary assessments beside
them. Prints the requests sent, the 5xx answers and the health check's slowest answer
and its stalls over 1 s (docs/security.md, docs/performance.md).

    .venv/bin/python benchmarks/bench_serve_attacks.py [--assessments 5000]
        [--resources 550000] [--cds-calls 4] [--half-sent 1100] [--line-mb 160] [--workers 1]

A benchmark, not a test: the suite runs the same attacks at a smaller size
(tests/test_serve_limits.py).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile import HealthPoller, large_cds_call  # noqa: E402
from processes import raise_open_files, start_serve  # noqa: E402

EXAMPLE = ROOT / "src" / "b12dx" / "examples" / "metformin_neuropathy.json"


def status_of(answer: bytes) -> int:
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assessments", type=int, default=5000)
    parser.add_argument("--resources", type=int, default=550_000)
    parser.add_argument("--cds-calls", type=int, default=4)
    parser.add_argument("--half-sent", type=int, default=1100)
    parser.add_argument("--line-mb", type=int, default=160)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    raise_open_files()
    tmp = Path(tempfile.mkdtemp(prefix="b12dx-attacks-"))
    served = start_serve(tmp, "--workers", str(args.workers))
    port = served.port
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def note(code: int) -> None:
        with lock:
            statuses[code] = statuses.get(code, 0) + 1

    try:
        health = HealthPoller(port)
        poller = threading.Thread(target=health.run, daemon=True)
        poller.start()
        started = time.monotonic()

        request = large_cds_call(args.resources)

        def cds_call() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                s.sendall(request)
                note(status_of(s.recv(64)))

        record = EXAMPLE.read_bytes()

        def assessments(n: int) -> None:
            for _ in range(n):
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/assess",
                    data=record,
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=30) as answer:
                        note(answer.status)
                except urllib.error.HTTPError as exc:
                    note(exc.code)
                except OSError:
                    note(0)

        def half_sent() -> None:
            socks = []
            for _ in range(args.half_sent):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            for s in socks:
                note(status_of(s.recv(64)))
                s.close()

        def long_line() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                try:
                    s.sendall(b"GET /")
                    for _ in range(args.line_mb * 16):
                        s.sendall(b"a" * 65536)
                except OSError:
                    pass
                note(status_of(s.recv(64)))

        workers = [threading.Thread(target=cds_call) for _ in range(args.cds_calls)]
        workers += [threading.Thread(target=half_sent), threading.Thread(target=long_line)]
        per = max(1, args.assessments // 10)
        workers += [threading.Thread(target=assessments, args=(per,)) for _ in range(10)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        took = time.monotonic() - started
        health.stop.set()
        poller.join(timeout=10)
        sent = sum(statuses.values())
        server_errors = sum(n for code, n in statuses.items() if code >= 500 and code != 503)
        stalls = sum(1 for t in health.times if t > 1.0)
        print(
            f"{sent} requests in {took:.0f} s; answers by status: {dict(sorted(statuses.items()))}"
        )
        print(f"5xx other than 503 (a limit's answer): {server_errors}")
        print(
            f"health: {len(health.times)} checks, slowest {max(health.times):.2f} s, "
            f"median {sorted(health.times)[len(health.times) // 2]:.3f} s, "
            f"stalls over 1 s: {stalls}"
        )
    finally:
        served.stop()


if __name__ == "__main__":
    main()
