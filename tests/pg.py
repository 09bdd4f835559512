"""A throwaway PostgreSQL server for the store tests (a pytest plugin, loaded by
conftest.py).

The server is started once per test run (shared by every pytest-xdist worker) with the
machine's own PostgreSQL binaries (``initdb``, ``pg_ctl``; Debian's postgresql package,
which ``scripts/check`` installs when it is missing), in a temporary directory, listening
only on a Unix socket there (no TCP port to collide with), trust authentication, fsync off
(the tests kill clients, never the server, so the server's own durability is not what
they check). It is stopped
and removed at the end of the run. Each test that asks for ``pg_url`` gets a new, empty
database (named with its worker's process id, so workers never share one).

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
import json
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
from filelock import FileLock

from processes import READY_S

SKIP_ENV = "B12DX_TEST_POSTGRES"
BIN_ENV = "B12DX_PG_BIN"
START_TIMEOUT_S = int(READY_S)  # readiness is polled (pg_ctl -w); the bound is generous


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


def _start(base: Path) -> dict[str, str | None]:
    """Start a server in ``base``; its description, or ``{"error": why}``."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        return {"error": f"initdb not found (looked in ${BIN_ENV}, PATH, /usr/lib/postgresql)"}
    as_user: str | None = None
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        as_user = user = "postgres"
    data, log = base / "data", base / "server.log"
    try:
        if as_user is not None:
            pw = pwd.getpwnam(as_user)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust"]
        _run([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"], as_user)
        options = f"-c listen_addresses='' -k {base} -F -c max_connections=300"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
        _run([*pg_ctl, "-t", str(START_TIMEOUT_S), "-o", options, "start"], as_user, log)
    except (OSError, RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        return {"error": str(exc)}
    return {"base": str(base), "user": user, "as_user": as_user, "bin_dir": str(bin_dir)}


def _stop(server: dict[str, str | None]) -> None:
    base, bin_dir = server.get("base"), server.get("bin_dir")
    if base and bin_dir:
        pg_ctl = [str(Path(bin_dir) / "pg_ctl"), "-D", str(Path(base) / "data")]
        subprocess.run(
            _as(server.get("as_user"), [*pg_ctl, "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )


# One server for the whole run, whatever the number of pytest-xdist workers: the first
# test to ask starts it (under a file lock in a folder every worker shares) and writes
# where it is; the others read that. The run's first process (xdist's controller, or
# pytest itself without -n) made the folder and stops the server when the run ends.
SHARED_ENV = "B12DX_TEST_SHARED_DIR"
_OWNED = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and SHARED_ENV not in os.environ:
        # Not under pytest's tmp_path: that is private to root, and the server runs as
        # postgres. Workers inherit the environment, and with it the folder.
        shared = Path(tempfile.mkdtemp(prefix="b12dx-test-run-"))
        shared.chmod(0o755)
        os.environ[SHARED_ENV] = str(shared)
        config.stash[_OWNED] = shared


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_OWNED, None)
    if shared is None:
        return
    state = shared / "pg.json"
    if state.exists():
        _stop(json.loads(state.read_text()))
    shutil.rmtree(shared, ignore_errors=True)
    os.environ.pop(SHARED_ENV, None)


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    shared = Path(os.environ[SHARED_ENV])
    state = shared / "pg.json"
    with FileLock(shared / "pg.lock"):
        if not state.exists():
            base = shared / "pg"
            base.mkdir()
            state.write_text(json.dumps(_start(base)))
        server = json.loads(state.read_text())
    if "error" in server:
        _unavailable(server["error"])
    return PostgresServer(Path(server["base"]), server["user"])


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A new, empty PostgreSQL database on the session's server."""
    return pg_server.new_database()
