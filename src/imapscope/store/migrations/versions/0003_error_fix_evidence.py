"""Error entries carry the finding's fix and evidence (the same finding check reports)

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("errors") as batch:
        batch.add_column(
            sa.Column("fix", sa.String(length=2000), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("errors") as batch:
        batch.drop_column("evidence")
        batch.drop_column("fix")
