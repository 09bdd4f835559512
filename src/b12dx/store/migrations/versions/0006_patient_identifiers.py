"""A patient's NHS number or local record number: each at most once in a practice.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN and unique indexes: a batch copy of ``patients`` would drop the old
    # table, and with foreign keys on, SQLite would cascade that to every patient's rows.
    op.add_column("patients", sa.Column("nhs_number", sa.String(10), nullable=True))
    op.add_column("patients", sa.Column("local_number", sa.String(40), nullable=True))
    op.create_index(
        "uq_patients_practice_nhs", "patients", ["practice_id", "nhs_number"], unique=True
    )
    op.create_index(
        "uq_patients_practice_local", "patients", ["practice_id", "local_number"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_patients_practice_local", "patients")
    op.drop_index("uq_patients_practice_nhs", "patients")
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("local_number")
        batch.drop_column("nhs_number")
