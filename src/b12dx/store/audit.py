"""Who did what: every change to the follow-up database is written here, in the same
transaction as the change itself (so neither exists without the other)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b12dx.store.tables import AuditEntry

LOCAL_PRACTICE_ID = 1  # created by the first migration


@dataclass(frozen=True)
class Actor:
    """The person (or command line) making a change, and the practice they work in: they
    see and change only that practice's patients."""

    name: str  # a username, or "cli:<login>" for the command line
    practice_id: int = LOCAL_PRACTICE_ID


def record(
    session: Session,
    actor: Actor,
    now: dt.datetime,
    action: str,
    entity: str,
    entity_id: str | int | None,
    patient_id: str | None,
    detail: dict[str, Any],
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor.name,
            practice_id=actor.practice_id,
            patient_id=patient_id,
            action=action,
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            detail=detail,
        )
    )


def entries(session: Session, practice_id: int, patient_id: str | None = None) -> list[AuditEntry]:
    q = select(AuditEntry).where(AuditEntry.practice_id == practice_id)
    if patient_id is not None:
        q = q.where(AuditEntry.patient_id == patient_id)
    return list(session.scalars(q.order_by(AuditEntry.id)))
