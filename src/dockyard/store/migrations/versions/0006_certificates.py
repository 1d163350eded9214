"""TLS certificates and force-https

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dockyard.store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = dockyard.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("app_id", _ID, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_after", _TIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index(op.f("ix_certificates_app_id"), "certificates", ["app_id"], unique=False)
    op.create_table(
        "app_https",
        sa.Column("app_id", _ID, nullable=False),
        sa.Column("force_https", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id"),
    )


def downgrade() -> None:
    op.drop_table("app_https")
    op.drop_index(op.f("ix_certificates_app_id"), table_name="certificates")
    op.drop_table("certificates")
