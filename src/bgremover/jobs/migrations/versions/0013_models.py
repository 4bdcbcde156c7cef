"""jobs.result_model and result_model_sha256: which model (and which weights) made a result;
model_timings: the learned model-stage seconds of each model jobs chose

Revision ID: 0013_models
Revises: 0012_mask_cache
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_models"
down_revision = "0012_mask_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_model", sa.String(64), nullable=True))
        batch.add_column(sa.Column("result_model_sha256", sa.String(64), nullable=True))
    op.create_table(
        "model_timings",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_timings")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_model_sha256")
        batch.drop_column("result_model")
