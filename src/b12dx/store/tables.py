"""The follow-up database schema (SQLAlchemy 2). Changes go through an Alembic migration
in ``migrations/versions`` as well: the test suite checks the two agree."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    relationship,
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A moment, written in UTC and read back in UTC on every backend. SQLite keeps no
    zone: given 12:00+02:00 it stores 12:00 and hands back a bare 12:00, which everything
    else (backups, comparisons) reads as UTC, two hours off. PostgreSQL answers in the
    session's zone. A time given without a zone is taken to be UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Practice(Base):
    __tablename__ = "practices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id"))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class LoginSession(Base):
    """A signed-in browser. Only a hash of the cookie's token is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Patient(Base):
    """Minimal identifying data: a name as the clinic knows the person, birth date, sex, and
    an NHS number or local record number when the practice gives one."""

    __tablename__ = "patients"
    # An identifier names one person: at most once in a practice (NULLs do not clash).
    __table_args__ = (
        Index("uq_patients_practice_nhs", "practice_id", "nhs_number", unique=True),
        Index("uq_patients_practice_local", "practice_id", "local_number", unique=True),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(10))
    diet: Mapped[str] = mapped_column(String(12), default="omnivore")
    ethnicity: Mapped[str] = mapped_column(String(40), default="unknown")
    pregnant: Mapped[bool] = mapped_column(Boolean, default=False)
    breastfeeding: Mapped[bool] = mapped_column(Boolean, default=False)
    profile: Mapped[str | None] = mapped_column(String(40))
    nhs_number: Mapped[str | None] = mapped_column(String(10))  # 10 digits, check digit valid
    local_number: Mapped[str | None] = mapped_column(String(40))  # the practice's own number
    calendar_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    conditions: Mapped[list[PatientCondition]] = relationship(
        cascade="all, delete-orphan", order_by="PatientCondition.id"
    )
    medications: Mapped[list[PatientMedication]] = relationship(
        cascade="all, delete-orphan", order_by="PatientMedication.id"
    )
    exposures: Mapped[list[PatientExposure]] = relationship(
        cascade="all, delete-orphan", order_by="PatientExposure.id"
    )
    # The entries as recorded, without those entered in error (which stay in their tables).
    labs: Mapped[list[LabEntry]] = relationship(
        cascade="all, delete-orphan",
        primaryjoin="and_(Patient.id == LabEntry.patient_id, LabEntry.voided_at.is_(None))",
        order_by="(LabEntry.taken_on, LabEntry.id)",
    )
    ratings: Mapped[list[SymptomRatingEntry]] = relationship(
        cascade="all, delete-orphan",
        primaryjoin="and_(Patient.id == SymptomRatingEntry.patient_id, "
        "SymptomRatingEntry.voided_at.is_(None))",
        order_by="(SymptomRatingEntry.rated_on, SymptomRatingEntry.id)",
    )
    doses: Mapped[list[DoseEntry]] = relationship(
        cascade="all, delete-orphan",
        primaryjoin="and_(Patient.id == DoseEntry.patient_id, DoseEntry.voided_at.is_(None))",
        order_by="(DoseEntry.given_on, DoseEntry.id)",
    )


class PatientCondition(Base):
    __tablename__ = "patient_conditions"
    __table_args__ = (UniqueConstraint("patient_id", "condition_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    condition_id: Mapped[str] = mapped_column(String(60))
    egfr: Mapped[float | None] = mapped_column(Float)
    recorded_on: Mapped[dt.date] = mapped_column(Date)


class PatientMedication(Base):
    """A medicine the person takes; its duration at any date comes from ``started_on``."""

    __tablename__ = "patient_medications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    medication_id: Mapped[str] = mapped_column(String(60))
    started_on: Mapped[dt.date | None] = mapped_column(Date)
    stopped_on: Mapped[dt.date | None] = mapped_column(Date)


class PatientExposure(Base):
    __tablename__ = "patient_exposures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    exposure_id: Mapped[str] = mapped_column(String(60))
    ongoing: Mapped[bool | None] = mapped_column(Boolean)


class LabEntry(Base):
    __tablename__ = "lab_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    test: Mapped[str] = mapped_column(String(40))
    value_number: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(String(20))
    unit: Mapped[str | None] = mapped_column(String(30))
    taken_on: Mapped[dt.date] = mapped_column(Date)
    reference_low: Mapped[float | None] = mapped_column(Float)
    reference_high: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(100))
    # Entered in error: kept (the audit trail and saved assessments refer to it), and
    # left out of everything the patient's record is read for (Patient's collections).
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_by: Mapped[str | None] = mapped_column(String(100))
    void_reason: Mapped[str | None] = mapped_column(String(200))


class SymptomRatingEntry(Base):
    __tablename__ = "symptom_ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    symptom_id: Mapped[str] = mapped_column(String(60))
    rating: Mapped[str] = mapped_column(String(10))
    rated_on: Mapped[dt.date] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(100))
    # Entered in error: kept (the audit trail and saved assessments refer to it), and
    # left out of everything the patient's record is read for (Patient's collections).
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_by: Mapped[str | None] = mapped_column(String(100))
    void_reason: Mapped[str | None] = mapped_column(String(200))


