"""folders.complete: the folder's first full sync has finished (a resumed one has not)

Revision ID: 0004
Revises: 0003

A folder's first sync is stored in batches without an event per message; ``complete`` is set,
with one ``folder.synced`` event, when the last batch is in. Folders synced before this
revision (they have a UIDNEXT) count as complete.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.add_column(
            sa.Column("complete", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE folders SET complete = (uidnext IS NOT NULL)")


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("complete")
