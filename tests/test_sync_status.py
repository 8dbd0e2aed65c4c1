"""A sync asks each folder's STATUS first and selects only the folders that changed since their
last sync (the sandbox: a real server over real sockets, counting what it is asked); a folder
with nothing stored is read by one FETCH; a refused LIST fails the sync instead of being read
as "no folders"."""

from __future__ import annotations

import asyncio
import imaplib
from pathlib import Path
from typing import Any

import pytest

from imapscope.sandbox import FaultRule
from imapscope.store import Store
from imapscope.sync import AccountSync, Backoff, SyncOptions
from tests.conftest import PASSWORD, Sandbox
from tests.test_sync import (
    _state_is,
    _synced_after,
    dovecot_account,
    engine,
    events_of,
    spec,
    until,
)

pytestmark = pytest.mark.usefixtures("database")

COUNTED = 1000


def _flag(sandbox: Sandbox, folder: str, uid: str) -> None:
    with sandbox.client() as client:
        client.select(folder)
        client.uid("STORE", uid, "+FLAGS", r"(\Flagged)")


async def _full_sync(store: Store, sync: AccountSync) -> None:
    """Ask for a full sync and wait until it is done."""
    before = (await store.account(sync.account_id)).last_sync
    sync.sync_everything()
    await until("a full sync", lambda: _synced_after(store, sync.account_id, before))


@pytest.mark.parametrize(
    "hidden", [(), ("LIST-STATUS",), ("LIST-STATUS", "CONDSTORE")],
    ids=["list-status", "status", "no-condstore"],
)  # fmt: skip
def test_a_full_sync_selects_only_the_folders_that_changed(
    sandbox: Sandbox, tmp_path: Path, hidden: tuple[str, ...]
) -> None:
    """With LIST-STATUS the statuses come with the folder list; without it, from one pipelined
    STATUS per folder; without CONDSTORE nothing tells a flag change, so every folder is
    selected (and an unchanged empty one costs its SELECT alone)."""
    faults = sandbox.server.faults
    for capability in hidden:
        faults.add(FaultRule("hide-capability", capability=capability))
    # A rule that waits 0 ms counts each EXAMINE of its folder (its count goes down).
    examined = {
        name: faults.add(FaultRule("delay", command="EXAMINE", mailbox=name, count=COUNTED))
        for name in ("Archive", "Drafts")
    }  # fmt: skip
    statuses = faults.add(FaultRule("delay", command="STATUS", count=COUNTED))
    listed = faults.add(FaultRule("delay", command="LIST", count=COUNTED))

    def times(rule: FaultRule) -> int:
        return COUNTED - (rule.count or 0)

    condstore = "CONDSTORE" not in hidden
    options = SyncOptions(ca_file=str(sandbox.ca_file))

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            folders = {f.name: f for f in await store.folders(sync.account_id)}
            drafts, archive = folders["Drafts"], folders["Archive"]
            # Never synced and empty: stored as synced without a SELECT when a STATUS said so.
            assert times(examined["Drafts"]) == (0 if condstore else 1)
            assert (drafts.complete, drafts.messages) == (True, 0)
            assert drafts.uidvalidity is not None
            assert times(examined["Archive"]) == 1
            assert (archive.complete, archive.messages) == (True, 5)
            synced = [e.data for e in await events_of(store, "folder.synced", 0)]
            assert {"folder": "Drafts", "messages": 0} in synced
            assert {"folder": "Archive", "messages": 5} in synced
            # STATUS commands: none with LIST-STATUS, nor without CONDSTORE (no use).
            assert times(statuses) == (len(folders) - 1 if hidden == ("LIST-STATUS",) else 0)
            cursor = (await store.events(limit=1000))[-1].id

            # Nothing changed: no folder besides INBOX is selected, nothing is written.
            await _full_sync(store, sync)
            assert times(examined["Archive"]) == (1 if condstore else 2)
            assert times(examined["Drafts"]) == (0 if condstore else 2)
            after = await store.events(after=cursor, limit=1000)
            assert [e.kind for e in after if e.kind != "account.state"] == []
            assert times(listed) == 2

            # Another client flags a message in Archive: Archive alone is selected again.
            await asyncio.to_thread(_flag, sandbox, "Archive", "1")
            await _full_sync(store, sync)
            flagged = {
                (e.data["folder"], e.data["uid"]): e.data["flags"]
                for e in await events_of(store, "message.flags", cursor)
            }  # fmt: skip
            assert "\\Flagged" in flagged[("Archive", 1)]
            assert {folder for folder, _ in flagged} == {"Archive"}
            assert times(examined["Archive"]) == (2 if condstore else 3)
            assert times(examined["Drafts"]) == (0 if condstore else 3)
            # ... and is unchanged at the next.
            await _full_sync(store, sync)
            assert times(examined["Archive"]) == (2 if condstore else 4)

    asyncio.run(main())


