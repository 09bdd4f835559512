"""PostgreSQL: move the practices' id sequence past the local practice.

The first migration inserts the local practice with id 1 explicitly, which PostgreSQL's
sequence does not see: the first `b12dx practice add` on a new PostgreSQL database then
failed on a duplicate id. SQLite takes the next id from the table and needs nothing.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('practices', 'id'), "
            "COALESCE((SELECT MAX(id) FROM practices), 0) + 1, false)"
        )


def downgrade() -> None:
    pass  # the sequence past the ids in use is right for 0002 too
