"""The database under the store: engine, sessions (one SQLite writer per process), the key
that seals secrets, migrations at open. Each aggregate's module adds its methods on top
(:mod:`._accounts`, :mod:`._mail`, :mod:`._log`, :mod:`._tokens`); :class:`~imapscope.store.Store`
is the one facade over all of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import orjson
from sqlalchemy import event, func, insert, or_, select
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from imapscope.store import _migrate, _sqlite
from imapscope.store._coalesce import Coalescer
from imapscope.store._crypto import KEY_ENV, SecretBox, load_or_create_key
from imapscope.store._errors import NotFoundError, SecretKeyError, StoreError
from imapscope.store._models import Account, Setting

DB_FILE = "imapscope.db"
#: The database to use instead of the data directory's SQLite file (``serve --database`` sets
#: it too): ``postgresql://user:password@host:port/dbname``. The data directory still holds the
#: key that seals the secrets, which every worker on one database must share.
DATABASE_ENV = "IMAPSCOPE_DATABASE_URL"


def database_url(url: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL: ``url``, else $IMAPSCOPE_DATABASE_URL, else SQLite in ``data_dir``.
    A plain ``postgresql://`` URL is given the asyncpg driver."""
    chosen = url or os.environ.get(DATABASE_ENV) or f"sqlite+aiosqlite:///{data_dir / DB_FILE}"
    for plain in ("postgresql://", "postgres://"):
        if chosen.startswith(plain):
            return "postgresql+asyncpg://" + chosen.removeprefix(plain)
    if not chosen.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise StoreError(
            f"unsupported database URL {_redacted(chosen)!r}: use postgresql://user@host/db "
            "(or leave it out for SQLite in the data directory)"
        )
    return chosen


def _redacted(url: str) -> str:
    """A URL without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url


def contains(text: str, *columns: Any) -> Any:
    """A filter: one of ``columns`` contains ``text``, in any case (LIKE, its wildcards in
    ``text`` taken literally), the same on SQLite and PostgreSQL."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in columns))


def _json_dumps(value: Any) -> str:
    """JSON columns' encoder: orjson (a first sync encodes one envelope per message), the
    standard library for what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


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


class Pulse:
    """Wakes whoever waits in this process when the store wrote something they follow (new
    events). Other processes' writes are not seen here: waiters also look again after a
    timeout."""

    def __init__(self) -> None:
        self._now = asyncio.Event()

    def fire(self) -> None:
        fired, self._now = self._now, asyncio.Event()
        fired.set()

    async def wait(self, timeout: float) -> None:
        """Until the next :meth:`fire`, or ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._now.wait()


