"""Events without an account: a monitor's incidents (incident.opened, incident.resolved) are
events too, and a monitor of any server has no account

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # SQLite rebuilds the table to change a column: the ids it has handed out must stay used
    # (consumers keep a cursor), so the AUTOINCREMENT counter is carried over.
    seq = None
    if sqlite:
        seq = bind.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        ).scalar()
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("account_id", existing_type=sa.Integer(), nullable=True)
    if sqlite and seq is not None:
        bind.execute(
            sa.text("UPDATE sqlite_sequence SET seq = :seq WHERE name = 'events' AND seq < :seq"),
            {"seq": seq},
        )
        bind.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', :seq WHERE NOT "
                "EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')"
            ),
            {"seq": seq},
        )


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE account_id IS NULL")
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("account_id", existing_type=sa.Integer(), nullable=False)
