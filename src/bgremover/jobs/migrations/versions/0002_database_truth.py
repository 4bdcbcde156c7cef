"""the database is the job system's truth: dispatch ids, leases, counters, claim index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EVENT_SEQUENCE = "bgremover_event_seq"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatch_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("lost_runs", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("lost_runs", server_default=None)
    # Outside batch mode: SQLite's table copy would drop the DESC of these indexes.
    op.drop_index("ix_jobs_queue", table_name="jobs")
    op.drop_index("ix_jobs_batch_status", table_name="jobs")
    priority_desc = sa.text("priority DESC")
    op.create_index("ix_jobs_claim", "jobs", ["status", priority_desc, "queue_order"])
    op.create_index(
        "ix_jobs_batch_queue", "jobs", ["batch_id", "status", priority_desc, "queue_order"]
    )
    op.create_index("ix_jobs_lease", "jobs", ["status", "lease_until"])
    op.create_index("ix_jobs_dispatch", "jobs", ["dispatch_id"])

    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    last_order = op.get_bind().scalar(sa.text("SELECT max(queue_order) FROM jobs")) or 0
    op.bulk_insert(counters, [{"name": "queue_order", "value": last_order}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE {EVENT_SEQUENCE}")
    else:
        op.bulk_insert(counters, [{"name": "event_seq", "value": 0}])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE {EVENT_SEQUENCE}")
    op.drop_table("counters")
    for name in ("ix_jobs_dispatch", "ix_jobs_lease", "ix_jobs_batch_queue", "ix_jobs_claim"):
        op.drop_index(name, table_name="jobs")
    op.create_index("ix_jobs_batch_status", "jobs", ["batch_id", "status"])
    op.create_index("ix_jobs_queue", "jobs", ["status", "priority", "queue_order"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lost_runs")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("dispatch_id")