def no_account(account_id: int) -> NotFoundError:
    return NotFoundError(
        f"no account with id {account_id}; list them with 'imapscope accounts list'"
    )


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
        #: Fired after each commit that wrote events (the event stream, held waits, webhooks).
        self.events_written = Pulse()
        #: Fired when an endpoint is added or enabled (the webhook service, idle without one).
        self.webhooks_changed = Pulse()
        # The group commits (:meth:`_coalescer`): :meth:`close` lets their last batch land.
        self._coalescers: list[Coalescer[Any, Any]] = []

    def _coalescer(self, write: Any) -> Coalescer[Any, Any]:
        """A :class:`Coalescer` over ``write``, whose batch in flight :meth:`close` waits for."""
        made: Coalescer[Any, Any] = Coalescer(write)
        self._coalescers.append(made)
        return made

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        if self._turn is None:
            async with self._sessions() as s:
                yield s
            return
        async with self._turn, self._sessions() as s:
            yield s

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A Core transaction, committed at the end (rolled back on an error), with none of a
        session's ORM machinery: the group commits' statements (:mod:`._coalesce`) are all
        Core, and a session cost them about twice the CPU. SQLite's turn is taken as
        :meth:`_session` takes it."""
        async with self._turn or contextlib.nullcontext(), self._engine.begin() as conn:
            yield conn

    @classmethod
    async def open(cls, data_dir: Path, url: str | None = None) -> Self:
        """Open (creating if needed) the store, its key, and bring the schema up to date. The
        database is ``url``, $IMAPSCOPE_DATABASE_URL, or SQLite in ``data_dir``
        (:func:`database_url`); a database that cannot be reached, or whose schema is newer than
        this imapscope, is a :class:`StoreError` that says so, and nothing is written."""
        chosen = database_url(url, data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        box = SecretBox(load_or_create_key(data_dir))
        sqlite = chosen.startswith("sqlite")
        engine = create_async_engine(
            chosen, pool_pre_ping=not sqlite,
            # JSON columns (envelopes, run steps, roll-up histograms) are read in bulk: orjson
            # decodes them several times faster than the standard library.
            json_deserializer=orjson.loads,
            json_serializer=_json_dumps,
            # One trip to aiosqlite's thread per statement (see _sqlite).
            **({"async_creator": _sqlite.creator(chosen)} if sqlite else {}),
        )  # fmt: skip
        if sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_migrate.upgrade)
                await conn.run_sync(_check_key, box)
        except (OSError, DBAPIError, _migrate.MigrationError) as exc:
            await engine.dispose()
            raise StoreError(
                f"cannot open the database {_redacted(chosen)}: {_reason(exc)}"
            ) from exc
        except SecretKeyError as exc:
            await engine.dispose()
            raise StoreError(f"cannot use the database {_redacted(chosen)}: {exc}") from None
        return cls(engine, box)

    async def close(self) -> None:
        for coalescer in self._coalescers:
            await coalescer.settled()
        await self._engine.dispose()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    async def _row(self, s: Any, account_id: int) -> Account:
        found: Account | None = await s.get(Account, account_id)
        if found is None:
            raise no_account(account_id)
        return found

    async def _found(self, s: Any, model: type[Any], key: Any, missing: str) -> Any:
        """The row of ``model`` with this primary key, or :class:`NotFoundError` (``missing``
        says what to do)."""
        row = await s.get(model, key)
        if row is None:
            raise NotFoundError(missing)
        return row

    async def _setting(self, s: Any, name: str) -> bytes | None:
        """A value the store keeps about itself (``settings``), or None."""
        found = await s.scalar(select(Setting.value).where(Setting.name == name))
        return None if found is None else bytes(found)

    async def _put_setting(self, s: Any, name: str, value: bytes) -> None:
        """Write a setting in the caller's transaction."""
        row = await s.get(Setting, name)
        if row is None:
            s.add(Setting(name=name, value=value))
        else:
            row.value = value


KEY_CHECK = "key_check"
KEY_CHECK_TEXT = "imapscope key check"
KEY_MISMATCH = (
    "its stored passwords are sealed with another key than this one ({where}): every worker "
    "needs the same key (the same data directory's secret.key, or the same "
    "$IMAPSCOPE_SECRET_KEY); nothing was written"
)


def _check_key(conn: Any, box: SecretBox) -> None:
    """Refuse a key that is not the database's: the key check (a value sealed with the key
    that seals the secrets) must open. The first store to open a database writes it; a database
    from before the check is checked against an account's secret first."""
    where = f"${KEY_ENV}" if os.environ.get(KEY_ENV) else "this data directory's secret.key"
    found = conn.execute(select(Setting.value).where(Setting.name == KEY_CHECK)).scalar()
    if found is None:
        sealed = conn.execute(select(Account.secret).limit(1)).scalar()
        if sealed is not None:
            try:
                box.open(sealed)
            except SecretKeyError:
                raise SecretKeyError(KEY_MISMATCH.format(where=where)) from None
        conn.execute(insert(Setting).values(name=KEY_CHECK, value=box.seal(KEY_CHECK_TEXT)))
        return
    try:
        box.open(found)
    except SecretKeyError:
        raise SecretKeyError(KEY_MISMATCH.format(where=where)) from None


def _reason(exc: BaseException) -> str:
    """What went wrong, in a line: a newer schema, a refused connection, a wrong password."""
    text = str(exc)
    if isinstance(exc, _migrate.MigrationError) and exc.unknown_revision:
        return ("its schema is newer than this imapscope knows (a newer version wrote it): "
                "upgrade imapscope, or use another database")  # fmt: skip
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    return text.splitlines()[0] if text else type(exc).__name__
