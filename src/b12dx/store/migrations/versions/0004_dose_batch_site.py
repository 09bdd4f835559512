"""A dose given keeps its batch (lot) number and injection site, as a practice nurse
records them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("doses_given") as batch:
        batch.add_column(sa.Column("batch", sa.String(40), nullable=True))
        batch.add_column(sa.Column("site", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("doses_given") as batch:
        batch.drop_column("site")
        batch.drop_column("batch")
