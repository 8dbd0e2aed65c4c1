"""The database under the store: engine, sessions (one SQLite writer per process), the key
that seals secrets, migrations at open. Each aggregate's module adds its methods on top
(:mod:`._accounts`, :mod:`._mail`, :mod:`._log`, :mod:`._tokens`); :class:`~imapscope.store.Store`
is the one facade over all of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from imapscope.store import _migrate
from imapscope.store._crypto import SecretBox, load_or_create_key
from imapscope.store._errors import NotFoundError
from imapscope.store._models import Account

DB_FILE = "imapscope.db"


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL's recommended level: a commit is not fsynced (the WAL is, at checkpoints), so a power
    # cut may lose the last moments of sync state, which the next sync fetches again; it never
    # corrupts the database. Thousands of small sync commits would otherwise each wait for fsync.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Database:
    """One data directory's database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer: sessions of this process take turns, so two of them never
        # race for the write lock (a reader upgrading to a writer against a newer snapshot
        # gets "database is locked" at once, whatever busy_timeout says). Other processes
        # (the CLI while serve runs) wait through busy_timeout.
        self._turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        if self._turn is None:
            async with self._sessions() as s:
                yield s
            return
        async with self._turn, self._sessions() as s:
            yield s

    @classmethod
    async def open(cls, data_dir: Path, url: str | None = None) -> Self:
        """Open (creating if needed) the store, its key, and bring the schema up to date."""
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        box = SecretBox(load_or_create_key(data_dir))
        engine = create_async_engine(url or f"sqlite+aiosqlite:///{data_dir / DB_FILE}")
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade)
        return cls(engine, box)

    async def close(self) -> None:
        await self._engine.dispose()

    async def _row(self, s: Any, account_id: int) -> Account:
        row = await s.get(Account, account_id)
        if row is None:
            raise NotFoundError(
                f"no account with id {account_id}; list them with 'imapscope accounts list'"
            )
        assert isinstance(row, Account)
        return row
