"""Releases numbered per app, with what made them and the git ref they came from

Existing releases are numbered by app in id order; what made each one is its
operation's type (``deploy`` when the operation is gone).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: a batch copy of ``releases`` on SQLite
    # would drop the table, and with it every app's current_release_id.
    op.add_column("releases", sa.Column("number", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "releases", sa.Column("kind", sa.String(length=16), nullable=False, server_default="deploy")
    )
    op.add_column("releases", sa.Column("git_ref", sa.Text(), nullable=True))
    op.execute(
        "UPDATE releases SET number = (SELECT COUNT(*) FROM releases AS earlier "
        "WHERE earlier.app_id = releases.app_id AND earlier.id <= releases.id)"
    )
    op.execute(
        "UPDATE releases SET kind = COALESCE((SELECT operations.type FROM operations "
        "WHERE operations.id = releases.operation_id), 'deploy')"
    )
    op.create_index("uq_releases_app_number", "releases", ["app_id", "number"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_releases_app_number", table_name="releases")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("git_ref")
        batch_op.drop_column("kind")
        batch_op.drop_column("number")
