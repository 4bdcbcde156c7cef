"""jobs.not_before: a job whose run a failing dependency cut short waits before it runs again

Revision ID: 0007_run_backoff
Revises: 0006_logins
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_run_backoff"
down_revision = "0006_logins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
