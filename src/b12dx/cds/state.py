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
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from b12dx.cds.shared_file import SharedFile
from b12dx.private_files import data_file

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
    return data_file("cds-state.sqlite3")


class CdsState:
    """Cards issued and records handed over. Each thread keeps its own connection (a
    hook call costs one short transaction, not a connect), so any thread of any worker
    may use it."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock
        # A crash of the machine may lose the last cards and links (WAL, NORMAL), which
        # costs a refused feedback or an expired link, never a wrong answer.
        self._file = SharedFile(path, SCHEMA)

    @staticmethod
    def new_reference() -> str:
        """A reference for a card's link (random, 32 characters), saved with
        :meth:`answered`."""
        return secrets.token_urlsafe(24)

    def answered(
        self,
        service: str,
        cards: Iterable[str],
        handoff: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """One hook call's answer, in one transaction: the cards issued and, when a card
        links to the clinician view, the record its reference stands for. What has
        outlived its time is dropped on the way."""
        now = self.clock()
        rows = [(service, card, now) for card in cards]
        con = self._file.connect()
        with con:
            if rows:
                con.execute(
                    "DELETE FROM cds_cards_issued WHERE issued_at < ?", (now - CARD_MEMORY,)
                )
                con.executemany("INSERT OR IGNORE INTO cds_cards_issued VALUES (?, ?, ?)", rows)
            if handoff is not None:
                token, record = handoff
                con.execute("DELETE FROM cds_record_handoff WHERE expires_at <= ?", (now,))
                con.execute(
                    "INSERT INTO cds_record_handoff VALUES (?, ?, ?)",
                    (token, json.dumps(record, separators=(",", ":")), now + HANDOFF_LIFETIME),
                )

    def remember_cards(self, service: str, cards: Iterable[str]) -> None:
        self.answered(service, cards)

    def issued(self, service: str, card: str) -> bool:
        """Whether this service issued ``card`` within ``CARD_MEMORY``."""
        found = (
            self._file.connect()
            .execute(
                "SELECT 1 FROM cds_cards_issued WHERE service = ? AND card = ? AND issued_at >= ?",
                (service, card, self.clock() - CARD_MEMORY),
            )
            .fetchone()
        )
        return found is not None

    def hand_over(self, record: dict[str, Any]) -> str:
        """Keep ``record`` for the clinician view; the reference for the link."""
        token = self.new_reference()
        self.answered("", [], (token, record))
        return token

    def handed_over(self, token: str) -> dict[str, Any] | None:
        """The record a link refers to, or None when the reference is unknown or expired."""
        if not token or len(token) > 64:
            return None
        row = (
            self._file.connect()
            .execute(
                "SELECT record FROM cds_record_handoff WHERE token = ? AND expires_at > ?",
                (token, self.clock()),
            )
            .fetchone()
        )
        if row is None:
            return None
        record: dict[str, Any] = json.loads(row[0])
        return record
