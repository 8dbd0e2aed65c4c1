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
    MessageMeta,
    NotFoundError,
    Store,
)
from imapscope.store._coalesce import Coalescer
from imapscope.store._webhooks import CURSOR
from tests.conftest import Database

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def both_databases(database: Database) -> None:
    """The test runs on SQLite and on PostgreSQL."""


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


@pytest.mark.usefixtures("both_databases")
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
            counted.clear()
            now_marked = await asyncio.gather(
                store.set_state(2, "syncing", next_attempt=due, fence=fences[2]),
                store.mark_synced(3, fence=fences[3]),
                store.mark_synced(11, fence=fences[11]),
                return_exceptions=True,
            )
            assert now_marked[0] is False
            assert now_marked[1] is None
            assert isinstance(now_marked[2], LeaseLostError)
            assert len(counted) == 1
            assert (await store.account(2)).next_attempt == due
            assert (await store.account(3)).last_sync is not None
            assert (await store.account(11)).last_sync is None
            assert len(await store.events(0)) == 10
            # A state written with "synced" (a sync round's end): both, in one write, and the
            # state change is its event; with no change of state, last_sync alone.
            counted.clear()
            assert await store.set_state(4, "idle", fence=fences[4], synced=True) is True
            assert await store.set_state(5, "syncing", fence=fences[5], synced=True) is False
            assert len(counted) == 2
            four, five = await store.account(4), await store.account(5)
            assert (four.state, five.state) == ("idle", "syncing")
            assert four.last_sync is not None
            assert five.last_sync is not None
            kinds = [(e.account_id, e.kind, e.data) for e in await store.events(0)][10:]
            assert kinds == [(4, "account.state", {"state": "idle"})]
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.usefixtures("both_databases")
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
            # Each answered with the account's folders as they are now.
            assert [f.name for f in answers[0]] == ["INBOX", "Sent"]  # type: ignore[union-attr]
            assert [f.name for f in answers[1]] == ["INBOX"]  # type: ignore[union-attr]
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


def meta(uid: int, *flags: str) -> MessageMeta:
    return MessageMeta(uid, flags, T0, 100, {"subject": f"m{uid}"})


@pytest.mark.usefixtures("both_databases")
def test_folder_syncs_at_once_share_one_transaction_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        store, held = await leased(tmp_path, 3)
        try:
            fences = {a: Fence("w1", e) for a, e in held.items()}
            for a in (1, 2, 3):
                await store.set_folders(a, ["INBOX", "Junk"], fence=fences[a])
            inbox, junk = (await store.folders(1))[0], (await store.folders(1))[1]
            other = (await store.folders(2))[0]
            gone = (await store.folders(3))[0]
            await store.apply_folder(inbox.id, uidvalidity=7, uidnext=4, fence=fences[1],
                                     new=[meta(1), meta(2), meta(3)])  # fmt: skip
            await store.set_folders(3, ["Junk"], fence=fences[3])  # removes folder `gone`
            counted = commits(store)
            answers = await asyncio.gather(
                # INBOX twice: the second lands after the first, in the same transaction.
                store.apply_folder(inbox.id, uidvalidity=7, uidnext=5, fence=fences[1],
                                   flags={1: ("\\Seen",)}, gone=[2], new=[meta(4)],
                                   events=[("message.new", {"folder": "INBOX", "uid": 4})]),
                store.apply_folder(inbox.id, uidvalidity=7, uidnext=6, highestmodseq=9,
                                   fence=fences[1], new=[meta(5)], complete=True,
                                   flags={4: ("\\Answered",)}),  # the first one's message
                # A new UIDVALIDITY: everything stored goes, then the new messages.
                store.apply_folder(junk.id, uidvalidity=8, uidnext=2, fence=fences[1],
                                   reset=True, new=[meta(1, "\\Flagged")]),
                store.apply_folder(other.id, uidvalidity=1, uidnext=2, fence=Fence("w9", 1),
                                   new=[meta(1)]),  # another worker's lease
                store.apply_folder(gone.id, uidvalidity=1, uidnext=2, fence=fences[3],
                                   new=[meta(1)]),  # removed meanwhile: nothing to write
                return_exceptions=True,
            )  # fmt: skip
            assert len(counted) == 1
            assert answers[:3] == [None, None, None]
            assert isinstance(answers[3], LeaseLostError)
            assert answers[4] is None
            assert await store.folder_known(inbox.id) == {
                1: ("\\Seen",),
                3: (),
                4: ("\\Answered",),
                5: (),
            }
            assert await store.folder_known(junk.id) == {1: ("\\Flagged",)}
            assert await store.folder_known(other.id) == {}
            after = {f.name: f for f in await store.folders(1)}
            assert (after["INBOX"].uidnext, after["INBOX"].highestmodseq) == (6, 9)
            assert after["INBOX"].complete
            assert (after["Junk"].uidvalidity, after["Junk"].complete) == (8, False)
            news = [e.data for e in await store.events(0) if e.kind == "message.new"]
            assert news == [{"folder": "INBOX", "uid": 4}]
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.usefixtures("both_databases")
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

        tried: list[list[int]] = []

        async def poisoned(requests: Sequence[int]) -> list[Any]:
            tried.append(list(requests))
            if 13 in requests:  # fails the whole transaction
                raise RuntimeError("the database refused 13")
            return [r * 10 for r in requests]

        # A failed batch is tried again one request at a time: the failure is 13's alone.
        failing: Coalescer[int, int] = Coalescer(poisoned)
        outcomes = await asyncio.gather(failing(1), failing(13), failing(2), return_exceptions=True)
        assert outcomes[0] == 10
        assert str(outcomes[1]) == "the database refused 13"
        assert outcomes[2] == 20
        assert tried == [[1, 13, 2], [1], [13], [2]]

        async def short(requests: Sequence[int]) -> list[Any]:
            return []

        miscounted: Coalescer[int, int] = Coalescer(short)
        outcomes = await asyncio.gather(miscounted(1), miscounted(2), return_exceptions=True)
        assert [str(o) for o in outcomes] == ["0 answers for 1 requests"] * 2

    asyncio.run(main())
