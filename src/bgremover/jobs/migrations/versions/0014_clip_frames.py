"""jobs.frames: a clip's frame count from its headers at upload, so a batch's bar and ETA
weigh a clip by its frames (None: a photo, one frame)

The batches' per-size-bucket counters now count frames; every job before this one counts
one, as it did, so they stay right as they are.

Revision ID: 0014_clip_frames
Revises: 0013_models
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_clip_frames"
down_revision = "0013_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("frames", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("frames")
