"""metric_counts: monitoring totals and histogram buckets, added to as jobs move

Revision ID: 0010_metrics
Revises: 0009_webhooks
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_metrics"
down_revision = "0009_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs that ended before this are not counted: the totals start here, as a counter does.
    op.create_table(
        "metric_counts",
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("le", sa.String(length=16), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "label", "le"),
    )


def downgrade() -> None:
    op.drop_table("metric_counts")
