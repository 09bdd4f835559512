"""A throwaway PostgreSQL server for the store tests (a pytest plugin, loaded by
conftest.py).

The server is started once per test session with the machine's own PostgreSQL binaries
(``initdb``, ``pg_ctl``; Debian's postgresql package, which ``scripts/check`` installs
when it is missing), in a temporary directory, listening only on a Unix socket there
(no TCP port to collide with), trust authentication, fsync off (the tests kill clients,
never the server, so the server's own durability is not what they check). It is stopped
and removed at the end. Each test that asks for ``pg_url`` gets a new, empty database.

PostgreSQL refuses to run as root; when the tests run as root (CI), the server runs as
the ``postgres`` system user.

When PostgreSQL cannot be started the tests that need it fail with the reason. A
developer without PostgreSQL (or without root to install it) may run everything else
with ``B12DX_TEST_POSTGRES=skip``; those tests are then skipped, saying so. CI never
sets it. ``B12DX_PG_BIN`` names the folder holding ``initdb`` and ``pg_ctl`` when they
are neither on PATH nor in /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

SKIP_ENV = "B12DX_TEST_POSTGRES"
BIN_ENV = "B12DX_PG_BIN"
START_TIMEOUT_S = 30


def _bin_dir() -> Path | None:
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        return Path(explicit)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    # Debian keeps the server binaries out of PATH, one folder per major version.
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """A running server; ``new_database()`` makes an empty database and returns its URL."""

    socket_dir: Path
    user: str = "postgres"
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir), user=self.user, dbname="postgres", autocommit=True
        )

    def new_database(self) -> str:
        name = f"b12dx_test_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as(as_user: str | None, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", as_user, "--", *cmd] if as_user else cmd


def _run(cmd: list[str], as_user: str | None, log: Path | None = None) -> None:
    cmd = _as(as_user, cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}{tail}"
        )


def _unavailable(reason: str) -> None:
    if os.environ.get(SKIP_ENV) == "skip":
        pytest.skip(f"PostgreSQL tests skipped ({SKIP_ENV}=skip): {reason}")
    pytest.fail(
        f"cannot start a PostgreSQL server for the tests: {reason}. Install PostgreSQL "
        f"(Debian: apt-get install postgresql; scripts/check does this as root), or set "
        f"{SKIP_ENV}=skip to run the other tests without it.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        _unavailable(f"initdb not found (looked in ${BIN_ENV}, PATH, /usr/lib/postgresql)")
        return
    as_user: str | None = None
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        as_user = user = "postgres"
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="b12dx-pg-"))
    data, log = base / "data", base / "server.log"
    try:
        if as_user is not None:
            pw = pwd.getpwnam(as_user)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust"]
        _run([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"], as_user)
        options = f"-c listen_addresses='' -k {base} -F -c max_connections=200"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
        _run([*pg_ctl, "-t", str(START_TIMEOUT_S), "-o", options, "start"], as_user, log)
    except (OSError, RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(str(exc))
        return
    try:
        yield PostgresServer(base, user)
    finally:
        subprocess.run(
            _as(as_user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A new, empty PostgreSQL database on the session's server."""
    return pg_server.new_database()
