"""Patients, their labs, symptom ratings, doses, assessment snapshots, the planned
schedule and the audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _patient_fk() -> sa.ForeignKey:
    return sa.ForeignKey("patients.id", ondelete="CASCADE")


def upgrade() -> None:
    practices = op.create_table(
        "practices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("practice_id", sa.Integer, sa.ForeignKey("practices.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("sex", sa.String(10), nullable=False),
        sa.Column("diet", sa.String(12), nullable=False),
        sa.Column("ethnicity", sa.String(40), nullable=False),
        sa.Column("pregnant", sa.Boolean, nullable=False),
        sa.Column("breastfeeding", sa.Boolean, nullable=False),
        sa.Column("profile", sa.String(40)),
        sa.Column("calendar_token", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_patients_practice_id", "patients", ["practice_id"])
    op.create_table(
        "patient_conditions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("condition_id", sa.String(60), nullable=False),
        sa.Column("egfr", sa.Float),
        sa.Column("recorded_on", sa.Date, nullable=False),
        sa.UniqueConstraint("patient_id", "condition_id"),
    )
    op.create_table(
        "patient_medications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("medication_id", sa.String(60), nullable=False),
        sa.Column("started_on", sa.Date),
        sa.Column("stopped_on", sa.Date),
    )
    op.create_table(
        "patient_exposures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("exposure_id", sa.String(60), nullable=False),
        sa.Column("ongoing", sa.Boolean),
    )
    op.create_table(
        "lab_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("test", sa.String(40), nullable=False),
        sa.Column("value_number", sa.Float),
        sa.Column("value_text", sa.String(20)),
        sa.Column("unit", sa.String(30)),
        sa.Column("taken_on", sa.Date, nullable=False),
        sa.Column("reference_low", sa.Float),
        sa.Column("reference_high", sa.Float),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_lab_results_patient_id", "lab_results", ["patient_id"])
    op.create_table(
        "symptom_ratings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("symptom_id", sa.String(60), nullable=False),
        sa.Column("rating", sa.String(10), nullable=False),
        sa.Column("rated_on", sa.Date, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_symptom_ratings_patient_id", "symptom_ratings", ["patient_id"])
    op.create_table(
        "doses_given",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("given_on", sa.Date, nullable=False),
        sa.Column("drug", sa.String(40), nullable=False),
        sa.Column("dose_mg", sa.Float, nullable=False),
        sa.Column("route", sa.String(12), nullable=False),
        sa.Column("given_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_doses_given_patient_id", "doses_given", ["patient_id"])
    op.create_table(
        "assessments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(16), _patient_fk(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("engine_version", sa.String(20), nullable=False),
        sa.Column("knowledge_version", sa.String(20), nullable=False),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("urgency", sa.String(12), nullable=False),
        sa.Column("deficiency_status", sa.String(16), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("assessment", sa.Text, nullable=False),
    )
    op.create_index("ix_assessments_patient_id", "assessments", ["patient_id"])
    op.create_table(
        "planned_doses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "assessment_id",
            sa.Integer,
            sa.ForeignKey("assessments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("dose", sa.String(40), nullable=False),
        sa.Column("phase", sa.String(12), nullable=False),
    )
    op.create_index("ix_planned_doses_assessment_id", "planned_doses", ["assessment_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("practice_id", sa.Integer),
        sa.Column("patient_id", sa.String(16)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(40), nullable=False),
        sa.Column("entity_id", sa.String(40)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_patient_id", "audit_log", ["patient_id"])
    # Every database starts with one practice, which the command line and a server on
    # localhost work in.
    op.bulk_insert(
        practices, [{"id": 1, "name": "Local practice", "created_at": dt.datetime.now(dt.UTC)}]
    )


def downgrade() -> None:
    for table in (
        "audit_log",
        "planned_doses",
        "assessments",
        "doses_given",
        "symptom_ratings",
        "lab_results",
        "patient_exposures",
        "patient_medications",
        "patient_conditions",
        "patients",
        "practices",
    ):
        op.drop_table(table)
