"""Feedback from CDS clients on our cards (CDS Hooks 2.0.1, Feedback), kept in SQLite.

"A CDS Service may receive feedback for the same card instance multiple times": each
outcome is stored once, keyed by service, card, outcome and timestamp, so a resent
feedback changes nothing. Only what the spec sends is kept (card and suggestion uuids,
outcome, override reason, times, the calling client's issuer): no patient data.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b12dx.private_files import create_file, data_file, make_folder

SCHEMA = """
CREATE TABLE IF NOT EXISTS cds_feedback (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    card TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions TEXT NOT NULL,
    override_reason TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    client TEXT,
    UNIQUE (service, card, outcome, outcome_timestamp)
)
"""


class FeedbackError(ValueError):
    """The feedback body is not what the spec describes; .errors name each field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Feedback:
    card: str
    outcome: str
    accepted_suggestions: list[str]
    override_reason: dict[str, Any] | None
    outcome_timestamp: str


def default_path() -> Path:
    return data_file("cds-feedback.sqlite3")


# Bounds on what one feedback post may store (a card's outcome is a few hundred bytes;
# without them three posts stored 94 MB).
MAX_ITEMS = 100
MAX_ID_CHARS = 128
MAX_SUGGESTIONS = 20
MAX_REASON_BYTES = 2048


def parse(body: Any) -> list[Feedback]:
    errors: list[dict[str, str]] = []
    items = body.get("feedback") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not items:
        raise FeedbackError([{"path": "feedback", "message": "must be a non-empty list"}])
    if len(items) > MAX_ITEMS:
        raise FeedbackError(
            [{"path": "feedback", "message": f"holds {len(items)} items; at most {MAX_ITEMS}"}]
        )
    out: list[Feedback] = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, Mapping):
            errors.append({"path": where, "message": "must be an object"})
            continue
        card, outcome, when = item.get("card"), item.get("outcome"), item.get("outcomeTimestamp")
        accepted = item.get("acceptedSuggestions") or []
        if not isinstance(card, str) or not card or len(card) > MAX_ID_CHARS:
            errors.append(
                {
                    "path": f"{where}.card",
                    "message": f"is required (the card's uuid, at most {MAX_ID_CHARS} characters)",
                }
            )
        if outcome not in ("accepted", "overridden"):
            errors.append({"path": f"{where}.outcome", "message": "must be accepted or overridden"})
        if not isinstance(when, str) or _timestamp(when) is None:
            errors.append(
                {"path": f"{where}.outcomeTimestamp", "message": "must be an ISO 8601 time"}
            )
        ids = (
            [a.get("id") for a in accepted if isinstance(a, Mapping)]
            if isinstance(accepted, list)
            else []
        )
        if (
            not isinstance(accepted, list)
            or len(accepted) > MAX_SUGGESTIONS
            or not all(isinstance(x, str) and len(x) <= MAX_ID_CHARS for x in ids)
        ):
            errors.append(
                {
                    "path": f"{where}.acceptedSuggestions",
                    "message": f"must be a list of at most {MAX_SUGGESTIONS} {{id}}",
                }
            )
        elif outcome == "accepted" and not ids:
            errors.append(
                {
                    "path": f"{where}.acceptedSuggestions",
                    "message": "is required when the outcome is accepted",
                }
            )
        reason = item.get("overrideReason")
        if reason is not None and (
            not isinstance(reason, Mapping)
            or len(json.dumps(reason, default=str)) > MAX_REASON_BYTES
        ):
            errors.append(
                {
                    "path": f"{where}.overrideReason",
                    "message": f"must be an object of at most {MAX_REASON_BYTES} bytes",
                }
            )
        elif reason is not None and not _says_why(reason):
            # CDS Hooks 2.0.1: an override reason is a Coding (one of the card's
            # overrideReasons) and/or the user's comment; an empty one says nothing.
            errors.append(
                {
                    "path": f"{where}.overrideReason",
                    "message": "must hold a reason (a Coding with a code) or a userComment",
                }
            )
        if not errors:
            out.append(
                Feedback(
                    str(card),
                    str(outcome),
                    [str(x) for x in ids],
                    dict(reason) if isinstance(reason, Mapping) else None,
                    str(when),
                )
            )
    if errors:
        raise FeedbackError(errors)
    return out


