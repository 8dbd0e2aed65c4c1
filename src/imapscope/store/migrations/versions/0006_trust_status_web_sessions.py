"""Per-account trust (CA certificates, pinned fingerprint), the retry schedule in the database,
and web UI login sessions in the database

Revision ID: 0006
Revises: 0005

``next_attempt`` and ``halted`` were kept in the memory of the worker syncing the account; in
the database every worker's API and UI (and the CLI) can show them. Web sessions in the
database let any worker accept a login made on another, and survive a restart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("ca_pem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pin_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("next_attempt", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("halted", sa.String(length=300), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("web_sessions")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("halted")
        batch.drop_column("next_attempt")
        batch.drop_column("pin_sha256")
        batch.drop_column("ca_pem")
