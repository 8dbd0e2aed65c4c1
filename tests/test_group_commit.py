"""Group commit (store/_coalesce.py): store calls made at the same moment share one transaction
(on SQLite and PostgreSQL), and each caller still gets its own answer or its own refusal."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from imapscope.store import (
    AccountSpec,
    Fence,
    LeaseLostError,
    NotFoundError,
    Store,
)
from imapscope.store._coalesce import Coalescer
from imapscope.store._webhooks import CURSOR
from tests.conftest import Database

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _both_databases(database: Database) -> None:
    """Every test here runs on SQLite and on PostgreSQL."""


def spec(i: int) -> AccountSpec:
    return AccountSpec(
        email=f"u{i}@example.test", host="127.0.0.1", port=993, security="tls", username=f"u{i}"
    )


def commits(store: Store) -> list[int]:
    """A list that counts the store's commits from now on."""
    counted: list[int] = []
    event.listen(store._engine.sync_engine, "commit", lambda _conn: counted.append(1))
    return counted


async def leased(tmp_path: Path, n: int) -> tuple[Store, dict[int, int]]:
    store = await Store.open(tmp_path)
    for i in range(n):
        await store.add_account(spec(i), "pw-secret")
    held = await store.heartbeat("w1", host="h", pid=1, now=T0, ttl=30)
    return store, held


def test_state_writes_at_once_share_one_transaction_each_answered(tmp_path: Path) -> None:
    async def main() -> None:
        store, held = await leased(tmp_path, 12)
        try:
            fences: dict[int, Fence | None] = {a: Fence("w1", e) for a, e in held.items()}
            fences[11] = Fence("w1", held[11] - 1)  # an old epoch: another worker's now
            fences[12] = None  # unfenced (its lease goes with it)
            await store.remove_account(12)
            counted = commits(store)
            answers = await asyncio.gather(
                *(store.set_state(a, "syncing", fence=fences[a]) for a in range(1, 13)),
                store.set_state(1, "syncing", fence=fences[1]),  # again, in the same batch
                return_exceptions=True,
            )
            assert len(counted) == 1  # thirteen writes, one transaction
            assert answers[:10] == [True] * 10
            assert isinstance(answers[10], LeaseLostError)
            assert "no longer held by w1" in str(answers[10])
            assert isinstance(answers[11], NotFoundError)
            assert answers[12] is False  # already syncing: no change, no second event
            states = {a.id: a.state for a in await store.accounts()}
            assert states == {**dict.fromkeys(range(1, 11), "syncing"), 11: "connecting"}
            kinds = [(e.account_id, e.kind) for e in await store.events(0)]
            assert sorted(kinds) == [(a, "account.state") for a in range(1, 11)]
            # A schedule alone changes no state (False, no event), but is written.
            due = T0 + dt.timedelta(minutes=5)
            now_marked = await asyncio.gather(
                store.set_state(2, "syncing", next_attempt=due, fence=fences[2]),
                store.mark_synced(3, fence=fences[3]),
                store.mark_synced(11, fence=fences[11]),
                return_exceptions=True,
            )
            assert now_marked[0] is False
            assert now_marked[1] is None
            assert isinstance(now_marked[2], LeaseLostError)
            assert (await store.account(2)).next_attempt == due
            assert (await store.account(3)).last_sync is not None
            assert (await store.account(11)).last_sync is None
            assert len(counted) == 2
            assert len(await store.events(0)) == 10
        finally:
            await store.close()

    asyncio.run(main())


