"""Replay protection for CDS client tokens: each (iss, jti) is accepted once.

A token past ``exp + leeway`` is refused as expired anyway, so that is when its jti can
be forgotten: what is kept is bounded by the traffic of one token lifetime (five minutes).

Two kinds, one interface (``first_use``):

* :class:`SharedReplayCache` keeps the pairs in a small SQLite file that every worker of
  ``b12dx serve --workers N`` opens (in the data directory, beside the CDS feedback): a
  token accepted by one worker is refused by every other. This is what the service uses.
  Servers on several machines behind one address each keep their own file, so a token
  replayed to another machine within its five minutes is not caught: such a deployment
  needs sticky routing per client or one machine for CDS (docs/security.md).
* :class:`MemoryReplayCache` keeps them in the process, for an authenticator made in a
  library call or a test.
"""

from __future__ import annotations

import heapq
import threading
from pathlib import Path
from typing import Protocol

from b12dx.cds.shared_file import SharedFile
from b12dx.private_files import data_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS cds_token_seen (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    forget_after REAL NOT NULL,
    PRIMARY KEY (iss, jti)
)
"""


class ReplayCache(Protocol):
    def first_use(self, iss: str, jti: str, *, forget_after: float, now: float) -> bool:
        """Record (iss, jti); False if it was already recorded and not yet forgotten."""
        ...

    def __len__(self) -> int: ...


def default_path() -> Path:
    return data_file("cds-tokens.sqlite3")


class MemoryReplayCache:
    """(iss, jti) pairs in this process only, each forgotten once its token has expired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}
        self._expiries: list[tuple[float, str, str]] = []  # min-heap by forget time

    def first_use(self, iss: str, jti: str, *, forget_after: float, now: float) -> bool:
        with self._lock:
            while self._expiries and self._expiries[0][0] <= now:
                when, old_iss, old_jti = heapq.heappop(self._expiries)
                if self._seen.get((old_iss, old_jti)) == when:
                    del self._seen[(old_iss, old_jti)]
            key = (iss, jti)
            if key in self._seen:
                return False
            self._seen[key] = forget_after
            heapq.heappush(self._expiries, (forget_after, iss, jti))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


class SharedReplayCache:
    """(iss, jti) pairs in a SQLite file every worker process shares.

    Each check is one write transaction (``BEGIN IMMEDIATE``: the check and the insert
    cannot interleave with another worker's), which also drops the pairs whose tokens
    have expired. The file holds no patient data (issuer URLs and random nonces) and is
    made 0600 all the same, as every file b12dx writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # isolation_level None: BEGIN is ours, so the lock is taken before the read. A
        # crash may lose the last commits (WAL, NORMAL): a token accepted just before a
        # crash of the machine could be replayed once after it, within its five minutes.
        self._file = SharedFile(path, [SCHEMA], isolation_level=None)

    def first_use(self, iss: str, jti: str, *, forget_after: float, now: float) -> bool:
        con = self._file.connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM cds_token_seen WHERE forget_after <= ?", (now,))
            cur = con.execute(
                "INSERT OR IGNORE INTO cds_token_seen (iss, jti, forget_after) VALUES (?, ?, ?)",
                (iss, jti, forget_after),
            )
            new = cur.rowcount == 1
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return new

    def __len__(self) -> int:
        (count,) = self._file.connect().execute("SELECT count(*) FROM cds_token_seen").fetchone()
        return int(count)
