"""batches.active_since: where a batch's progress clock starts, so every process computes
the same time-weighted percent from the database

Revision ID: 0008_progress_clock
Revises: 0007_run_backoff
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_progress_clock"
down_revision = "0007_run_backoff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as 0003): no table copy on SQLite.
    op.add_column("batches", sa.Column("active_since", sa.DateTime(), nullable=True))
    # A batch that has jobs counts from its upload, as a new one does.
    op.execute("UPDATE batches SET active_since = created_at WHERE total_jobs > 0")


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("active_since")
