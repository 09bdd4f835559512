"""Writers to one SQLite file take turns, in the order they came.

SQLite's own wait for its write lock (``busy_timeout``) polls with growing sleeps, so a
process that writes in a loop can take the lock back again and again while another waits
until it gives up with "database is locked" (measured: a server request waited 26 s
beside a busy writer on a loaded machine). An exclusive ``flock`` on a file beside the
database, which the kernel gives to a waiter as soon as it is released, makes a writer
wait its turn instead, for at most a bound. Migrations take the same lock, so a writer
never meets a half-migrated schema.

The lock file is not left beside the database: it lives in the user's runtime folder
(``$XDG_RUNTIME_DIR/b12dx``, else a 0700 folder in the temporary directory), named by a
digest of the database's real path, so every process of the user that opens that file
meets the same lock (a SQLite file here is its owner's only: no other user opens it). If
a cleaner removes it while in use, writers lose only their order, never a write: SQLite's
own lock still decides."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from b12dx.private_files import FILE_MODE

_held = threading.local()  # {lock path: depth}: a thread already in its turn


def lock_path(database: Path) -> Path:
    """Where the database's writers queue: one file per database, outside its folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    folder = base / ("b12dx" if runtime else f"b12dx-{os.getuid()}")
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder} is not this user's own folder (0700)")
    real = os.path.realpath(database)
    return folder / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock")


class QueueTimeout(Exception):
    """Another writer held the database for longer than the bound."""


@contextlib.contextmanager
def turn(database: Path, timeout_s: float) -> Iterator[None]:
    """Hold the database's write turn for the block. A thread already holding it (a write
    inside a write) goes on; the SQLite lock then decides, as it always did."""
    path = lock_path(database)
    depth: dict[Path, int] = _held.__dict__.setdefault("depth", {})
    if depth.get(path):
        depth[path] += 1
        try:
            yield
        finally:
            depth[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    if not _acquire(fd, timeout_s):
        # The waiting thread owns the descriptor now: it lets go once the lock comes.
        raise QueueTimeout(f"another writer held the database for more than {timeout_s:g} s")
    depth[path] = 1
    try:
        yield
    finally:
        depth[path] = 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(fd: int, timeout_s: float) -> bool:
    """Lock ``fd``: at once if free, else by a blocking wait (the kernel's queue) in a
    helper thread, for at most ``timeout_s``. False: not locked, and ``fd`` is the
    helper's to close."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    got = threading.Event()
    decided = threading.Lock()
    gave_up = False

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with decided:
            if gave_up:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                return
            got.set()

    threading.Thread(target=wait, name="b12dx-write-turn", daemon=True).start()
    if got.wait(timeout_s):
        return True
    with decided:
        if got.is_set():
            return True
        gave_up = True
    return False
