"""A lab result, symptom rating or dose entered in error is marked so, with why, when and
by whom, and kept: the audit trail and saved assessments refer to it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("lab_results", "symptom_ratings", "doses_given")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("voided_by", sa.String(100), nullable=True))
            batch.add_column(sa.Column("void_reason", sa.String(200), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("void_reason")
            batch.drop_column("voided_by")
            batch.drop_column("voided_at")
