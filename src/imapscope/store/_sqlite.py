"""aiosqlite with one trip to its thread per statement, not four.

aiosqlite runs each call on the connection's own thread and hands the result back to the event
loop: a queue, a thread wake-up, the GIL, a wake-up of the loop. On this project's 2-core
machine one such trip costs about 75 us of CPU (`bench/sqlite_trips.py`), while SQLite answers
a small statement in about 1 us. SQLAlchemy's adapter makes four trips per statement (open a
cursor, execute, fetch the rows, close the cursor) and one for each rollback the pool does when
a connection is returned, transaction or not: about 450 trips, tens of milliseconds of CPU, for
each account that connects.

:class:`Connection` keeps aiosqlite's thread and its queue (every statement, commit and
rollback runs on that one thread, as with aiosqlite), and makes one trip per statement: the
cursor is opened, the statement run, its rows read and the cursor closed in the same trip. A
commit or rollback with no transaction open makes no trip at all: the loop's thread reads the
connection's ``in_transaction`` flag (SQLite's autocommit state, safe to read from any thread)
and leaves it at that. SQLAlchemy uses it through
``create_async_engine(..., async_creator=...)`` (:func:`creator`); nothing else changes.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url

_Ran = tuple[Any, int, int | None, list[Any]]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Ran:
    """On the connection's thread: the statement, and everything SQLAlchemy reads of it."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class Cursor:
    """What SQLAlchemy's aiosqlite adapter needs of a cursor; the rows arrive with the
    execution."""

    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _go(self, sql: str, parameters: Any, many: bool) -> Self:
        ran: _Ran = await self._conn.trip(_run, self._conn._conn, sql, parameters, many)
        self.description, self.rowcount, self.lastrowid, rows = ran
        self._rows = deque(rows)
        return self

    async def execute(self, sql: str, parameters: Any = None) -> Self:
        return await self._go(sql, parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Self:
        return await self._go(sql, parameters, True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, its statements one trip each (see the module's text)."""

    async def trip(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the connection's thread."""
        return await self._execute(fn, *args)  # type: ignore[no-untyped-call]

    def cursor(self) -> Cursor:  # type: ignore[override]
        # SQLAlchemy awaits the cursor's __aenter__; the sqlite3 cursor is made in the trip.
        return Cursor(self)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await self.trip(self._conn.commit)

    async def rollback(self) -> None:
        # The pool rolls back each connection it is given back, mostly with nothing to undo.
        if self._conn.in_transaction:
            await self.trip(self._conn.rollback)


def creator(url: str) -> Callable[[], Awaitable[Connection]]:
    """``async_creator`` for ``create_async_engine(url)``: a :class:`Connection` opened with
    the arguments SQLAlchemy's aiosqlite dialect would give (file name, check_same_thread)."""
    args: Sequence[Any]
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
    connector = functools.partial(sqlite3.connect, *args, **kwargs)

    async def connect() -> Connection:
        conn = Connection(connector, iter_chunk_size=64)
        conn._thread.daemon = True  # as SQLAlchemy does: a forgotten one never blocks exit
        await conn  # starts its thread, opens the file there
        return conn

    return connect
