"""The store's SQLite connection (imapscope.store._sqlite) goes to aiosqlite's thread once per
statement and once per commit, never more: each trip costs about 75 us of CPU here, and stock
aiosqlite under SQLAlchemy made about four per statement (bench/sqlite_trips.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event

from imapscope.store import AccountSpec, MessageMeta, Store, StoreError


def test_one_trip_per_statement_and_per_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"trips": 0, "statements": 0, "commits": 0}
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counts["trips"] += 1
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)

    async def main() -> None:
        store = await Store.open(tmp_path)
        engine = store._engine.sync_engine

        def statement(*_: Any) -> None:
            counts["statements"] += 1

        def commit(*_: Any) -> None:
            counts["commits"] += 1

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)
        try:
            spec = AccountSpec(email="a@example.test", host="127.0.0.1", port=993,
                               security="tls", username="a")  # fmt: skip
            account = await store.add_account(spec, "pw-1")
            await store.set_folders(account.id, ["INBOX", "Sent"])
            (inbox, _sent) = await store.folders(account.id)
            counts.update(trips=0, statements=0, commits=0)
            # What an account's connect does, reads and writes.
            await store.account(account.id)
            await store.set_state(account.id, "syncing")
            await store.folder_known(inbox.id)
            new = [MessageMeta(uid, (), None, 10, {"subject": f"m{uid}"}) for uid in (1, 2, 3)]
            await store.apply_folder(inbox.id, uidvalidity=7, uidnext=4, new=new,
                                     events=[("folder.synced", {"folder": "INBOX"})])  # fmt: skip
            await store.set_state(account.id, "idle")
            assert counts["statements"] >= 8
            assert counts["statements"] <= counts["trips"]
            assert counts["trips"] <= counts["statements"] + counts["commits"], counts
            # A failed write is rolled back (one more trip), and the store goes on.
            with pytest.raises(StoreError, match="already exists"):
                await store.add_account(spec, "pw-2")
            assert (await store.account(account.id)).state == "idle"
            assert await store.message_count(account.id) == 3
        finally:
            await store.close()

    asyncio.run(main())
