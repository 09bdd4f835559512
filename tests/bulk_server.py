"""SMART's reference Bulk Data server (smart-on-fhir/bulk-data-server, Apache-2.0), run on
loopback for the tests (a pytest plugin, loaded by conftest.py).

The server's source is kept in tests/fixtures/bulk-data-server (its README says what was
taken and changed so that it installs from the npm registry alone). The first run
installs its packages with ``npm ci`` into a cache folder keyed by the lock file (about
a minute; later runs reuse it), then each test worker starts its own server with the
fixture's ``serve-loopback.js`` (bound to 127.0.0.1, about a second). It needs Node 20
or newer with npm, and a C++ toolchain (its sqlite3 package is compiled); the tests fail
with the reason when any is missing.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from processes import READY_S, free_port, tail

FIXTURE = Path(__file__).parent / "fixtures" / "bulk-data-server"
CACHE_ENV = "B12DX_TEST_CACHE"


@dataclass
class BulkServer:
    base: str  # the server's root (registration, token); FHIR is under /fhir
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"

    def register(self, jwks: dict[str, object], **settings: str) -> str:
        """Register a client with its public keys; the client id the server issues (the
        server keeps nothing: the id carries the keys and any simulated error)."""
        form = {"jwks": json.dumps(jwks), **settings}
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(f"{self.base}/auth/register", data, timeout=30) as answer:
            return str(answer.read().decode().strip())


def _installed() -> Path:
    """The server with its packages installed, in the cache (installed once per lock)."""
    key = hashlib.sha256(
        (FIXTURE / "server" / "package-lock.json").read_bytes()
        + (FIXTURE / "database.r4.db.xz").read_bytes()
    ).hexdigest()[:16]
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "b12dx-tests")
    target = cache / f"bulk-data-server-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / "bulk-data-server.lock")):
        if (target / ".installed").exists():
            return target
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            pytest.fail("Node 20 or newer with npm is needed for the Bulk Data server tests")
        work = Path(tempfile.mkdtemp(prefix="bulk-data-server-", dir=cache))
        shutil.copytree(FIXTURE / "server", work, dirs_exist_ok=True)
        (work / "jobs").mkdir(exist_ok=True)
        log = work / "npm-ci.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--nodedir=/usr"],
                cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=900,
            )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"npm ci of the Bulk Data server failed:\n{tail(log)}")
        with lzma.open(FIXTURE / "database.r4.db.xz") as db:
            (work / "database.r4.db").write_bytes(db.read())
        (work / ".installed").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        return target


@pytest.fixture(scope="session")
def bulk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BulkServer]:
    server_dir = _installed()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("bulk") / "server.log"
    env = os.environ | {"PORT": str(port), "BASE_URL": base, "NODE_ENV": "production"}
    proc = subprocess.Popen(
        ["node", str(FIXTURE / "serve-loopback.js"), str(server_dir)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + READY_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Bulk Data server exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/fhir/metadata", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Bulk Data server did not start within {READY_S:g} s:\n{tail(log)}"
                )
            time.sleep(0.1)
        yield BulkServer(base, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