def _server_uids(sandbox: Sandbox, folder: str) -> list[int]:
    with sandbox.client() as client:
        client.select(folder, readonly=True)
        _, data = client.uid("SEARCH", "ALL")
    return sorted(int(u) for u in data[0].split())


def _append(sandbox: Sandbox, folder: str, subject: str) -> None:
    with sandbox.client() as client:
        client.append(folder, None, None, f"Subject: {subject}\r\n\r\nhi\r\n".encode())


@pytest.mark.parametrize("batch", [2000, 2], ids=["one-batch", "batches"])
def test_a_folder_with_nothing_stored_that_fits_one_batch_is_read_without_a_search(
    sandbox: Sandbox, tmp_path: Path, batch: int
) -> None:
    """Nothing stored and at most one batch on the server: one ``UID FETCH 1:*`` reads it all
    (no SEARCH asking which UIDs are new: all are). A bigger folder is asked by SEARCH and read
    in batches; so is a folder with messages stored. An empty folder that gets mail later is
    read the first way, and its mail is ``message.new``."""
    faults = sandbox.server.faults
    counted = {
        (verb, name): faults.add(FaultRule("delay", command=verb, mailbox=name, count=COUNTED))
        for verb in ("SEARCH", "FETCH") for name in ("INBOX", "Archive", "Drafts")
    }  # fmt: skip

    def times(verb: str, name: str) -> int:
        return COUNTED - (counted[verb, name].count or 0)

    options = SyncOptions(ca_file=str(sandbox.ca_file), batch=batch)

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            if batch == 2:  # 5 messages: SEARCH, then 3 FETCHes
                assert (times("SEARCH", "Archive"), times("FETCH", "Archive")) == (1, 3)
            else:
                assert (times("SEARCH", "Archive"), times("FETCH", "Archive")) == (0, 1)
                assert (times("SEARCH", "INBOX"), times("FETCH", "INBOX")) == (0, 1)
            folders = {f.name: f for f in await store.folders(sync.account_id)}
            for name in ("INBOX", "Archive"):  # (this client's SEARCH is counted too)
                held = await asyncio.to_thread(_server_uids, sandbox, name)
                assert sorted(await store.folder_known(folders[name].id)) == held
                assert folders[name].messages == len(held)
            assert len(await store.folder_known(folders["Archive"].id)) == 5
            assert await events_of(store, "message.new", 0) == []
            cursor = (await store.events(limit=1000))[-1].id

            # Mail in INBOX (messages stored): asked by SEARCH. In the empty Drafts: 1:*.
            searched = times("SEARCH", "INBOX")
            await asyncio.to_thread(_append, sandbox, "INBOX", "to inbox")
            await asyncio.to_thread(_append, sandbox, "Drafts", "to drafts")
            await _full_sync(store, sync)
            new = await events_of(store, "message.new", cursor)
            assert sorted(e.data["folder"] for e in new) == ["Drafts", "INBOX"]
            assert times("SEARCH", "INBOX") == searched + 1
            assert (times("SEARCH", "Drafts"), times("FETCH", "Drafts")) == (0, 1)
            drafts = next(f for f in await store.folders(sync.account_id) if f.name == "Drafts")
            assert list(await store.folder_known(drafts.id)) == await asyncio.to_thread(
                _server_uids, sandbox, "Drafts"
            )

    asyncio.run(main())


def _select(sandbox: Sandbox, folder: str) -> None:
    """Another client opens the folder read-write: it takes the folder's \\Recent flags."""
    with sandbox.client() as client:
        client.select(folder)


