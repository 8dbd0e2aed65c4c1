"""64-bit integers on PostgreSQL: ids, UIDs, UIDVALIDITY, HIGHESTMODSEQ and counts

PostgreSQL's ``integer`` is 32 bits: a UIDVALIDITY or UID above 2**31 - 1 (both are 32-bit
unsigned in IMAP), a HIGHESTMODSEQ (63 bits) or an id past two billion did not fit, and an id
the API accepts (up to 2**63 - 1) failed the query instead of finding nothing. Every integer
column becomes ``bigint``, and the sequences behind the ids too. SQLite's INTEGER already holds
64 bits: nothing to do there.

The change rewrites each table on PostgreSQL (a large messages table takes a while, once).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _retype(column_type: str, sequence_type: str, found_type: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    columns = bind.execute(
        sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = :found "
            "AND table_name <> 'alembic_version' ORDER BY table_name, ordinal_position"
        ),
        {"found": found_type},
    ).all()
    tables: dict[str, list[str]] = {}
    for table, column in columns:
        tables.setdefault(table, []).append(column)
    for table, names in tables.items():
        changes = ", ".join(f'ALTER COLUMN "{name}" TYPE {column_type}' for name in names)
        op.execute(f'ALTER TABLE "{table}" {changes}')
    sequences = bind.execute(
        sa.text(
            "SELECT sequence_name FROM information_schema.sequences "
            "WHERE sequence_schema = current_schema() AND data_type = :found"
        ),
        {"found": found_type},
    ).scalars()
    for name in list(sequences):
        op.execute(f'ALTER SEQUENCE "{name}" AS {sequence_type}')


def upgrade() -> None:
    _retype("BIGINT", "bigint", "integer")


def downgrade() -> None:
    _retype("INTEGER", "integer", "bigint")