def test_folder_lists_and_reads_at_once_share_one_transaction(tmp_path: Path) -> None:
    async def main() -> None:
        store, held = await leased(tmp_path, 3)
        try:
            fences = {a: Fence("w1", e) for a, e in held.items()}
            await store.set_folders(1, ["INBOX", "Old"], fence=fences[1])
            counted = commits(store)
            answers = await asyncio.gather(
                store.set_folders(1, ["INBOX", "Sent", "Sent"], fence=fences[1]),
                store.set_folders(2, ["INBOX"], fence=fences[2]),
                store.set_folders(3, ["INBOX"], fence=Fence("w2", held[3])),
                return_exceptions=True,
            )
            assert len(counted) == 1
            assert answers[0] == (["Sent"], ["Old"])
            assert answers[1] == (["INBOX"], [])
            assert isinstance(answers[2], LeaseLostError)
            listed = await asyncio.gather(*(store.folders(a) for a in (1, 2, 3)))
            assert [[f.name for f in found] for found in listed] == [
                ["INBOX", "Sent"],
                ["INBOX"],
                [],
            ]
            read = await asyncio.gather(store.account(1), store.secret(2), store.account(99),
                                        return_exceptions=True)  # fmt: skip
            assert read[0].spec.email == "u0@example.test"  # type: ignore[union-attr]
            assert read[1] == "pw-secret"
            assert isinstance(read[2], NotFoundError)
            kinds = sorted((e.account_id, e.kind, e.data["folder"]) for e in await store.events(0))
            assert kinds == [
                (1, "folder.added", "INBOX"), (1, "folder.added", "Old"),
                (1, "folder.added", "Sent"), (1, "folder.removed", "Old"),
                (2, "folder.added", "INBOX"),
            ]  # fmt: skip
        finally:
            await store.close()

    asyncio.run(main())


def test_nobody_listening_costs_no_write_and_enabling_starts_from_now(tmp_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(tmp_path)
        try:
            account = await store.add_account(spec(0), "pw-secret")
            await store.add_event(account.id, "message.new", {"uid": 1})
            counted = commits(store)
            assert await store.fan_out(now=T0) is None  # no endpoint: nothing read or written
            assert counted == []
            hook = await store.add_webhook(
                "https://r.test/h", "https://r.test/h", "whsec_" + "A" * 32
            )
            await store.add_event(account.id, "message.new", {"uid": 2})
            assert await store.fan_out(now=T0) == 1
            await store.update_webhook(hook.id, enabled=False)
            await store.add_event(account.id, "message.new", {"uid": 3})  # nobody listens
            assert await store.fan_out(now=T0) is None
            await store.update_webhook(hook.id, enabled=True)
            await store.add_event(account.id, "message.new", {"uid": 4})
            assert await store.fan_out(now=T0) == 1
            sent = [d.payload["data"]["uid"] for d in await store.deliveries(hook.id)]
            assert sorted(sent) == [2, 4]
            newest = max(e.id for e in await store.events(0))
            async with store._session() as s:
                assert int(await store._setting(s, CURSOR) or 0) == newest
        finally:
            await store.close()

    asyncio.run(main())


def test_a_coalescer_answers_each_caller_and_leaves_out_the_cancelled() -> None:
    async def main() -> None:
        batches: list[list[int]] = []
        release = asyncio.Event()

        async def write(requests: Sequence[int]) -> list[Any]:
            batches.append(list(requests))
            await release.wait()
            return [ValueError(f"odd {r}") if r % 2 else r * 10 for r in requests]

        coalesce: Coalescer[int, int] = Coalescer(write)
        first = asyncio.ensure_future(coalesce(2))
        await asyncio.sleep(0)  # its batch is being written
        later = [asyncio.ensure_future(coalesce(r)) for r in (3, 4, 6)]
        await asyncio.sleep(0)
        later[2].cancel()  # stops waiting before its batch starts: left out
        release.set()
        assert await first == 20
        with pytest.raises(ValueError, match="odd 3"):
            await later[0]
        assert await later[1] == 40
        assert batches == [[2], [3, 4]]

        async def broken(requests: Sequence[int]) -> list[Any]:
            raise RuntimeError("the database went away")

        failing: Coalescer[int, int] = Coalescer(broken)
        outcomes = await asyncio.gather(failing(1), failing(2), return_exceptions=True)
        assert [str(o) for o in outcomes] == ["the database went away"] * 2

        async def short(requests: Sequence[int]) -> list[Any]:
            return [1]

        miscounted: Coalescer[int, int] = Coalescer(short)
        outcomes = await asyncio.gather(miscounted(1), miscounted(2), return_exceptions=True)
        assert all("1 answers for 2 requests" in str(o) for o in outcomes)

    asyncio.run(main())