def _says_why(reason: Mapping[str, Any]) -> bool:
    coding = reason.get("reason")
    comment = reason.get("userComment")
    coded = isinstance(coding, Mapping) and isinstance(coding.get("code"), str) and coding["code"]
    said = isinstance(comment, str) and comment.strip()
    well_formed = (coding is None or isinstance(coding, Mapping)) and (
        comment is None or isinstance(comment, str)
    )
    return bool(well_formed and (coded or said))


def _timestamp(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# What the table keeps: a clinician acts on a card once or twice, so a card keeps at most
# PER_CARD outcomes (each new outcomeTimestamp was a new row, so one caller could grow the
# file without end); rows older than KEEP_DAYS (a year's audit, and a month over) go; and
# at most MAX_ROWS rows in all, the oldest going first (about 60 MB at the largest
# reasons a body may carry).
PER_CARD = 10
KEEP_DAYS = 400
MAX_ROWS = 20_000


class FeedbackStore:
    """A small SQLite table; one connection per call keeps it safe across threads."""

    def __init__(
        self,
        path: Path,
        per_card: int = PER_CARD,
        max_rows: int = MAX_ROWS,
        keep_days: int = KEEP_DAYS,
    ) -> None:
        self.path = path
        self.per_card = per_card
        self.max_rows = max_rows
        self.keep_days = keep_days
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            # Made before SQLite opens it: the folder 0700 and the file 0600 (SQLite gives
            # its -wal and -shm files the database file's permissions), as patient files.
            make_folder(self.path.parent)
            create_file(self.path)
        con = sqlite3.connect(self.path, timeout=10)
        if not self._ready:
            with self._lock:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(SCHEMA)
                con.commit()
                self._ready = True
        return con

    def record(
        self,
        service: str,
        items: list[Feedback],
        client: str | None,
        at: dt.datetime | None = None,
    ) -> tuple[int, int, int]:
        """(new, already recorded, not recorded because their card holds ``per_card``
        outcomes) — all in one transaction, which also drops rows past ``keep_days`` and
        the oldest beyond ``max_rows``."""
        moment = at or dt.datetime.now(dt.UTC)
        now = moment.isoformat(timespec="seconds")
        cutoff = (moment - dt.timedelta(days=self.keep_days)).isoformat(timespec="seconds")
        con = self._connect()
        try:
            with con:
                con.execute("DELETE FROM cds_feedback WHERE received_at < ?", (cutoff,))
                new = refused = 0
                for f in items:
                    held = con.execute(
                        "SELECT COUNT(*) FROM cds_feedback WHERE service = ? AND card = ?",
                        (service, f.card),
                    ).fetchone()[0]
                    if held >= self.per_card:
                        refused += 1
                        continue
                    cur = con.execute(
                        "INSERT OR IGNORE INTO cds_feedback (service, card, outcome,"
                        " accepted_suggestions, override_reason, outcome_timestamp, received_at,"
                        " client) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            service,
                            f.card,
                            f.outcome,
                            json.dumps(f.accepted_suggestions),
                            json.dumps(f.override_reason) if f.override_reason else None,
                            f.outcome_timestamp,
                            now,
                            client,
                        ),
                    )
                    new += cur.rowcount
                con.execute(
                    "DELETE FROM cds_feedback WHERE id IN (SELECT id FROM cds_feedback"
                    " ORDER BY id DESC LIMIT -1 OFFSET ?)",
                    (self.max_rows,),
                )
        finally:
            con.close()
        return new, len(items) - new - refused, refused

    def all(self) -> list[dict[str, Any]]:
        con = self._connect()
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM cds_feedback ORDER BY id")]
        finally:
            con.close()
