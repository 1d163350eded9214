"""registry credential sources

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dockyard.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registry_sources",
        sa.Column("id", _ID, nullable=False),
        sa.Column("scope", _ID, nullable=False),
        sa.Column("app_id", _ID, nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", dockyard.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_fetched_at", dockyard.store.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("expires_at", dockyard.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "host"),
    )
    op.create_index(
        op.f("ix_registry_sources_app_id"), "registry_sources", ["app_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_registry_sources_app_id"), table_name="registry_sources")
    op.drop_table("registry_sources")
