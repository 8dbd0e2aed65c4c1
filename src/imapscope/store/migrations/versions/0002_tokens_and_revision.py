"""API tokens; account revision (changes seen across processes)

Revision ID: 0002
Revises: 0001

Also: messages.seen/subject/sender, copied out of flags and envelope for filtering in SQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("seen", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("subject", sa.String(length=1000), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("sender", sa.String(length=1000), nullable=False, server_default="")
        )
        batch.create_index("ix_messages_folder_date", ["folder_id", "internaldate"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_folder_date")
        for column in ("sender", "subject", "seen"):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("revision")
    op.drop_table("api_tokens")
