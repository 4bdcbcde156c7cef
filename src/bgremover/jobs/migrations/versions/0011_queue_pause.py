"""queue_state and batches.paused (and held_since): pause the whole queue or one batch, in the store

Revision ID: 0011_queue_pause
Revises: 0010_metrics
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_queue_pause"
down_revision = "0010_metrics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    queue = op.create_table(
        "queue_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_by", sa.String(200), nullable=True),
        sa.Column("paused_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(queue, [{"name": "default", "paused": False, "version": 0}])
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("held_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("held_since")
        batch.drop_column("paused")
    op.drop_table("queue_state")
