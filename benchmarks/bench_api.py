"""API throughput and latency: `POST /api/v1/assess` on the real server under load.

    .venv/bin/python benchmarks/bench_api.py [--duration 30] [--connections 50]
                                             [--workers 2] [--runs 3]

Starts `b12dx serve --workers N` on a free loopback port, waits for /api/v1/health, then
drives POST /api/v1/assess with the vignette bodies (tests/vignettes/*.json, the "patient"
key, with ?profile= when the vignette names one), cycled round-robin, from a fixed number of
concurrent connections for a fixed time; prints requests/s, errors and p50/p95/p99
latency for each run and the median over runs, then stops the server.

The load comes from `wrk` (a Lua script cycles the bodies; it needs little CPU, which
matters when the server has only two cores) or, without wrk, from an asyncio + httpx
client in this process (which costs the server CPU and so reads low). A benchmark, not a
test: the load is closed-loop, so by Little's law the mean latency is about
connections / throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vignettes import assessable  # benchmarks/vignettes.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
B12DX = Path(sys.executable).parent / "b12dx"
HOST = "127.0.0.1"
WRK_MARKER = "BENCH_JSON "

# wrk (Debian's wrk 4, LuaJIT). `requests` is filled in by the benchmark; each wrk thread
# has its own Lua state, so each cycles through the bodies on its own.
LUA_TEMPLATE = """
local requests = {
%s
}
local i = 0

request = function()
  i = i %% #requests + 1
  return requests[i]
end

init = function(args)
  for k, r in ipairs(requests) do
    requests[k] = wrk.format("POST", r[1], {["Content-Type"] = "application/json"}, r[2])
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, '
    .. '"status": %%d, "timeout": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, '
    .. '"max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes


@dataclass(frozen=True)
class RunResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def load_requests() -> list[Request]:
    requests = []
    for case in assessable():
        query = f"?profile={case['profile']}" if case.get("profile") else ""
        body = json.dumps(case["patient"], separators=(",", ":")).encode()
        requests.append(Request(f"/api/v1/assess{query}", body))
    return requests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_health(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /api/v1/health within {timeout:.0f} s")


@contextmanager
def server(workers: int) -> Iterator[str]:
    port = free_port()
    base = f"http://{HOST}:{port}"
    cmd = [str(B12DX), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_health(base, proc)
            yield base
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (uvicorn's supervisor stops its workers); SIGKILL its group if stuck."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the server's own session: it and its workers
        proc.wait(timeout=5)


def check_bodies(base: str, requests: list[Request]) -> None:
    """Each body once, so that a broken body is reported by name rather than as an error count."""
    for req in requests:
        r = urllib.request.Request(
            base + req.path, data=req.body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{req.path} answered {exc.code}: {exc.read()[:300]!r}") from None


def lua_string(data: bytes) -> str:
    chars = (chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data)
    return '"' + "".join(chars) + '"'


def run_wrk(
    wrk: str, base: str, script: Path, duration: float, connections: int, threads: int
) -> RunResult:
    cmd = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        base,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith(WRK_MARKER)), None)
    if line is None:
        raise RuntimeError(f"no summary from wrk:\n{out}")
    d = json.loads(line[len(WRK_MARKER) :])
    errors = sum(d[k] for k in ("connect", "read", "write", "status", "timeout"))
    return RunResult(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        errors=errors,
        p50_ms=d["p50_us"] / 1e3,
        p95_ms=d["p95_us"] / 1e3,
        p99_ms=d["p99_us"] / 1e3,
    )


async def _httpx_load(
    base: str, requests: list[Request], duration: float, connections: int
) -> RunResult:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

        async def one_client(offset: int, stop_at: float) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < stop_at:
                req = requests[i % len(requests)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(req.path, content=req.body, headers=headers)
                    if r.status_code >= 400:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        stop_at = start + duration
        await asyncio.gather(*(one_client(n * 7, stop_at) for n in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1e3

    return RunResult(len(latencies), elapsed, errors, pct(0.50), pct(0.95), pct(0.99))


def run_httpx(base: str, requests: list[Request], duration: float, connections: int) -> RunResult:
    return asyncio.run(_httpx_load(base, requests, duration, connections))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30, help="seconds per run")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of unmeasured load")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--client", choices=["auto", "wrk", "httpx"], default="auto", help="load generator"
    )
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    client = args.client if args.client != "auto" else ("wrk" if wrk else "httpx")
    if client == "wrk" and wrk is None:
        parser.error("wrk is not installed")
    requests = load_requests()
    print(
        f"POST /api/v1/assess, {len(requests)} vignette bodies cycled; client {client}; "
        f"{args.connections} connections; {args.workers} workers; {args.runs} runs of "
        f"{args.duration:g} s; {os.cpu_count()} CPUs"
    )

    with tempfile.TemporaryDirectory() as tmp, server(args.workers) as base:
        check_bodies(base, requests)
        script = Path(tmp) / "bodies.lua"
        entries = ",\n".join(
            f"  {{{lua_string(r.path.encode())}, {lua_string(r.body)}}}" for r in requests
        )
        script.write_text(LUA_TEMPLATE % (entries, WRK_MARKER))

        def one_run(duration: float) -> RunResult:
            if client == "wrk":
                assert wrk is not None
                return run_wrk(wrk, base, script, duration, args.connections, args.threads)
            return run_httpx(base, requests, duration, args.connections)

        if args.warmup > 0:
            one_run(args.warmup)
        results = []
        for n in range(1, args.runs + 1):
            r = one_run(args.duration)
            results.append(r)
            print(
                f"  run {n}: {r.per_second:7.0f} req/s  {r.requests:7d} requests  "
                f"errors {r.errors}  p50 {r.p50_ms:6.2f} ms  p95 {r.p95_ms:6.2f} ms  "
                f"p99 {r.p99_ms:6.2f} ms"
            )

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"median: {med([r.per_second for r in results]):7.0f} req/s  "
        f"errors {med([r.errors for r in results]):g}  "
        f"p50 {med([r.p50_ms for r in results]):6.2f} ms  "
        f"p95 {med([r.p95_ms for r in results]):6.2f} ms  "
        f"p99 {med([r.p99_ms for r in results]):6.2f} ms"
    )


if __name__ == "__main__":
    main()
