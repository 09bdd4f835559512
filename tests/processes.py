"""Running b12dx as its users do, in a process of its own: the command, and a free
loopback port for a server."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def b12dx_command() -> list[str]:
    """The installed ``b12dx`` beside this Python, else the module run by it."""
    script = Path(sys.executable).parent / "b12dx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "b12dx.cli.app"]


# How long a service a test starts (a server, PostgreSQL, a writer process) may take to
# be ready. Readiness is polled, so a quick start costs nothing; the bound is generous
# because on a loaded machine (another test worker starting PostgreSQL and Spark) a
# server took just over 20 s. B12DX_TEST_READY_S changes it.
READY_S = float(os.environ.get("B12DX_TEST_READY_S", "180"))


class NotReady(Exception):
    """A service did not become ready: the message holds the end of its log."""


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll ``url`` until it answers 200, while ``proc`` runs, for at most READY_S;
    :class:`NotReady` with the end of ``log`` otherwise."""
    deadline = time.monotonic() + READY_S
    while True:
        if proc.poll() is not None:
            raise NotReady(f"{what} exited with {proc.returncode} before answering:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise NotReady(f"{what} did not answer {url} within {READY_S:g} s:\n{tail(log)}")
        time.sleep(0.1)


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


class OnceOnly:
    """A module fixture's failure reported once: the first test that needs it fails with
    the cause, the others are skipped pointing to it (not N copies of one error)."""

    def __init__(self) -> None:
        self.reported: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        import pytest

        if key in self.reported:
            pytest.skip(f"{key} did not start: see the first failure of this module")
        self.reported.add(key)
        pytest.fail(message, pytrace=False)


ONCE = OnceOnly()


@dataclass
class Served:
    """A `b12dx serve` started by a test or benchmark, answering health."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_serve(folder: Path, *options: str, port: int | None = None) -> Served:
    """`b12dx serve` on a free loopback port (or ``port``) with its database, data and
    log in ``folder``, ``options`` added; returned once health answers."""
    port = port or free_port()
    log = folder / f"serve-{port}.log"
    env = os.environ | {"B12DX_DATA_DIR": str(folder / "data")}
    db = ["--db", str(folder / "f.sqlite3")] if "--db" not in options else []
    proc = subprocess.Popen(
        [*b12dx_command(), "serve", "--port", str(port), *db, *options],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", proc, log, "b12dx serve")
    return Served(port, log, proc)


def raise_open_files(at_least: int = 4096) -> None:
    """This process may open ``at_least`` sockets (a thousand half-sent requests)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= at_least:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, at_least), hard))
