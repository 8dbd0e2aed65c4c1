"""A settings table, holding the key check: a value sealed with the key that seals the secrets

Revision ID: 0008
Revises: 0007

Several workers must share one key. A worker whose key cannot open the key check refuses to
start (before it writes anything), instead of showing every account it syncs as disabled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("settings")
