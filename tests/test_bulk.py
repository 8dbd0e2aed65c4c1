"""store/_bulk.py: many rows through one compiled statement write what SQLAlchemy's own
executemany writes (on SQLite and PostgreSQL), and a column whose default it would fill in
cannot be left out unnoticed."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg

from imapscope.store import AccountSpec, Store
from imapscope.store._bulk import COPY_FROM, Bulk
from imapscope.store._log import INSERT_EVENTS
from imapscope.store._mail import _INSERT_MESSAGES
from imapscope.store._models import Event, Message
from tests.conftest import Database

EVENTS = cast(Table, Event.__table__)
MESSAGES = cast(Table, Message.__table__)
AT = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


@pytest.mark.usefixtures("database")
def test_rows_written_in_bulk_equal_those_sqlalchemy_writes(tmp_path: Path) -> None:
    """The same events (a time in +0200, JSON data) and the same flag update (JSON flags,
    a boolean), once through :class:`Bulk`, once through SQLAlchemy's executemany: what is
    read back is the same."""
    spec = AccountSpec(email="a@example.test", host="127.0.0.1", port=993, security="tls",
                       username="a")  # fmt: skip
    set_flags = update(MESSAGES).where(
        MESSAGES.c.folder_id == bindparam("b_folder"), MESSAGES.c.uid == bindparam("b_uid")
    ).values(flags=bindparam("b_flags"), seen=bindparam("b_seen"))  # fmt: skip
    bulk_flags = Bulk(set_flags, ("b_folder", "b_uid", "b_flags", "b_seen"))
    data = {"folder": "Été", "n": [1, None], "deep": {"x": "y"}}

    async def main() -> None:
        store = await Store.open(tmp_path)
        try:
            account = await store.add_account(spec, "pw")
            [folder] = await store.set_folders(account.id, ["INBOX"])
            async with store._transaction() as s:
                await INSERT_EVENTS.run(s, [(account.id, AT, "bulk", data)])
                await s.execute(
                    insert(EVENTS), [{"account_id": account.id, "at": AT, "kind": "orm",
                                      "data": data}],
                )  # fmt: skip
                rows: list[dict[str, Any]] = [
                    {"folder_id": folder.id, "uid": u, "flags": [], "seen": False} for u in (1, 2)
                ]
                await s.execute(insert(MESSAGES), rows)
                await bulk_flags.run(s, [(folder.id, 1, ["\\Seen", "$Label"], True)])
                await s.execute(
                    set_flags,
                    [
                        {
                            "b_folder": folder.id,
                            "b_uid": 2,
                            "b_flags": ["\\Seen", "$Label"],
                            "b_seen": True,
                        }
                    ],
                )
            async with store._transaction() as s:
                events = {
                    kind: (account_id, at, got)
                    for account_id, at, kind, got in await s.execute(
                        select(EVENTS.c.account_id, EVENTS.c.at, EVENTS.c.kind, EVENTS.c.data)
                        .where(EVENTS.c.kind.in_(["bulk", "orm"]))
                    )
                }  # fmt: skip
                flags = list(await s.execute(
                    select(MESSAGES.c.flags, MESSAGES.c.seen).order_by(MESSAGES.c.uid)
                ))  # fmt: skip
        finally:
            await store.close()
        assert events["bulk"] == events["orm"]
        assert events["bulk"][2] == data
        assert events["bulk"][1] == AT  # the same moment (stored in UTC, read back aware)
        assert [tuple(r) for r in flags] == [(["\\Seen", "$Label"], True)] * 2

    asyncio.run(main())


def test_a_column_with_a_default_cannot_be_left_out() -> None:
    """SQLAlchemy fills in a column's Python default (``at``: now) by itself; a bulk INSERT
    that names fewer columns is refused when compiled, not written without them."""
    partial = Bulk.insert(EVENTS, ("account_id", "kind"))
    with pytest.raises(TypeError, match="'at'"):
        partial._for(sqlite.dialect())


def test_a_bulk_insert_asks_postgresql_for_no_returned_ids() -> None:
    """A single INSERT compiled for PostgreSQL returns the new row's id; many rows do not need
    it (100,000 ids a first sync would read back for nothing)."""
    columns = ("folder_id", "uid", "flags", "seen", "envelope", "subject", "sender")
    bulk = Bulk.insert(MESSAGES, columns)
    dialect = asyncpg.dialect()  # type: ignore[no-untyped-call]
    sql = bulk._for(dialect)[0]
    assert sql.startswith("INSERT INTO messages")
    assert "RETURNING" not in sql
    assert "RETURNING messages.id" in str(bulk.statement.compile(dialect=dialect))  # one row


@pytest.mark.usefixtures("database")
def test_a_big_insert_goes_as_copy_on_postgresql_inside_the_transaction(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From COPY_FROM rows a PostgreSQL INSERT is a COPY (SQLite: the statement, as always).
    Sent first in a transaction it is still part of it: rolled back, nothing stays; committed,
    the rows read back as SQLAlchemy reads them."""
    copies: list[int] = []
    if database.kind == "postgresql":
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415

        copy = asyncpg.Connection.copy_records_to_table

        async def counted(self: Any, table: str, **kw: Any) -> Any:
            copies.append(len(kw["records"]))
            return await copy(self, table, **kw)

        monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counted)
    spec = AccountSpec(email="a@example.test", host="127.0.0.1", port=993, security="tls",
                       username="a")  # fmt: skip
    envelope = {"subject": "Été", "from": ["a@x.test"], "to": [], "n": None}

    def rows(folder_id: int) -> list[tuple[Any, ...]]:
        return [(folder_id, uid, ["\\Seen"], True, AT, 1000 + uid, envelope, "Été", "a@x.test")
                for uid in range(1, COPY_FROM + 1)]  # fmt: skip

    async def rolled_back(store: Store, rows: list[tuple[Any, ...]]) -> None:
        async with store._transaction() as s:
            await _INSERT_MESSAGES.run(s, rows)  # the transaction's first statement
            raise RuntimeError("roll back")

    async def main() -> list[Any]:
        store = await Store.open(tmp_path)
        try:
            account = await store.add_account(spec, "pw")
            [folder] = await store.set_folders(account.id, ["INBOX"])
            with pytest.raises(RuntimeError, match="roll back"):
                await rolled_back(store, rows(folder.id))
            assert await store.message_count(account.id) == 0
            async with store._transaction() as s:
                await _INSERT_MESSAGES.run(s, rows(folder.id))
            _, stored = await store.messages(account.id, limit=1)
            return [await store.message_count(account.id), stored[0]]
        finally:
            await store.close()

    count, newest = asyncio.run(main())
    assert count == COPY_FROM
    assert copies == ([COPY_FROM] * 2 if database.kind == "postgresql" else [])
    assert (newest.uid, newest.flags, newest.size, newest.envelope) == (
        COPY_FROM,
        ("\\Seen",),
        1000 + COPY_FROM,
        envelope,
    )
    assert newest.internaldate == AT
