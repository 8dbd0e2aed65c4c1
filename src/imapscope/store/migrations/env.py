"""Alembic environment: run with the connection imapscope.store hands over (see _migrate.py)."""

from __future__ import annotations

from alembic import context

from imapscope.store._models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
)
with context.begin_transaction():
    context.run_migrations()
