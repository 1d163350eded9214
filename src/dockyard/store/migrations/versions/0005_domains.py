"""custom domains

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 05:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dockyard.store.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", _ID, nullable=False),
        sa.Column("app_id", _ID, nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", dockyard.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host"),
    )
    op.create_index(op.f("ix_domains_app_id"), "domains", ["app_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_domains_app_id"), table_name="domains")
    op.drop_table("domains")
