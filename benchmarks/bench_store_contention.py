"""Does the clinic keep working while people sign in and while a backup runs?

    .venv/bin/python benchmarks/bench_store_contention.py [--src DIR] [--runs 3]
        [--seconds 6] [--audit-rows 200000]

Starts `b12dx serve` (one worker, sign-in required, a SQLite database with one practice,
one user with a real argon2 hash, 50 patients and 200,000 audit rows so that a backup
takes seconds) on a free loopback port, signs one nurse in, and times the nurse's
signed-in reads (`GET /api/v1/session`, one at a time) in three phases of a few seconds:

- quiet: nothing else happening;
- sign-ins: another client signing in 6 times a second with the right password (the
  per-client sign-in limit is raised for this phase with B12DX_SIGN_IN_PER_MINUTE, so
  every attempt costs its argon2 check);
- backup: `b12dx backup` running.

Prints the median, p95 and slowest read of each phase and the backup's time. `--src`
runs another checkout's code (its `src` folder: PYTHONPATH for the server and the
command line), for a side-by-side comparison with an earlier commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
B12DX = Path(sys.executable).parent / "b12dx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(url: str, env: dict[str, str], audit_rows: int) -> None:
    """The database, made by the code under test (its migrations), then filled."""
    script = f"""
import datetime as dt, sqlite3
from b12dx.knowledge.loader import load_knowledge
from b12dx.store import patients, users
from b12dx.store.audit import Actor
from b12dx.store.db import open_database
now = dt.datetime.now(dt.UTC)
admin = Actor("cli:admin")
db = open_database({url!r})
kb = load_knowledge()
with db.transaction() as s:
    p = users.create_practice(s, admin, now, "Riverside")
    for name in ("nurse.a", "gp.b"):
        users.create_user(s, admin, now, username=name, password={PASSWORD!r}, practice_id=p.id)
    for i in range(50):
        patients.add(s, kb, Actor("nurse.a", p.id), now, name=f"Patient {{i}}",
                     birth_date=dt.date(1950 + i % 40, 1, 1), sex="female")
db.dispose()
con = sqlite3.connect({url.removeprefix("sqlite:///")!r})
con.executemany(
    "INSERT INTO audit_log (at, actor, practice_id, patient_id, action, entity, entity_id,"
    " detail) VALUES (?, 'nurse.a', 2, NULL, 'view', 'patient', NULL, '{{}}')",
    [(now.isoformat(),) for _ in range({audit_rows})],
)
con.commit()
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=env)


def _sign_in(base: str, username: str) -> dict[str, str]:
    """Sign in; the session cookie as a header (it is Secure, so a client would not send
    it back over plain http by itself)."""
    with httpx.Client(base_url=base, timeout=60) as c:
        page = c.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text[:200]
        cookies = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        r = c.post(
            "/login",
            data={"csrf_token": match.group(1), "username": username, "password": PASSWORD},
            headers={"cookie": cookies},
        )
        session = r.headers.get("set-cookie", "").split(";")[0]
        assert r.status_code == 303 and session, (r.status_code, r.text[:200])
        return {"cookie": session}


def _reads(base: str, headers: dict[str, str], seconds: float) -> list[float]:
    out = []
    with httpx.Client(base_url=base, timeout=120, headers=headers) as c:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            r = c.get("/api/v1/session")
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.status_code
            time.sleep(0.05)
    return out


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def run_once(env: dict[str, str], phase_s: float, audit_rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'clinic.sqlite3'}"
        _setup(url, env, audit_rows)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = env | {"B12DX_SIGN_IN_PER_MINUTE": "100000"}
        server = subprocess.Popen(
            [str(B12DX), "serve", "--port", str(port), "--db", url, "--require-login"],
            env=server_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{base}/api/v1/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            nurse = _sign_in(base, "nurse.a")
            result: dict[str, Any] = {"quiet": _summary(_reads(base, nurse, phase_s))}

            stop = threading.Event()
            signed = [0]

            def sign_ins() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    _sign_in(base, "gp.b")
                    signed[0] += 1
                    time.sleep(max(0.0, 1 / 6 - (time.perf_counter() - t0)))

            loader = threading.Thread(target=sign_ins)
            loader.start()
            try:
                result["sign-ins"] = _summary(_reads(base, nurse, phase_s))
            finally:
                stop.set()
                loader.join()
            result["sign-ins"]["sign_ins_per_s"] = signed[0] / phase_s

            backup_file = Path(tmp) / "nightly.b12dx-backup"
            t0 = time.perf_counter()
            job = subprocess.Popen(
                [str(B12DX), "backup", str(backup_file), "--db", url],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            reads = []
            while job.poll() is None:
                reads += _reads(base, nurse, 0.5)
            result["backup"] = _summary(reads) | {"backup_s": time.perf_counter() - t0}
            assert job.returncode == 0
            return result
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    parser.add_argument("--audit-rows", type=int, default=200_000)
    args = parser.parse_args()
    env = dict(os.environ) | {"PYTHONPATH": str(args.src.resolve())}
    runs = [run_once(env, args.seconds, args.audit_rows) for _ in range(args.runs)]
    print(f"code: {args.src}  ({dt.date.today()})")
    for phase in ("quiet", "sign-ins", "backup"):
        cells = []
        for key in ("p50_ms", "p95_ms", "max_ms"):
            values = [r[phase][key] for r in runs]
            listed = ", ".join(f"{v:.0f}" for v in values)
            cells.append(f"{key} {listed} (median {statistics.median(values):.0f})")
        extra = ""
        if phase == "sign-ins":
            extra = " sign-ins/s " + ", ".join(f"{r[phase]['sign_ins_per_s']:.1f}" for r in runs)
        if phase == "backup":
            extra = " backup s " + ", ".join(f"{r[phase]['backup_s']:.1f}" for r in runs)
        print(f"{phase:9s} " + "; ".join(cells) + extra)


if __name__ == "__main__":
    main()
