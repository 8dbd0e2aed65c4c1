"""Apply the Alembic migrations shipped inside the package (no alembic.ini needed).

Alembic is imported only when the schema is not at :data:`HEAD`: every start of ``serve`` (and
every command that opens the store) would otherwise pay for importing it (about 0.1 s) to find
that there is nothing to do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest revision under migrations/versions (tests/test_migrations.py checks it is).
HEAD = "0014"


class MigrationError(Exception):
    """Alembic could not bring the schema up to date (e.g. it was written by a newer imapscope:
    ``unknown revision`` says so)."""

    def __init__(self, message: str, *, unknown_revision: bool = False) -> None:
        super().__init__(message)
        self.unknown_revision = unknown_revision


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current(connection: Connection) -> str | None:
    """The schema's revision (None: no schema yet)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)


def upgrade(connection: Connection) -> None:
    """Bring the schema to the newest revision (run inside AsyncConnection.run_sync)."""
    if current(connection) == HEAD:
        return
    from alembic import command  # noqa: PLC0415
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        command.upgrade(alembic_config(connection), "head")
    except CommandError as exc:
        unknown = "Can't locate revision" in str(exc)
        raise MigrationError(str(exc), unknown_revision=unknown) from exc
