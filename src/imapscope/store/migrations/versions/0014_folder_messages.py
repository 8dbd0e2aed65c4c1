"""A folder's message count as the server gave it with UIDNEXT and HIGHESTMODSEQ at the end of
its last sync: with them it tells, from a STATUS, that nothing changed since

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL (unknown) for folders synced before: their next sync reads them whole, as before.
    kind = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.add_column("folders", sa.Column("messages", kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("messages")