class DoseEntry(Base):
    __tablename__ = "doses_given"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    given_on: Mapped[dt.date] = mapped_column(Date)
    drug: Mapped[str] = mapped_column(String(40))
    dose_mg: Mapped[float] = mapped_column(Float)
    route: Mapped[str] = mapped_column(String(12))
    given_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(100))
    batch: Mapped[str | None] = mapped_column(String(40))  # lot number on the ampoule
    site: Mapped[str | None] = mapped_column(String(40))  # e.g. left deltoid
    # Entered in error: kept (the audit trail and saved assessments refer to it), and
    # left out of everything the patient's record is read for (Patient's collections).
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_by: Mapped[str | None] = mapped_column(String(100))
    void_reason: Mapped[str | None] = mapped_column(String(200))


class AssessmentSnapshot(Base):
    """One assessment exactly as it was made: the record given to the engine, its output,
    and the versions that produced it. Never updated (see ``_immutable`` below)."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    as_of: Mapped[dt.date] = mapped_column(Date)
    engine_version: Mapped[str] = mapped_column(String(20))
    knowledge_version: Mapped[str] = mapped_column(String(20))
    profile: Mapped[str] = mapped_column(String(40))
    urgency: Mapped[str] = mapped_column(String(12))
    deficiency_status: Mapped[str] = mapped_column(String(16))
    record: Mapped[str] = mapped_column(Text)  # contract input JSON
    assessment: Mapped[str] = mapped_column(Text)  # contract output JSON


class PlannedDose(Base):
    """The dose schedule an assessment planned (its treatment.schedule), kept as rows so
    that the timeline and the due list can compare it with the doses given."""

    __tablename__ = "planned_doses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        ForeignKey("assessments.id", ondelete="CASCADE"), index=True
    )
    due_on: Mapped[dt.date] = mapped_column(Date)
    dose: Mapped[str] = mapped_column(String(40))
    phase: Mapped[str] = mapped_column(String(12))


class AuditEntry(Base):
    """Who changed what and when. ``detail`` holds the values written (no password or
    session token ever reaches it)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    practice_id: Mapped[int | None] = mapped_column(Integer)
    patient_id: Mapped[str | None] = mapped_column(String(16), index=True)
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, object]] = mapped_column(JSON)


@event.listens_for(Session, "before_flush")
def _immutable(session: Session, _ctx: object, _instances: object) -> None:
    # Snapshots and the audit log are append-only: an edit is a bug, not a feature.
    for obj in session.dirty:
        if isinstance(obj, AssessmentSnapshot | PlannedDose | AuditEntry) and session.is_modified(
            obj
        ):
            raise RuntimeError(f"{type(obj).__name__} rows are immutable")
    for obj in session.deleted:
        if isinstance(obj, AuditEntry):
            raise RuntimeError("audit log rows are never deleted")


@event.listens_for(Session, "do_orm_execute")
def _immutable_bulk(state: ORMExecuteState) -> None:
    # The same for UPDATE/DELETE statements on the mapped classes, which bypass the flush.
    # (A restore replaces whole tables through their Table objects, not the classes.)
    target = state.bind_mapper.class_ if state.bind_mapper is not None else None
    if state.is_update and target in (AssessmentSnapshot, PlannedDose, AuditEntry):
        raise RuntimeError(f"{target.__name__} rows are immutable")
    if state.is_delete and target is AuditEntry:
        raise RuntimeError("audit log rows are never deleted")
