"""masks: the model's masks kept in the store for reuse (derive, second upload, preset change)

Revision ID: 0012_mask_cache
Revises: 0011_queue_pause
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_mask_cache"
down_revision = "0011_queue_pause"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "masks",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_used", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_masks_content_hash", "masks", ["content_hash"])
    op.create_index("ix_masks_last_used", "masks", ["last_used"])


def downgrade() -> None:
    op.drop_index("ix_masks_last_used", table_name="masks")
    op.drop_index("ix_masks_content_hash", table_name="masks")
    op.drop_table("masks")
