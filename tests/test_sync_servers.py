"""The sync engine against Cyrus and Courier-IMAP: the first sync stores exactly the folders and
UIDs the server lists, and a full sync after it finds nothing to change (Cyrus: the rig's, shared
by the session, read only here). Their LIST, STATUS, SELECT and FETCH answers are theirs, not
the sandbox's or Dovecot's; Courier's UIDVALIDITY has a quirk of its own."""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from imapscope.store import AccountSpec, Store
from imapscope.sync import AccountSync, SyncOptions
from tests.servers.courier import start_courier
from tests.servers.rig import RunningServer, TestCA
from tests.test_sync import _state_is, engine, until
from tests.test_sync_status import _full_sync

_LISTED = re.compile(rb'\((?P<attrs>[^)]*)\) (?:"(?:\\.|[^"])"|NIL) (?P<name>.+)')


def _held(server: RunningServer, user: str, password: str) -> dict[str, list[int]]:
    """Each selectable folder's UIDs, as another client (imaplib) reads them."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = imaplib.IMAP4_SSL(server.host, server.tls_port, ssl_context=context)
    client.login(user, password)
    held: dict[str, list[int]] = {}
    _, listed = client.list()
    for line in listed:
        assert isinstance(line, bytes), line  # no literal names in the rig's mailboxes
        match = _LISTED.fullmatch(line)
        assert match is not None, line
        if b"\\noselect" in match["attrs"].lower() or b"\\nonexistent" in match["attrs"].lower():
            continue
        name = match["name"].decode()
        name = name[1:-1] if name.startswith('"') else name
        client.select(f'"{name}"', readonly=True)
        _, found = client.uid("SEARCH", "ALL")
        held["INBOX" if name.upper() == "INBOX" else name] = sorted(
            int(u) for u in found[0].split()
        )
    client.logout()
    return held


def _account(server: RunningServer) -> tuple[str, AccountSpec]:
    user, password = next(iter(server.users.items()))
    return password, AccountSpec(
        email=f"{user}@example.test", host=server.host, port=server.tls_port, security="tls",
        username=user, poll_interval=60,
    )  # fmt: skip


async def _stored(store: Store, sync: AccountSync) -> dict[str, list[int]]:
    folders = await store.folders(sync.account_id)
    return {f.name: sorted(await store.folder_known(f.id)) for f in folders}


async def _written_by_a_full_sync(store: Store, sync: AccountSync) -> list[tuple[str, Any]]:
    cursor = (await store.events(limit=1000))[-1].id
    await _full_sync(store, sync)
    after = await store.events(after=cursor, limit=1000)
    return [(e.kind, e.data) for e in after if e.kind != "account.state"]


@pytest.mark.usefixtures("database")
def test_the_engine_stores_what_cyrus_holds(cyrus: RunningServer, tmp_path: Path) -> None:
    password, account = _account(cyrus)
    held = _held(cyrus, account.username or "", password)
    assert held["INBOX"], "the rig's Cyrus seeds INBOX"
    options = SyncOptions(ca_file=str(cyrus.ca_file))

    async def main() -> None:
        async with engine(tmp_path, account, password, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"), timeout=30)
            assert await _stored(store, sync) == held
            folders = await store.folders(sync.account_id)
            assert all(f.complete and f.messages == len(held[f.name]) for f in folders)
            # Nothing changed on the server: nothing to write.
            assert await _written_by_a_full_sync(store, sync) == []
            assert await store.errors(sync.account_id) == []

    asyncio.run(main())


def _uidvalidity(server: RunningServer, user: str, password: str) -> bytes:
    client = imaplib.IMAP4(server.host, server.port)
    client.login(user, password)
    client.select("INBOX", readonly=True)
    _, [said] = client.response("UIDVALIDITY")
    client.logout()
    assert isinstance(said, bytes)
    return said


def test_courier_s_made_up_uidvalidity_is_settled_by_one_select(
    test_ca: TestCA, tmp_path: Path
) -> None:
    """Courier-IMAP makes up INBOX's UIDVALIDITY (the time, in seconds) at each EXAMINE until a
    client SELECTs it read-write: examined alone, it would be dropped and read afresh at every
    sync. The engine selects a folder whose UIDVALIDITY changed read-write once: one
    ``folder.reset``, then nothing (the \\Recent flags that SELECT takes are not stored
    anyway). A Courier of its own, never selected; SQLite alone: the store plays no part. The
    waits are Courier's clock: a second must pass."""
    server = start_courier(test_ca, messages=5)
    try:
        password, account = _account(server)
        user = account.username or ""
        first = _uidvalidity(server, user, password)
        time.sleep(1.1)
        assert _uidvalidity(server, user, password) != first, "Courier keeps it now: see above"
        held = _held(server, user, password)
        options = SyncOptions(ca_file=str(server.ca_file))

        async def main() -> None:
            async with engine(tmp_path, account, password, options) as (store, sync):
                await until("idle", lambda: _state_is(store, sync, "idle"), timeout=30)
                assert await _stored(store, sync) == held
                await asyncio.sleep(1.1)
                written = await _written_by_a_full_sync(store, sync)
                assert ("folder.reset", {"folder": "INBOX"}) in written
                assert await _stored(store, sync) == held
                await asyncio.sleep(1.1)
                assert await _written_by_a_full_sync(store, sync) == []
                assert await _stored(store, sync) == held

        asyncio.run(main())
    finally:
        server.stop()
