"""A process killed in the middle of writing leaves the database consistent.

A writer process (tests/store_writer.py) adds doses through the store API, each dose with
its audit row in one transaction, and says which it has committed; it is killed with
SIGKILL at random moments: while opening (and migrating) a new database, during the
one-dose transactions, and in the middle of one long transaction that writes a thousand
doses. Afterwards the database must pass SQLite's integrity check, open, hold every dose
the writer said was committed, pair every dose with its audit row and every audit row
with its dose, and show none of the long transaction's rows. The same for PostgreSQL,
where the client is killed and the server must roll its transaction back.

The random delays come from a seed printed in a failure, so a failing run can be
repeated (B12DX_CRASH_SEED=N).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from b12dx.store.db import Database, open_database
from b12dx.store.tables import AuditEntry, DoseEntry, Patient
from processes import READY_S

pytestmark = pytest.mark.slow

WRITER = Path(__file__).with_name("store_writer.py")
SEED = int(os.environ.get("B12DX_CRASH_SEED") or random.SystemRandom().randrange(10**6))
BULK_DOSES = 1000
START_TIMEOUT_S = READY_S  # how long a writer may take to say it is ready (polled)


@dataclass
class Writer:
    proc: subprocess.Popen[str]
    log: Path  # its standard error
    lines: list[str] = field(default_factory=list)

    def read_until(self, prefix: str) -> None:
        """Read the writer's lines until one starts with ``prefix``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer ended before {prefix!r}: {self.stderr}")
            self.lines.append(line.strip())
            if line.startswith(prefix):
                return
        raise AssertionError(f"writer did not say {prefix!r} within {START_TIMEOUT_S} s")

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait()
        assert self.proc.returncode == -signal.SIGKILL, (self.proc.returncode, self.stderr)

    def wait(self) -> None:
        out, _ = self.proc.communicate(timeout=START_TIMEOUT_S)
        self.lines += [line.strip() for line in out.splitlines() if line.strip()]

    @property
    def committed(self) -> set[int]:
        return {int(line.split()[1]) for line in self.lines if line.startswith("ok ")}

    @property
    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("error ")]


def start(url: str, logs: Path, *args: str) -> Writer:
    log = logs / f"writer-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), url, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=WRITER.parent,
        )
    return Writer(proc, log)


def check_consistent(db: Database, acknowledged: set[int], bulk_markers: list[str]) -> int:
    """Every invariant a crash must not break; returns the number of doses."""
    with db.transaction() as s:
        doses = {d.id: d for d in s.scalars(select(DoseEntry))}
        log = list(s.scalars(select(AuditEntry)))
        patient_ids = set(s.scalars(select(Patient.id)))
    dose_audits = [int(e.entity_id or 0) for e in log if e.entity == "dose"]
    assert sorted(dose_audits) == sorted(doses), "a dose without its audit row, or the reverse"
    assert {e.entity_id for e in log if e.entity == "patient"} == patient_ids
    missing = acknowledged - set(doses)
    assert not missing, f"doses the writer saw committed are gone: {sorted(missing)[:10]}"
    for marker in bulk_markers:
        n = sum(1 for d in doses.values() if d.given_by == marker)
        assert n in (0, BULK_DOSES), f"{n} of the {BULK_DOSES} doses of one transaction"
    return len(doses)


def crash_repeatedly(url: str, logs: Path, loops: int) -> tuple[set[int], list[str]]:
    """Kill writers at random moments; returns the doses they saw committed and the
    markers of the long transactions killed."""
    print(f"B12DX_CRASH_SEED={SEED}")  # shown when the test fails
    rng = random.Random(SEED)
    acknowledged: set[int] = set()
    # Killed while it opens the database, possibly in the middle of its first migration.
    w = start(url, logs, "loop")
    time.sleep(rng.uniform(0.3, 1.2))
    w.kill()
    acknowledged |= w.committed
    for _ in range(loops):
        w = start(url, logs, "loop")
        w.read_until("ready")
        w.read_until("ok ")  # at least one write acknowledged, however loaded the machine
        time.sleep(rng.uniform(0.0, 0.4))
        w.kill()
        assert not w.errors, w.errors
        acknowledged |= w.committed
    w = start(url, logs, "bulk", str(BULK_DOSES))
    w.read_until("bulk start")
    marker = w.lines[-1].split()[2]
    time.sleep(rng.uniform(0.3, 0.8))
    w.kill()
    assert not any(line.startswith("bulk done") for line in w.lines), "killed too late"
    print(f"{loops + 2} kills, {len(acknowledged)} doses acknowledged")  # shown with -s
    return acknowledged, [marker]


def test_killing_sqlite_writers_mid_write_leaves_the_database_consistent(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    url = f"sqlite:///{path}"
    acknowledged, markers = crash_repeatedly(url, tmp_path, loops=4)

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    db = open_database(url)
    try:
        n = check_consistent(db, acknowledged, markers)
        assert n >= len(acknowledged) > 0
    finally:
        db.dispose()
    # And it takes writes again.
    w = start(url, tmp_path, "loop", "3")
    w.wait()
    assert w.proc.returncode == 0 and len(w.committed) == 3, w.stderr


def test_killing_postgresql_clients_mid_write_leaves_the_database_consistent(
    pg_url: str, tmp_path: Path
) -> None:
    acknowledged, markers = crash_repeatedly(pg_url, tmp_path, loops=2)
    db = open_database(pg_url)
    try:
        n = check_consistent(db, acknowledged, markers)
        assert n >= len(acknowledged) > 0
    finally:
        db.dispose()
