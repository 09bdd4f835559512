"""A small SQLite file the CDS service's workers share (made 0600 in a 0700 folder before
SQLite opens it, WAL), with one connection kept per thread: a hook call costs one short
transaction, not a connect, and any thread of any worker may use it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from b12dx.private_files import create_file, make_folder


class SharedFile:
    """``path`` with the tables ``schema`` creates. ``isolation_level=None`` leaves BEGIN
    to the caller (to take the write lock before a read)."""

    def __init__(
        self,
        path: Path,
        schema: Sequence[str],
        isolation_level: Literal["DEFERRED"] | None = "DEFERRED",
    ) -> None:
        self.path = path
        self.schema = schema
        self.isolation_level = isolation_level
        self._ready = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            return con
        with self._lock:
            if not self._ready:
                make_folder(self.path.parent)
                create_file(self.path)
        con = sqlite3.connect(self.path, timeout=10, isolation_level=self.isolation_level)
        with self._lock:
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                for statement in self.schema:
                    con.execute(statement)
                con.commit()
                self._ready = True
        # WAL with NORMAL sync: no fsync on each commit (a hook call answers in tens of
        # milliseconds). A crash of the machine may lose the last commits: what each user
        # of the file risks by that is said where it is used.
        con.execute("PRAGMA synchronous=NORMAL")
        self._local.con = con
        return con
