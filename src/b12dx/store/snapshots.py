"""Assessing a stored patient: their history on a date goes through the pure engine, and
(when asked) the result is kept as an immutable snapshot with the versions that made it
and the dose schedule it planned."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from b12dx.engine import assess
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment
from b12dx.models.patient import PatientRecord
from b12dx.store import audit
from b12dx.store.audit import Actor
from b12dx.store.history import record_at
from b12dx.store.tables import AssessmentSnapshot, Patient, PlannedDose


@dataclass(frozen=True)
class Current:
    """A patient's record and assessment as of a date (not stored)."""

    record: PatientRecord
    assessment: Assessment


def current(kb: Knowledge, patient: Patient, as_of: dt.date, profile: str | None = None) -> Current:
    record = record_at(patient, as_of)
    return Current(record, assess(record, profile or patient.profile, as_of, kb))


def save(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    now: dt.datetime,
    patient: Patient,
    as_of: dt.date,
    profile: str | None = None,
) -> tuple[AssessmentSnapshot, Assessment]:
    """Assess ``patient`` on ``as_of`` and keep the result."""
    c = current(kb, patient, as_of, profile)
    a = c.assessment
    snap = AssessmentSnapshot(
        patient_id=patient.id,
        created_at=now,
        created_by=actor.name,
        as_of=as_of,
        engine_version=a.engine_version,
        knowledge_version=a.knowledge_version,
        profile=a.profile,
        urgency=a.urgency,
        deficiency_status=a.deficiency_status,
        record=c.record.model_dump_json(exclude_defaults=True),
        assessment=a.model_dump_json(),
    )
    session.add(snap)
    session.flush()
    if a.treatment is not None:
        session.add_all(
            PlannedDose(assessment_id=snap.id, due_on=d.date, dose=d.dose, phase=d.phase)
            for d in a.treatment.schedule
        )
    audit.record(
        session,
        actor,
        now,
        "assess",
        "assessment",
        snap.id,
        patient.id,
        {
            "as_of": str(as_of),
            "profile": a.profile,
            "engine_version": a.engine_version,
            "knowledge_version": a.knowledge_version,
            "urgency": a.urgency,
            "deficiency_status": a.deficiency_status,
        },
    )
    return snap, a


def history(session: Session, patient: Patient) -> list[AssessmentSnapshot]:
    q = select(AssessmentSnapshot).where(AssessmentSnapshot.patient_id == patient.id)
    return list(session.scalars(q.order_by(AssessmentSnapshot.id)))


def latest(session: Session, ids: Sequence[str]) -> dict[str, AssessmentSnapshot]:
    """Each patient's latest saved assessment, by patient id (one query for a list)."""
    if not ids:
        return {}
    newest = (
        select(func.max(AssessmentSnapshot.id))
        .where(AssessmentSnapshot.patient_id.in_(ids))
        .group_by(AssessmentSnapshot.patient_id)
    )
    rows = session.scalars(select(AssessmentSnapshot).where(AssessmentSnapshot.id.in_(newest)))
    return {s.patient_id: s for s in rows}


def planned(session: Session, snapshot: AssessmentSnapshot) -> list[PlannedDose]:
    q = select(PlannedDose).where(PlannedDose.assessment_id == snapshot.id)
    return list(session.scalars(q.order_by(PlannedDose.due_on)))


def stored_assessment(snapshot: AssessmentSnapshot) -> Assessment:
    return Assessment.model_validate(json.loads(snapshot.assessment))
