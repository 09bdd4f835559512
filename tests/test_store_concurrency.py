"""Nothing is lost when several processes write at once: writer processes using the store
API on one new database (they also race to create and migrate it), the same dose
submitted twice at the same moment, and two server workers plus command-line processes
plus store writers all on one SQLite file (and on PostgreSQL).

Every write a process says was committed must be in the database exactly once with its
audit row, and no write may fail with "database is locked".
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from b12dx.errors import InputError
from b12dx.knowledge import Knowledge
from b12dx.store import entries, patients
from b12dx.store.audit import Actor
from b12dx.store.db import Database, open_database
from b12dx.store.tables import AuditEntry, DoseEntry
from processes import NotReady, b12dx_command, free_port, wait_for_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("store_writer.py")
TIMEOUT_S = 60.0
NOW = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.UTC)
NURSE = Actor("nurse.jones")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return str(request.getfixturevalue("pg_server").new_database())


def run_writers(url: str, n: int, count: int, logs: Path) -> list[list[str]]:
    """``n`` store writer processes at once, ``count`` doses each; their output lines."""
    procs = []
    for i in range(n):
        with (logs / f"writer-{i}.log").open("w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WRITER), url, "loop", str(count)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    cwd=WRITER.parent,
                )
            )
    outputs = []
    for i, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        log = (logs / f"writer-{i}.log").read_text()[-3000:]
        assert proc.returncode == 0, log
        outputs.append(out.splitlines())
    return outputs


def stored(db: Database) -> tuple[list[DoseEntry], list[AuditEntry]]:
    with db.transaction() as s:
        return list(s.scalars(select(DoseEntry))), list(s.scalars(select(AuditEntry)))


def assert_each_once_with_audit(db: Database, acknowledged: list[int]) -> list[DoseEntry]:
    doses, log = stored(db)
    by_id = {d.id: d for d in doses}
    assert len(acknowledged) == len(set(acknowledged)), "one id acknowledged twice"
    assert not set(acknowledged) - set(by_id), "an acknowledged dose is missing"
    same_dose = Counter((d.patient_id, d.given_on, d.drug, d.route) for d in doses)
    assert max(same_dose.values(), default=1) == 1, "a dose stored twice"
    audited = Counter(int(e.entity_id or 0) for e in log if e.entity == "dose")
    assert audited == Counter(set(by_id)), "a dose without exactly one audit row"
    return doses


WRITERS, EACH = 3, 25


def test_writer_processes_on_one_new_database_lose_nothing(url: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    outputs = run_writers(url, n=WRITERS, count=EACH, logs=tmp_path)
    elapsed = time.perf_counter() - started
    errors = [line for out in outputs for line in out if line.startswith("error")]
    assert not errors, errors
    acknowledged = [int(line.split()[1]) for out in outputs for line in out if line[:3] == "ok "]
    assert len(acknowledged) == WRITERS * EACH
    db = open_database(url)
    try:
        assert len(assert_each_once_with_audit(db, acknowledged)) == WRITERS * EACH
    finally:
        db.dispose()
    # Figures for docs/performance.md (shown with -s); the time includes starting Python.
    print(f"{url.split(':')[0]}: {WRITERS} writers x {EACH} doses in {elapsed:.1f} s")


def add_dose(db: Database, pid: str, day: dt.date, before_commit: Callable[[], object]) -> object:
    with db.transaction() as s:
        entry = entries.add_dose(
            s,
            NURSE,
            NOW,
            patients.get(s, NURSE, pid),
            given_on=day,
            drug="hydroxocobalamin",
            dose="1 mg",
            route="im",
        )
        before_commit()
        return entry


def test_the_same_dose_sent_twice_at_once_is_stored_once(url: str, kb: Knowledge) -> None:
    # A double-clicked form reaches two server workers. The second request checks for a
    # duplicate while the first has written its dose but not yet committed: it must wait
    # for the first and then be refused, not store the dose a second time.
    first_db, second_db = open_database(url), open_database(url)
    try:
        with first_db.transaction() as s:
            pid = patients.add(
                s, kb, NURSE, NOW, name="Twice", birth_date=dt.date(1960, 1, 1), sex="male"
            ).id
        day = dt.date(2026, 8, 1)
        first_written, second_started = threading.Event(), threading.Event()
        second: list[object] = []

        def hold_the_commit() -> None:
            first_written.set()
            second_started.wait(TIMEOUT_S)
            time.sleep(0.5)  # the second is now checking, or waiting for a lock

        def send_again() -> None:
            first_written.wait(TIMEOUT_S)
            second_started.set()
            try:
                second.append(add_dose(second_db, pid, day, lambda: None))
            except InputError as exc:
                second.append(exc)

        other = threading.Thread(target=send_again)
        other.start()
        add_dose(first_db, pid, day, hold_the_commit)
        other.join(TIMEOUT_S)
        [refused] = second
        assert isinstance(refused, InputError) and "already recorded" in str(refused), refused
        doses, _ = stored(first_db)
        assert [(d.patient_id, d.given_on) for d in doses] == [(pid, day)]
    finally:
        first_db.dispose()
        second_db.dispose()


# -- two server workers, the command line and store writers at once ----------------------


@dataclass
class Server:
    base: str
    url: str  # the database
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def children(self) -> list[int]:
        """The PIDs of the server's child processes (its workers, and a helper)."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(stat.parent.name))
        return sorted(out)


def has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir())