@pytest.mark.parametrize("hidden", [(), ("CONDSTORE",)], ids=["condstore", "no-condstore"])
def test_recent_is_not_stored_and_another_client_taking_it_changes_nothing(
    sandbox: Sandbox, tmp_path: Path, hidden: tuple[str, ...]
) -> None:
    """\\Recent belongs to the one session that first selects a folder after the mail came;
    the sync, which only examines, is shown it. Stored, another client's SELECT (taking it)
    would be a ``message.flags`` event for every such message (without CONDSTORE, which reads
    every flag again), or it would stay stored for ever (with CONDSTORE: \\Recent changes no
    MODSEQ)."""
    for capability in hidden:
        sandbox.server.faults.add(FaultRule("hide-capability", capability=capability))
    options = SyncOptions(ca_file=str(sandbox.ca_file))

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            for folder in await store.folders(sync.account_id):
                flags = (await store.folder_known(folder.id)).values()
                assert not [f for f in flags if "\\Recent" in f], folder.name
            cursor = (await store.events(limit=1000))[-1].id
            await asyncio.to_thread(_select, sandbox, "Archive")
            await _full_sync(store, sync)
            assert await events_of(store, "message.flags", cursor) == []

    asyncio.run(main())


def test_a_refused_list_fails_the_sync_and_drops_no_folder(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A LIST answered NO is an error named like any refused mailbox command, and a retry;
    read as an empty list it would drop every folder and its messages (folder.removed)."""
    options = SyncOptions(ca_file=str(sandbox.ca_file), backoff=Backoff(first=0.05, cap=0.2))

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            before = {f.name: f.id for f in await store.folders(sync.account_id)}
            count = await store.message_count(sync.account_id)
            cursor = (await store.events(limit=1000))[-1].id
            sandbox.server.faults.add(
                FaultRule("no", command="LIST", code="SERVERBUG", text="Internal error", count=1)
            )
            await _full_sync(store, sync)  # the failed one, then the retry after a backoff
            errors = await store.errors(sync.account_id)
            assert [(e.code, e.step) for e in errors] == [("MAILSTORE_UNAVAILABLE", "list")]
            assert "Internal error" in errors[0].server_text
            assert {f.name: f.id for f in await store.folders(sync.account_id)} == before
            assert await store.message_count(sync.account_id) == count
            kinds = {e.kind for e in await store.events(after=cursor, limit=1000)}
            assert not kinds & {"folder.removed", "folder.added", "folder.synced"}

    asyncio.run(main())


def test_against_dovecot_only_the_folders_that_changed_are_examined(
    start_dovecot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same against Dovecot (LIST-STATUS and CONDSTORE): its STATUS says what its SELECT
    says, and a flag changed in another folder moves its HIGHESTMODSEQ, so the change is
    stored. The engine's commands are counted on its own connection."""
    from imapscope.sync import _engine  # noqa: PLC0415

    dovecot = start_dovecot(messages=5)
    user, password, account = dovecot_account(dovecot, "tls")
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    client.login(user, password)
    for name in ("Archive", "Empty"):
        client.create(name)
    for n in range(3):
        client.append("Archive", None, None, f"Subject: kept {n}\r\n\r\nhi\r\n".encode())
    client.logout()

    sent: list[tuple[str, str | None]] = []
    connect = _engine.connect

    async def counting(*args: Any) -> Any:
        conn = await connect(*args)
        send = conn.codec.send

        def tap(command: Any) -> str:
            sent.append((command.verb(), getattr(command, "mailbox", None)))
            return str(send(command))

        conn.codec.send = tap
        return conn

    monkeypatch.setattr(_engine, "connect", counting)

    def examined(name: str) -> int:
        return sent.count(("EXAMINE", name))

    def flag() -> None:
        other = imaplib.IMAP4(dovecot.host, dovecot.port)
        other.login(user, password)
        other.select("Archive")
        other.uid("STORE", "2", "+FLAGS", r"(\Flagged)")
        other.logout()

    options = SyncOptions(ca_file=str(dovecot.ca_file))

    async def main() -> None:
        async with engine(tmp_path, account, password, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            assert (examined("Empty"), examined("Archive")) == (0, 1)
            assert not [v for v, _ in sent if v == "STATUS"]  # it came with the LIST
            cursor = (await store.events(limit=1000))[-1].id
            await _full_sync(store, sync)
            assert (examined("Empty"), examined("Archive")) == (0, 1)
            after = await store.events(after=cursor, limit=1000)
            assert [e.kind for e in after if e.kind != "account.state"] == []

            await asyncio.to_thread(flag)
            await _full_sync(store, sync)
            assert (examined("Empty"), examined("Archive")) == (0, 2)
            flagged = await events_of(store, "message.flags", cursor)
            assert [(e.data["folder"], e.data["uid"]) for e in flagged] == [("Archive", 2)]
            archive = next(f for f in await store.folders(sync.account_id) if f.name == "Archive")
            assert archive.messages == 3
            assert "\\Flagged" in (await store.folder_known(archive.id))[2]

    asyncio.run(main())
