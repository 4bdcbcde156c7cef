"""progress and ETAs weighted by image size: buckets per job and batch, learned stage
timings in the database, predicted run durations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUCKETS = range(4)
# ``eta.size_bucket`` at the time of this migration: megapixel edges 1, 4, 16.
BUCKET_OF = (
    "CASE WHEN width IS NULL OR height IS NULL THEN 0 "
    "WHEN width * height >= 16000000 THEN 3 WHEN width * height >= 4000000 THEN 2 "
    "WHEN width * height >= 1000000 THEN 1 ELSE 0 END"
)


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: SQLite's table copy would lose the DESC of the claim
    # indexes. The server defaults stay; the application always sets these columns.
    op.add_column(
        "jobs", sa.Column("size_bucket", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("jobs", sa.Column("predicted_seconds", sa.Float(), nullable=True))
    for kind in ("total", "ended"):
        for bucket in BUCKETS:
            op.add_column(
                "batches",
                sa.Column(f"{kind}_b{bucket}", sa.Integer(), nullable=False, server_default="0"),
            )
    op.execute(f"UPDATE jobs SET size_bucket = {BUCKET_OF}")
    for bucket in BUCKETS:
        for kind, statuses in (
            ("total", "'pending', 'processing', 'completed', 'failed', 'cancelled'"),
            ("ended", "'completed', 'failed', 'cancelled'"),
        ):
            op.execute(
                f"UPDATE batches SET {kind}_b{bucket} = (SELECT count(*) FROM jobs "
                f"WHERE jobs.batch_id = batches.id AND NOT jobs.superseded "
                f"AND jobs.size_bucket = {bucket} AND jobs.status IN ({statuses}))"
            )
    op.create_table(
        "stage_timings",
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "stage"),
    )


def downgrade() -> None:
    op.drop_table("stage_timings")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        for kind in ("total", "ended"):
            for bucket in BUCKETS:
                batch_op.drop_column(f"{kind}_b{bucket}")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("predicted_seconds")
        batch_op.drop_column("size_bucket")