@pytest.fixture
def server(url: str, tmp_path: Path) -> Iterator[Server]:
    """``b12dx serve --workers 2`` on the database, login off (loopback only)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = os.environ | {"B12DX_DATA_DIR": str(tmp_path / "data")}
    cmd = [*b12dx_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    cmd += ["--db", url, "--no-require-login"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        try:
            wait_for_http(f"{base}/api/v1/health", proc, log_path, "the server")
        except NotReady as exc:
            pytest.fail(str(exc), pytrace=False)
        yield Server(base, url, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _post(base: str, path: str, body: dict[str, object]) -> tuple[int, str]:
    """POST JSON as a page on this machine would; (status, answer)."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# How much each kind of writer does in the test below (figures in docs/performance.md):
# the command line runs CLI_DOSES processes, CLI_AT_ONCE at a time; meanwhile HTTP_THREADS
# clients keep posting doses (at least HTTP_MIN) and a store writer process keeps writing,
# until the last command-line process has finished.
CLI_DOSES, CLI_AT_ONCE = 3, 3
HTTP_THREADS, HTTP_MIN = 2, 40


def test_two_server_workers_the_cli_and_store_writers_at_once_lose_nothing(
    server: Server, kb: Knowledge
) -> None:
    url = server.url
    db = open_database(url)
    try:
        with db.transaction() as s:
            pid = patients.add(
                s, kb, NURSE, NOW, name="Busy Clinic", birth_date=dt.date(1950, 1, 1), sex="female"
            ).id
    finally:
        db.dispose()
    # Distinct dates, so no write is a duplicate: the command line gets the days back from
    # today, the server the days before those, one each, as long as it is asked. A dose a
    # day is sooner than any hydroxocobalamin IM regimen gives, so each is confirmed.
    today = dt.date.today()
    cli_days = [today - dt.timedelta(days=i) for i in range(CLI_DOSES)]
    next_http_day = itertools.count(CLI_DOSES)
    body = {"drug": "hydroxocobalamin", "dose": "1 mg", "route": "im", "force": True}
    body |= {"batch_not_recorded": True, "site_not_recorded": True}
    cli_done = threading.Event()
    http: list[tuple[dt.date, int, str, float]] = []

    def http_client() -> None:
        while not cli_done.is_set() or len(http) < HTTP_MIN:
            day = today - dt.timedelta(days=next(next_http_day))
            sent = time.perf_counter()
            status, answer = _post(
                server.base, f"/api/v1/patients/{pid}/doses", body | {"date": str(day)}
            )
            http.append((day, status, answer, time.perf_counter() - sent))

    def via_cli(day: dt.date) -> subprocess.CompletedProcess[str]:
        cmd = [*b12dx_command(), "record", "dose", pid, "--date", day.isoformat(), "--db", url]
        cmd += ["--drug", "hydroxocobalamin", "--dose", "1 mg", "--route", "im", "--force"]
        cmd += ["--batch-not-recorded", "--site-not-recorded"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)

    started = time.perf_counter()
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), url, "loop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=WRITER.parent,
    )
    # The writer's lines as they come: the others start once it is ready, and it is
    # stopped only after it has committed while they ran (on a loaded machine its start
    # alone can outlast the command-line processes).
    said: list[str] = []
    ready, wrote = threading.Event(), threading.Event()

    def listen() -> None:
        assert writer.stdout is not None
        for line in writer.stdout:
            said.append(line)
            if line.startswith("ready "):
                ready.set()
            if line.startswith("ok "):
                wrote.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(TIMEOUT_S), "the store writer did not start"
    clients = [threading.Thread(target=http_client) for _ in range(HTTP_THREADS)]
    for c in clients:
        c.start()
    try:
        with ThreadPoolExecutor(CLI_AT_ONCE) as cli_pool:
            cli = list(cli_pool.map(via_cli, cli_days))
    finally:
        cli_done.set()
        for c in clients:
            c.join(TIMEOUT_S)
    # The writer is stopped mid-loop: what it said it committed must be there.
    wrote.wait(TIMEOUT_S)
    writer.kill()
    writer.wait(TIMEOUT_S)
    listener.join(TIMEOUT_S)
    assert writer.stderr is not None
    writer_err = writer.stderr.read()
    writer_out = "".join(said)
    elapsed = time.perf_counter() - started

    failures = [(status, answer) for _, status, answer, _ in http if status != 201]
    assert not failures, (failures[:5], server.log_tail())
    bad_cli = [(p.returncode, p.stderr) for p in cli if p.returncode != 0]
    assert not bad_cli, bad_cli[:5]
    everything = writer_out + writer_err + "".join(p.stderr for p in cli)
    assert "locked" not in everything and "error" not in writer_out, everything[-3000:]
    acknowledged = [int(line.split()[1]) for line in writer_out.splitlines() if line[:3] == "ok "]
    assert acknowledged, "the store writer wrote nothing while the others did"
    http_days = [day for day, *_ in http]
    acknowledged += [json.loads(answer)["id"] for _, _, answer, _ in http]

    db = open_database(url)
    try:
        doses = assert_each_once_with_audit(db, acknowledged)
    finally:
        db.dispose()
    ours = {d.given_on: d for d in doses if d.patient_id == pid}
    assert sorted(ours) == sorted(http_days + cli_days), "a dose from the server or CLI is missing"
    if server.url.startswith("sqlite"):
        # Both workers opened the database, so both served dose requests (a worker opens
        # it on its first follow-up request; /api/v1/health does not).
        path = Path(url.removeprefix("sqlite:///"))
        opened = [pid for pid in server.children() if has_open(pid, path)]
        assert len(opened) == 2, opened
    waits = [t for *_, t in http]
    print(
        f"{server.url.split(':')[0]}: {len(doses)} writes in {elapsed:.1f} s "
        f"({len(doses) / elapsed:.0f}/s): {len(http)} HTTP, {len(cli)} CLI, "
        f"{len(acknowledged) - len(http)} store writer; HTTP median "
        f"{statistics.median(waits) * 1000:.0f} ms, max {max(waits):.2f} s"
    )
