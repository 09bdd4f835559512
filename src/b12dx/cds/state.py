"""What the CDS service keeps between calls, in a small SQLite file every worker shares
(``cds-state.sqlite3`` in the data directory, 0600 in a 0700 folder):

- the cards it issued (service, card uuid, when), so that feedback is taken only for a
  card this service gave (CDS Hooks 2.0.1, Feedback: the card's uuid), for
  ``CARD_MEMORY`` after it was issued;
- records handed over to the clinician view: a card's link carries a random reference
  to the patient's record, never the record itself (a URL stays in browser history,
  proxy logs and the EHR's own logs). The record is kept for ``HANDOFF_LIFETIME`` (a
  clinic day) and then deleted; the link says so when it has expired.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import platformdirs

from b12dx.private_files import create_file, make_folder

CARD_MEMORY = 30 * 24 * 3600.0  # seconds: feedback comes within days of a card
HANDOFF_LIFETIME = 12 * 3600.0  # seconds: a clinic day, as a sign-in
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cds_cards_issued (
        service TEXT NOT NULL,
        card TEXT NOT NULL,
        issued_at REAL NOT NULL,
        PRIMARY KEY (service, card)
    )""",
    """CREATE TABLE IF NOT EXISTS cds_record_handoff (
        token TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""",
)


def default_path() -> Path:
    base = os.environ.get("B12DX_DATA_DIR") or platformdirs.user_data_dir("b12dx")
    return Path(base) / "cds-state.sqlite3"


class CdsState:
    """Cards issued and records handed over; one connection per call, so any thread of
    any worker may use it."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if not self._ready:
                make_folder(self.path.parent)
                create_file(self.path)
        con = sqlite3.connect(self.path, timeout=10)
        with self._lock:
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                for statement in SCHEMA:
                    con.execute(statement)
                con.commit()
                self._ready = True
        return con

    def remember_cards(self, service: str, cards: Iterable[str]) -> None:
        now = self.clock()
        rows = [(service, card, now) for card in cards]
        if not rows:
            return
        con = self._connect()
        try:
            with con:
                con.execute(
                    "DELETE FROM cds_cards_issued WHERE issued_at < ?", (now - CARD_MEMORY,)
                )
                con.executemany("INSERT OR IGNORE INTO cds_cards_issued VALUES (?, ?, ?)", rows)
        finally:
            con.close()

    def issued(self, service: str, card: str) -> bool:
        """Whether this service issued ``card`` within ``CARD_MEMORY``."""
        con = self._connect()
        try:
            found = con.execute(
                "SELECT 1 FROM cds_cards_issued WHERE service = ? AND card = ? AND issued_at >= ?",
                (service, card, self.clock() - CARD_MEMORY),
            ).fetchone()
        finally:
            con.close()
        return found is not None

    def hand_over(self, record: dict[str, Any]) -> str:
        """Keep ``record`` for the clinician view; the reference for the link."""
        token = secrets.token_urlsafe(24)
        now = self.clock()
        con = self._connect()
        try:
            with con:
                con.execute("DELETE FROM cds_record_handoff WHERE expires_at <= ?", (now,))
                con.execute(
                    "INSERT INTO cds_record_handoff VALUES (?, ?, ?)",
                    (token, json.dumps(record, separators=(",", ":")), now + HANDOFF_LIFETIME),
                )
        finally:
            con.close()
        return token

    def handed_over(self, token: str) -> dict[str, Any] | None:
        """The record a link refers to, or None when the reference is unknown or expired."""
        if not token or len(token) > 64:
            return None
        con = self._connect()
        try:
            row = con.execute(
                "SELECT record FROM cds_record_handoff WHERE token = ? AND expires_at > ?",
                (token, self.clock()),
            ).fetchone()
        finally:
            con.close()
        if row is None:
            return None
        record: dict[str, Any] = json.loads(row[0])
        return record
