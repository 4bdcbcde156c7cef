"""per-job stage durations: what each stage of a completed run took, for analytics

Revision ID: 0004_stage_durations
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_stage_durations"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs that completed before this have no samples: analytics starts counting from here.
    op.create_table(
        "stage_durations",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "stage"),
    )


def downgrade() -> None:
    op.drop_table("stage_durations")
