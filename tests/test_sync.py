"""The sync engine against the sandbox (a real IMAP server over real sockets): initial sync,
IDLE push of new mail, flag changes and expunges by another client, and failure states."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import imaplib
import logging
import random
import smtplib
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from imapscope.imap import (
    Address,
    Envelope,
    Exists,
    FetchResponse,
    Greeting,
    Response,
    ResponseCode,
    SearchResponse,
    TaggedResponse,
    UntaggedStatus,
    raw_envelope,
)
from imapscope.imap._sequence import expand
from imapscope.store import AccountSpec, EventView, Store
from imapscope.store._models import Account
from imapscope.sync import AccountSync, Backoff, SyncOptions, SyncService, health
from tests.conftest import PASSWORD, Sandbox
from tests.scripted import ok, serve
from tests.test_one_path import login_only

# Every test here runs on SQLite and on PostgreSQL (the ``database`` fixture).
pytestmark = pytest.mark.usefixtures("database")


def spec(port: int, security: str = "starttls") -> AccountSpec:
    return AccountSpec(
        email="alice@example.test",
        host="127.0.0.1",
        port=port,
        security=security,
        username="alice",
        poll_interval=60,
    )


@contextlib.asynccontextmanager
async def engine(
    tmp_path: Path, account: AccountSpec, password: str, options: SyncOptions
) -> AsyncIterator[tuple[Store, AccountSync]]:
    store = await Store.open(tmp_path / "data")
    added = await store.add_account(account, password)
    sync = AccountSync(store, added.id, options)
    task = asyncio.create_task(sync.run())
    try:
        yield store, sync
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)  # an engine that ignores cancellation fails here
        await store.close()


async def until(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def events_of(store: Store, kind: str, after: int) -> list[EventView]:
    return [e for e in await store.events(after=after, limit=1000) if e.kind == kind]


def imap(sandbox: Sandbox) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", sandbox.server.port)
    client.login("alice", PASSWORD)
    client.select("INBOX")
    return client


def test_sync_push_flags_and_expunge(sandbox: Sandbox, tmp_path: Path) -> None:
    options = SyncOptions(ca_file=str(sandbox.ca_file))

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            inbox = next(f for f in await store.folders(sync.account_id) if f.name == "INBOX")
            assert len(await store.folder_known(inbox.id)) == 12
            names = {f.name for f in await store.folders(sync.account_id)}
            assert {"INBOX", "Sent", "Archive"} <= names
            cursor = (await store.events(limit=1000))[-1].id

            # New mail over SMTP reaches the store through IDLE within 2 s.
            message = EmailMessage()
            message["From"], message["To"] = "bob@example.test", "alice@example.test"
            message["Subject"] = "pushed by SMTP"
            message.set_content("hello")
            port = sandbox.server.smtp_port or 0
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            await asyncio.to_thread(_send, port, message)
            new = await until("message.new", lambda: events_of(store, "message.new", cursor), 2.0)
            assert loop.time() - sent_at < 2.0
            assert [e.data["subject"] for e in new] == ["pushed by SMTP"]
            assert new[0].data["uid"] == 13

            # Another client flags one message and expunges another.
            client = await asyncio.to_thread(imap, sandbox)
            await asyncio.to_thread(client.uid, "STORE", "1", "+FLAGS", r"(\Flagged)")
            flagged = await until("flags", lambda: events_of(store, "message.flags", cursor))
            assert flagged[0].data["uid"] == 1
            assert "\\Flagged" in flagged[0].data["flags"]
            await asyncio.to_thread(client.uid, "STORE", "2", "+FLAGS", r"(\Deleted)")
            await asyncio.to_thread(client.expunge)
            gone = await until("expunge", lambda: events_of(store, "message.expunged", cursor))
            assert [e.data["uid"] for e in gone] == [2]
            await asyncio.to_thread(client.logout)
            known = await store.folder_known(inbox.id)
            assert 2 not in known
            assert "\\Flagged" in known[1]
            assert 13 in known
            # A delivery to INBOX syncs INBOX alone: the other folders wait for the poll
            # interval (60 s here), or a full sync asked for. A folder deleted and re-created
            # meanwhile (new UIDVALIDITY) is then synced afresh.
            archive = next(f for f in await store.folders(sync.account_id) if f.name == "Archive")
            await asyncio.to_thread(_recreate, sandbox, "Archive")
            await asyncio.to_thread(_send, port, message)
            await until("2nd message", lambda: _count_at_least(store, "message.new", cursor, 2))
            assert await events_of(store, "folder.reset", cursor) == []
            sync.sync_everything()
            await until("folder.reset", lambda: events_of(store, "folder.reset", cursor))
            await until("2nd message", lambda: _count_at_least(store, "message.new", cursor, 2))
            again = next(f for f in await store.folders(sync.account_id) if f.id == archive.id)
            assert again.uidvalidity != archive.uidvalidity
            assert await store.folder_known(archive.id) == {}
            # Each change came once: no duplicate events.
            assert len(await events_of(store, "message.new", cursor)) == 2
            assert sandbox.logins == ["alice"] * 3  # the engine once (no reconnect), imaplib twice

    asyncio.run(main())


def _recreate(sandbox: Sandbox, name: str) -> None:
    client = imap(sandbox)
    client.delete(name)
    client.create(name)
    client.logout()


def _send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.send_message(message)


async def _state_is(store: Store, sync: AccountSync, state: str) -> bool:
    return (await store.account(sync.account_id)).state == state


def test_wrong_password_stops_retrying_in_auth_error(sandbox: Sandbox, tmp_path: Path) -> None:
    options = SyncOptions(
        ca_file=str(sandbox.ca_file), backoff=Backoff(first=0.01, cap=0.05), max_auth_failures=3
    )
    wrong = "wrong-password-123"

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), wrong, options) as (store, sync):
            await until("3 errors", lambda: _errors_at_least(store, sync, 3))
            await asyncio.sleep(0.5)  # ten times the backoff cap: a retry would show by now
            assert sandbox.logins == ["alice"] * 3
            account = await store.account(sync.account_id)
            assert account.state == "auth_error"
            errors = await store.errors(sync.account_id)
            assert [e.code for e in errors] == ["AUTH_FAILED"] * 3
            assert errors[0].id > errors[-1].id  # newest first
            assert errors[0].state == "auth_error"
            assert errors[0].server_text.startswith("NO [AUTHENTICATIONFAILED]")
            for e in errors:
                assert wrong not in e.message + e.server_text
            # Waking it (what an edit or resume does) tries again, once.
            sync.wake()
            await until("4th login", lambda: _logins_at_least(sandbox, 4))

    asyncio.run(main())


async def _count_at_least(store: Store, kind: str, cursor: int, n: int) -> bool:
    return len(await events_of(store, kind, cursor)) >= n


async def _errors_at_least(store: Store, sync: AccountSync, n: int) -> bool:
    return await store.count_errors(sync.account_id) >= n


async def _logins_at_least(sandbox: Sandbox, n: int) -> bool:
    return len(sandbox.logins) >= n


def test_refused_port_is_connect_error_and_retried_with_backoff(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        options = SyncOptions(backoff=Backoff(first=0.01, cap=0.02))

        async def main() -> None:
            async with engine(tmp_path, spec(port), PASSWORD, options) as (store, sync):
                await until("2 errors", lambda: _errors_at_least(store, sync, 2))
                errors = await store.errors(sync.account_id)
                assert {e.code for e in errors} == {"TCP_REFUSED"}
                assert {e.state for e in errors} == {"connect_error"}
                events = await store.events(limit=1000)
                states = [e.data["state"] for e in events if e.kind == "account.state"]
                # New accounts start as connecting; retries keep the failure's name (no flicker).
                assert states == ["connect_error"]

        asyncio.run(main())


def test_next_attempt_is_known_while_waiting(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        options = SyncOptions(backoff=Backoff(first=30, cap=30))

        async def main() -> None:
            async with engine(tmp_path, spec(s.getsockname()[1]), PASSWORD, options) as (
                store, sync,
            ):  # fmt: skip
                await until("1 error", lambda: _errors_at_least(store, sync, 1))
                # In the store, so every worker's API and UI (and `accounts show`) can say it.
                await until("scheduled", lambda: _scheduled(store, sync.account_id))
                account = await store.account(sync.account_id)
                assert account.next_attempt is not None
                wait = (account.next_attempt - dt.datetime.now(dt.UTC)).total_seconds()
                assert 10 < wait <= 30  # full jitter over [cap/2, cap]
                assert account.halted is None
                assert account.state == "connect_error"

        asyncio.run(main())


async def _true(value: bool) -> bool:
    return value


async def _scheduled(store: Store, account_id: int) -> bool:
    return (await store.account(account_id)).next_attempt is not None


def test_backoff_is_capped_exponential_with_jitter() -> None:
    b = Backoff(first=1.0, cap=30.0)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(30.0, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 30.0


def dovecot_account(dovecot: Any, security: str) -> tuple[str, str, AccountSpec]:
    """The rig Dovecot's first user, and an account for it."""
    user, password = next(iter(dovecot.users.items()))
    port = dovecot.tls_port if security == "tls" else dovecot.port
    account = AccountSpec(
        email=f"{user}@example.test", host=dovecot.host, port=port, security=security,
        username=user, poll_interval=60,
    )  # fmt: skip
    return user, password, account


def test_against_dovecot_initial_sync_and_idle_push(start_dovecot: Any, tmp_path: Path) -> None:
    dovecot = start_dovecot(messages=30)
    user, password, account = dovecot_account(dovecot, "tls")
    options = SyncOptions(ca_file=str(dovecot.ca_file))

    def append() -> None:
        client = imaplib.IMAP4(dovecot.host, dovecot.port)
        client.login(user, password)
        raw = b"From: bob@example.test\r\nSubject: appended\r\n\r\nhi\r\n"
        client.append("INBOX", None, None, raw)
        client.logout()

    async def main() -> None:
        async with engine(tmp_path, account, password, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            inbox = next(f for f in await store.folders(sync.account_id) if f.name == "INBOX")
            assert len(await store.folder_known(inbox.id)) == 30
            assert inbox.uidvalidity is not None
            cursor = (await store.events(limit=1000))[-1].id
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.to_thread(append)
            new = await until("message.new", lambda: events_of(store, "message.new", cursor), 2.0)
            assert loop.time() - started < 2.0
            assert [e.data["subject"] for e in new] == ["appended"]

    asyncio.run(main())


def test_against_dovecot_condstore_batches_changes_and_restart(
    start_dovecot: Any, tmp_path: Path
) -> None:
    """Initial sync in batches, CONDSTORE flag and expunge sync, and a server restart that leads
    to a reconnection with no duplicate events."""
    dovecot = start_dovecot(messages=30)
    user, password, account = dovecot_account(dovecot, "starttls")
    options = SyncOptions(
        ca_file=str(dovecot.ca_file), batch=7, backoff=Backoff(first=0.05, cap=0.2)
    )

    def other_client(*commands: tuple[str, ...]) -> None:
        client = imaplib.IMAP4(dovecot.host, dovecot.port)
        client.login(user, password)
        client.select("INBOX")
        for command in commands:
            client.uid(*command)
        client.expunge()
        client.logout()

    async def main() -> None:
        async with engine(tmp_path, account, password, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            inbox = next(f for f in await store.folders(sync.account_id) if f.name == "INBOX")
            assert inbox.highestmodseq is not None  # Dovecot offers CONDSTORE: it was used
            # The first sync (5 batches of 7) stored every message without an event per message:
            # one folder.synced with the count.
            assert await events_of(store, "message.new", 0) == []
            synced_events = await events_of(store, "folder.synced", 0)
            assert [e.data for e in synced_events if e.data["folder"] == "INBOX"] == [
                {"folder": "INBOX", "messages": 30}
            ]
            assert len(await store.folder_known(inbox.id)) == 30
            assert inbox.complete
            cursor = (await store.events(limit=1000))[-1].id

            await asyncio.to_thread(
                other_client, ("STORE", "3", "+FLAGS", r"(\Flagged)"),
                ("STORE", "4", "+FLAGS", r"(\Deleted)"),
            )  # fmt: skip
            gone = await until("expunge", lambda: events_of(store, "message.expunged", cursor))
            flagged = await until("flags", lambda: events_of(store, "message.flags", cursor))
            assert [e.data["uid"] for e in gone] == [4]
            assert any(e.data["uid"] == 3 and "\\Flagged" in e.data["flags"] for e in flagged)
            synced = (await store.account(sync.account_id)).last_sync

            await asyncio.to_thread(dovecot.restart)
            await until(
                "a new sync after the restart",
                lambda: _synced_after(store, sync.account_id, synced),
                timeout=20,
            )
            await until("idle again", lambda: _state_is(store, sync, "idle"))
            states = [e.data["state"] for e in await events_of(store, "account.state", cursor)]
            assert "backoff" in states or "connect_error" in states or "connecting" in states
            after = await store.events(after=cursor, limit=1000)
            kinds = [e.kind for e in after if e.kind != "account.state"]
            assert kinds.count("message.expunged") == 1
            assert "message.new" not in kinds  # nothing fetched twice
            assert len([e for e in after if e.kind == "message.flags"]) == len(flagged)
            known = await store.folder_known(inbox.id)
            assert len(known) == 29
            assert "\\Flagged" in known[3]

    asyncio.run(main())


async def _synced_after(store: Store, account_id: int, when: Any) -> bool:
    account = await store.account(account_id)
    return account.last_sync is not None and account.last_sync > when and account.state == "idle"


def test_unreadable_secret_disables_the_account(tmp_path: Path) -> None:
    """A stored password this key cannot open (sealed with another key: a row copied from
    another database): the account waits in `disabled` with the finding, and makes no
    connection. (A whole database with another key is refused at open: tests/test_store.py.)"""

    async def main() -> None:
        store = await Store.open(tmp_path / "data")
        added = await store.add_account(spec(1), PASSWORD)
        foreign = Fernet(Fernet.generate_key()).encrypt(PASSWORD.encode())
        async with store._session() as session:
            await session.execute(update(Account).values(secret=foreign))
            await session.commit()
        sync = AccountSync(store, added.id, SyncOptions(timeout=1))
        task = asyncio.create_task(sync.run())
        try:
            await until("disabled", lambda: _state_is(store, sync, "disabled"))
            [error] = await store.errors(added.id)
            assert error.code == "STORED_SECRET_UNREADABLE"
            assert error.state == "disabled"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()

    asyncio.run(main())


def test_health_summary_from_state_and_recent_errors() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = t0 + dt.timedelta(minutes=5)
    assert health("idle", 0) == "ok"
    assert health("idle", 2, last_error=t0, last_sync=later) == "degraded"  # recovered since
    assert health("connecting", 1, last_error=later, last_sync=t0) == "failing"  # retrying
    assert health("connecting", 1, last_error=t0, last_sync=None) == "failing"
    for state in ("auth_error", "connect_error", "backoff", "disabled"):
        assert health(state, 0) == "failing"
    assert health("paused", 1, last_error=later, last_sync=t0) == "degraded"


def test_service_restarts_a_supervisor_that_died_and_follows_revisions(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A supervisor that dies of a bug is logged and started again by the next reconcile; an
    edit (a new revision) restarts it; a removed account's supervisor stops."""

    class Faulty(AccountSync):
        crashes = 1

        async def run(self) -> None:
            if Faulty.crashes:
                Faulty.crashes -= 1
                raise RuntimeError("a bug in the supervisor")
            await super().run()

    class Service(SyncService):
        def supervisor(self, account_id: int) -> AccountSync:
            return Faulty(self.store, account_id, self.options)

    async def main() -> None:
        store = await Store.open(tmp_path / "data")
        service = Service(store, SyncOptions(ca_file=str(sandbox.ca_file)), reconcile_every=0.05)
        try:
            added = await store.add_account(spec(sandbox.server.port), PASSWORD)
            await service.start()  # the first supervisor dies at once
            crashed = service.runner(added.id)
            assert crashed is not None
            # Only a restarted supervisor can bring the account to idle.
            await until("idle", lambda: _state_is(store, crashed, "idle"))
            first = service.runner(added.id)
            assert first is not crashed
            await store.set_paused(added.id, True)  # a new revision: a new supervisor
            await until("paused", lambda: _state_is(store, crashed, "paused"))
            assert service.runner(added.id) not in (first, crashed)
            await store.remove_account(added.id)
            await until("stopped", lambda: _true(service.runner(added.id) is None))
        finally:
            await service.stop()
            await store.close()

    with caplog.at_level(logging.ERROR, logger="imapscope.serve"):
        asyncio.run(main())
    assert "the supervisor of account 1 failed" in caplog.text
    assert "a bug in the supervisor" in caplog.text
    assert "reconcile failed" not in caplog.text


def test_an_interrupted_first_sync_resumes_where_it_stopped(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Cut off after two batches of the first sync, then started again: the folder ends with
    exactly the server's messages, no UID twice, no message.new, one folder.synced."""
    options = SyncOptions(ca_file=str(sandbox.ca_file), batch=3)

    async def main() -> None:
        store = await Store.open(tmp_path / "data")
        added = await store.add_account(spec(sandbox.server.port), PASSWORD)
        batches: list[int] = []
        apply = store.apply_folder
        never = asyncio.Event()

        async def counting(folder_id: int, **changes: Any) -> None:
            folders = {f.id: f.name for f in await store.folders(added.id)}
            if changes.get("new") and folders.get(folder_id) == "INBOX":
                if len(batches) == 2:
                    await never.wait()  # the third batch is never written: killed here
                batches.append(len(changes["new"]))
            await apply(folder_id, **changes)

        store.apply_folder = counting  # type: ignore[method-assign]
        first = asyncio.create_task(AccountSync(store, added.id, options).run())
        await until("two batches", lambda: _true(len(batches) >= 2))
        await asyncio.sleep(0.2)  # the third is fetched and waits to be written
        first.cancel()  # as a kill would: mid-way through the INBOX
        await asyncio.wait([first], timeout=10)
        inbox = next(f for f in await store.folders(added.id) if f.name == "INBOX")
        partial = len(await store.folder_known(inbox.id))
        assert partial == 6  # two batches of 3
        assert not inbox.complete

        store.apply_folder = apply  # type: ignore[method-assign]
        second = AccountSync(store, added.id, options)
        task = asyncio.create_task(second.run())
        try:
            await until("idle", lambda: _state_is(store, second, "idle"))
            inbox = next(f for f in await store.folders(added.id) if f.name == "INBOX")
            assert inbox.complete
            assert sorted(await store.folder_known(inbox.id)) == list(range(1, 13))
            events = await store.events(limit=1000)
            assert [e.kind for e in events if e.kind == "message.new"] == []
            synced = [e.data for e in events if e.kind == "folder.synced"]
            assert [d for d in synced if d["folder"] == "INBOX"] == [
                {"folder": "INBOX", "messages": 12}
            ]
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=10)
            await store.close()

    asyncio.run(main())


def test_a_synced_account_s_connection_keeps_a_bounded_transcript(sandbox: Sandbox) -> None:
    """A synced account's connection lives for days: it keeps the last lines of its transcript
    (enough to name a failure), not every line it ever saw; two connections to one server share
    one capability set instead of a copy each."""
    from imapscope.imap import Login, Noop  # noqa: PLC0415
    from imapscope.net import ImapConnection  # noqa: PLC0415
    from imapscope.sync._engine import TRANSCRIPT_KEPT  # noqa: PLC0415

    async def main() -> None:
        conns = []
        for _ in range(2):
            conn = await ImapConnection.open(
                "127.0.0.1",
                "127.0.0.1",
                sandbox.server.port,
                security="plain",
                context=None,
                timeout=10,
            )
            await conn.greeting()
            await conn.run(Login("alice", PASSWORD))
            conns.append(conn)
        first, second = conns
        assert first.codec.capabilities == second.codec.capabilities
        assert first.codec.capabilities is second.codec.capabilities
        first.keep_last(TRANSCRIPT_KEPT)
        for _ in range(TRANSCRIPT_KEPT * 3):
            await first.run(Noop())
        assert len(first.transcript) == TRANSCRIPT_KEPT
        assert first.transcript[-1].direction == "S"
        assert "NOOP completed" in first.transcript[-1].text
        assert len(second.transcript) == 3  # the other keeps everything (as check's does)
        for conn in conns:
            await conn.close()

    asyncio.run(main())


def test_the_sync_engine_bounds_its_connection_s_transcript(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's own connection, after a sync of every folder and a round of pushed mail,
    holds no more than the bound."""
    from imapscope.sync import _engine  # noqa: PLC0415

    opened: list[Any] = []
    connect = _engine.connect

    async def keeping(*args: Any) -> Any:
        conn = await connect(*args)
        opened.append(conn)
        return conn

    monkeypatch.setattr(_engine, "connect", keeping)

    async def main() -> None:
        options = SyncOptions(ca_file=str(sandbox.ca_file), timeout=5)
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            client = imap(sandbox)
            for n in range(5):
                client.append("INBOX", None, None, f"Subject: push {n}\r\n\r\nhi\r\n".encode())
            client.logout()
            await until("the pushed mail", lambda: _count_at_least(store, "message.new", 0, 5))
            assert opened
            assert len(opened[-1].transcript) <= _engine.TRANSCRIPT_KEPT

    asyncio.run(main())


def test_at_most_max_connecting_accounts_connect_at_once(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve accounts starting together, two connecting at a time (``serve
    --max-connecting 2``): the others wait their turn, and all end idle."""
    from imapscope.sync import _engine  # noqa: PLC0415

    real_connect = _engine.connect
    flight = {"now": 0, "most": 0}

    async def slow_connect(*args: Any, **kwargs: Any) -> Any:
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        try:
            await asyncio.sleep(0.05)  # a slow server: whoever else connects meanwhile shows
            return await real_connect(*args, **kwargs)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(_engine, "connect", slow_connect)

    async def main() -> None:
        store = await Store.open(tmp_path / "data")
        options = SyncOptions(ca_file=str(sandbox.ca_file), connecting=2)
        service = SyncService(store, options, reconcile_every=0.05)
        try:
            for i in range(12):
                account = dataclasses.replace(spec(sandbox.server.port), email=f"a{i}@example.test")
                await store.add_account(account, PASSWORD)
            await service.start()

            async def all_idle() -> bool:
                return {a.state for a in await store.accounts()} == {"idle"}

            await until("every account idle", all_idle, timeout=30)
        finally:
            await service.stop()
            await store.close()

    asyncio.run(main())
    assert flight["most"] == 2


def test_pipelined_batches_answered_out_of_order_store_each_message_once(tmp_path: Path) -> None:
    """A first sync sends the next batch's FETCH before handling this one's. A server may
    answer pipelined commands concurrently (RFC 9051 §5.5): here it holds the first FETCH until
    the second arrives, sends the second batch's messages first, then the first's, a flag
    change pushed for a message just sent, and both completions. Every message is stored once,
    with its envelope; the pushed change makes the engine look at the folder again."""
    uids = range(1, 7)
    held: list[str] = []

    def message(uid: int, *, full: bool = True) -> FetchResponse:
        sender = (Address("A", None, "a", "x.test"),)
        envelope = Envelope(date="Mon, 1 Jan 2024", subject=f"s{uid}", from_=sender, sender=(),
                            reply_to=(), to=(), cc=(), bcc=(), in_reply_to=None,
                            message_id=f"<{uid}@x>")  # fmt: skip
        return FetchResponse(
            uid, uid, ("\\Seen",), 100 if full else None,
            "01-Jan-2024 00:00:00 +0000" if full else None, None, {},
            {"ENVELOPE": raw_envelope(envelope)} if full else {},
        )  # fmt: skip

    def select(tag: str, _command: object) -> list[Response]:
        return [Exists(len(uids)), UntaggedStatus("OK", ResponseCode("UIDVALIDITY", 7), "v"),
                UntaggedStatus("OK", ResponseCode("UIDNEXT", 7), "n"), ok(tag)]  # fmt: skip

    def search(tag: str, command: Any) -> list[Response]:
        low = int(command.criteria.split()[1].split(":")[0])
        return [SearchResponse(tuple(u for u in uids if u >= low)), ok(tag)]

    def fetch(tag: str, command: Any) -> list[Response]:
        wanted = expand(command.messages, max(uids))
        if "ENVELOPE" not in command.items:  # the flag FETCH of a later sync
            return [*(message(u, full=False) for u in wanted), ok(tag)]
        if not held:
            held.append(tag)
            return []  # answered with the next one
        first = [1, 2, 3]
        return [*(message(u) for u in wanted), *(message(u) for u in first),
                message(1, full=False), ok(held[0]), ok(tag)]  # fmt: skip

    server = login_only(SELECT=select, EXAMINE=select, SEARCH=search, FETCH=fetch)

    async def main() -> None:
        options = SyncOptions(batch=3, timeout=5, fetch_deadline=5)
        async with engine(tmp_path, spec(server.port, "none"), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            total, stored = await store.messages(sync.account_id, limit=100)
            assert total == len(uids)
            assert sorted((m.uid, m.envelope["subject"]) for m in stored) == [
                (u, f"s{u}") for u in uids
            ]
            synced = await events_of(store, "folder.synced", 0)
            assert [e.data for e in synced] == [{"folder": "INBOX", "messages": 6}]
            assert await events_of(store, "message.new", 0) == []

    with serve(server):
        asyncio.run(main())
    assert held, "the two FETCHes were not pipelined"


def test_a_fetch_refused_part_way_stores_what_came_and_says_which_uids_did_not(
    tmp_path: Path,
) -> None:
    """Dovecot with ``imap_fetch_failure = no-after`` sends the messages it can read, then a
    tagged NO. What came is stored and the account goes on to idle (retrying would stop it at
    the one unreadable message); the error log names the failure the way ``check`` names a
    refused command, with the UIDs that were not stored (the next sync would not ask again)."""
    from tests.test_one_path import login_only  # noqa: PLC0415

    def message(uid: int) -> FetchResponse:
        envelope = Envelope(date="Mon, 1 Jan 2024", subject=f"s{uid}", from_=(), sender=(),
                            reply_to=(), to=(), cc=(), bcc=(), in_reply_to=None,
                            message_id=f"<{uid}@x>")  # fmt: skip
        return FetchResponse(uid, uid, (), 10, "01-Jan-2024 00:00:00 +0000", None, {},
                             {"ENVELOPE": raw_envelope(envelope)})  # fmt: skip

    def select(tag: str, _command: object) -> list[Response]:
        return [Exists(3), UntaggedStatus("OK", ResponseCode("UIDVALIDITY", 7), "v"), ok(tag)]

    def search(tag: str, command: Any) -> list[Response]:
        low = int(command.criteria.split()[1].split(":")[0])
        return [SearchResponse(tuple(u for u in (1, 2, 3) if u >= low)), ok(tag)]

    def fetch(tag: str, command: Any) -> list[Response]:
        if "ENVELOPE" not in command.items:
            return [ok(tag)]
        return [message(1), message(3), TaggedResponse(tag, "NO", ResponseCode("SERVERBUG"),
                "Some messages could not be FETCHed")]  # fmt: skip

    server = login_only(SELECT=select, EXAMINE=select, SEARCH=search, FETCH=fetch)

    async def main() -> None:
        options = SyncOptions(timeout=5)
        async with engine(tmp_path, spec(server.port, "none"), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            _, stored = await store.messages(sync.account_id)
            assert sorted(m.uid for m in stored) == [1, 3]
            [error] = await store.errors(sync.account_id)
            assert error.code == "MAILSTORE_UNAVAILABLE"
            assert error.step == "fetch"
            assert "NO [SERVERBUG] Some messages could not be FETCHed" in error.evidence
            assert "1 of 3 messages not returned, not stored: UID 2" in error.evidence

    with serve(server):
        asyncio.run(main())


def test_a_message_whose_encoded_words_do_not_decode_is_stored_as_it_came(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A subject and a sender's name in encoded words that neither decoder reads (base64 cut
    one short, 8-bit bytes in a charset's name: what spam carries) are stored as they came; the
    account stays idle. email.header's own errors used to escape the summary: an internal error
    for the account at each attempt, and the folder never synced past that message."""
    options = SyncOptions(ca_file=str(sandbox.ca_file))
    subject = "=?utf-8?b?UmU6IMOcYmVRpZSDDhG5kZXJ1bmdlbiAjMjUx?="
    name = "=?ut\xe9f-8?b?Qm9i?="
    raw = (
        f"From: {name} <bob@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        "\r\nhello\r\n"
    ).encode()

    async def main() -> None:
        async with engine(tmp_path, spec(sandbox.server.port), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            cursor = (await store.events(limit=1000))[-1].id
            client = await asyncio.to_thread(imap, sandbox)
            await asyncio.to_thread(client.append, "INBOX", "", None, raw)
            await asyncio.to_thread(client.logout)
            new = await until("message.new", lambda: events_of(store, "message.new", cursor))
            assert new[0].data["subject"] == subject
            _, page = await store.messages(sync.account_id, folder="INBOX", text="bob@example")
            assert [m.envelope["subject"] for m in page] == [subject]
            assert page[0].envelope["from_name"] == name
            assert await _state_is(store, sync, "idle")
            assert await store.errors(sync.account_id) == []

    asyncio.run(main())


def _message(uid: int, full: bool = True) -> FetchResponse:
    """Message ``uid`` as a scripted server answers a FETCH (``full``: with its ENVELOPE)."""
    envelope = Envelope(date="Mon, 1 Jan 2024", subject=f"s{uid}", from_=(), sender=(),
                        reply_to=(), to=(), cc=(), bcc=(), in_reply_to=None,
                        message_id=f"<{uid}@x>")  # fmt: skip
    items = {"ENVELOPE": raw_envelope(envelope)} if full else {}
    return FetchResponse(uid, uid, (), 10, "01-Jan-2024 00:00:00 +0000", None, {}, items)


def test_a_select_without_uidvalidity_is_a_named_failure_not_a_second_copy(
    tmp_path: Path,
) -> None:
    """RFC 3501 requires UIDVALIDITY in a SELECT's answer. An answer without it (here the
    second and third SELECT: the engine selects again read-write when it changed) is the
    server breaking the protocol, named as such; the stored folder stays as it was. Taken as a
    new UIDVALIDITY it dropped the folder and stored it again under none, and the next answer
    with one inserted every message a second time: an internal error at every attempt."""
    selects: list[int] = []

    def uidvalidity(n: int) -> int | None:
        selects.append(n)
        return None if n in (2, 3) else 7

    server, _ = _scripted_folder((1, 2, 3), lambda wanted: (wanted, "OK"), uidvalidity=uidvalidity)

    async def main() -> None:
        options = SyncOptions(timeout=5, backoff=Backoff(first=0.01, cap=0.05))
        async with engine(tmp_path, spec(server.port, "none"), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            sync.wake()  # a sync: the SELECTs without UIDVALIDITY, then one with it again

            async def selected_again() -> bool:
                return len(selects) >= 4 and await _state_is(store, sync, "idle")

            await until("a sync after the failure", selected_again)
            errors = await store.errors(sync.account_id)
            assert [e.code for e in errors] == ["SERVER_TEMPORARY_ERROR"]
            assert "selected 'INBOX' without saying its UIDVALIDITY" in " ".join(errors[0].evidence)
            [inbox] = await store.folders(sync.account_id)
            assert inbox.uidvalidity == 7
            assert sorted(await store.folder_known(inbox.id)) == [1, 2, 3]
            assert await events_of(store, "folder.reset", 0) == []

    with serve(server):
        asyncio.run(main())


def _scripted_folder(
    uids: tuple[int, ...], answer: Any, *, condstore: bool = False,
    uidvalidity: Any = lambda _n: 7,
) -> tuple[Any, list[str]]:  # fmt: skip
    """A plaintext server with one folder holding ``uids``; ``answer(uids asked)`` says which
    messages a FETCH with ENVELOPE returns and how it ends ("OK" or "NO"). With ``condstore``
    it offers CONDSTORE and its SELECT says a HIGHESTMODSEQ that never moves;
    ``uidvalidity(n)`` is what the n-th SELECT or EXAMINE says (None: no UIDVALIDITY). Returns
    the server and the message sets those FETCHes asked for."""
    from tests.test_one_path import login_only  # noqa: PLC0415

    asked: list[str] = []
    selected = [0]

    def select(tag: str, _command: object) -> list[Response]:
        selected[0] += 1
        validity = uidvalidity(selected[0])
        said = [] if validity is None else [
            UntaggedStatus("OK", ResponseCode("UIDVALIDITY", validity), "v")
        ]  # fmt: skip
        uidnext = ResponseCode("UIDNEXT", max(uids) + 1)
        modseq = [UntaggedStatus("OK", ResponseCode("HIGHESTMODSEQ", 5), "m")] if condstore else []
        return [Exists(len(uids)), *said, UntaggedStatus("OK", uidnext, "n"), *modseq, ok(tag)]

    def search(tag: str, command: Any) -> list[Response]:
        low, _, high = command.criteria.split()[1].partition(":")
        top = max(uids) if high in ("*", "") else int(high)
        return [SearchResponse(tuple(u for u in uids if int(low) <= u <= top)), ok(tag)]

    def fetch(tag: str, command: Any) -> list[Response]:
        wanted = [u for u in expand(command.messages, max(uids)) if u in uids]
        if "ENVELOPE" not in command.items:  # a later sync's flag FETCH
            return [*(_message(u, full=False) for u in wanted), ok(tag)]
        asked.append(command.messages)
        returned, status = answer(wanted)
        done = ok(tag) if status == "OK" else TaggedResponse(tag, "NO", None, "cannot read")
        return [*(_message(u) for u in returned), done]

    server = login_only(SELECT=select, EXAMINE=select, SEARCH=search, FETCH=fetch)
    if condstore:
        server.capabilities = (*server.capabilities, "CONDSTORE")
        server.greeting = Greeting("OK", ResponseCode("CAPABILITY", server.capabilities), "hi")
    return server, asked


def test_a_message_a_fetch_left_out_is_fetched_at_the_next_sync(tmp_path: Path) -> None:
    """A FETCH answered OK without one of the messages asked for (a lying or broken server):
    the next sync finds the counts disagree, lists the UIDs and fetches the one the store
    lacks, with its message.new. It used to stay out of the store for good: later syncs only
    ask above the highest stored UID."""
    calls: list[list[int]] = []

    def answer(wanted: list[int]) -> tuple[list[int], str]:
        calls.append(wanted)
        return ([u for u in wanted if u != 2] if len(calls) == 1 else wanted), "OK"

    server, asked = _scripted_folder((1, 2, 3), answer)

    async def main() -> None:
        options = SyncOptions(timeout=5)
        async with engine(tmp_path, spec(server.port, "none"), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            [inbox] = await store.folders(sync.account_id)
            assert sorted(await store.folder_known(inbox.id)) == [1, 3]
            sync.wake()

            async def healed() -> bool:
                return sorted(await store.folder_known(inbox.id)) == [1, 2, 3]

            await until("UID 2 stored", healed)
            assert asked == ["1:*", "2"]
            new = await events_of(store, "message.new", 0)
            assert [(e.data["uid"], e.data["subject"]) for e in new] == [(2, "s2")]
            assert await store.errors(sync.account_id) == []

    with serve(server):
        asyncio.run(main())


@pytest.mark.parametrize("condstore", [False, True], ids=["flags-fetch", "condstore"])
def test_a_message_the_server_refused_is_asked_for_again_and_reported_once(
    tmp_path: Path, condstore: bool
) -> None:
    """A message the server refuses (NO after the others) is reported once, and asked for
    again at each later sync round (the counts disagree) without a report each time; once the
    server can read it, it is stored, with its message.new. With CONDSTORE the folder is
    synced again though nothing in it changed: what the server says (UIDNEXT, count,
    HIGHESTMODSEQ) matches what the last sync saw, but the store holds one message less."""
    readable = [False]

    def answer(wanted: list[int]) -> tuple[list[int], str]:
        if readable[0] or 2 not in wanted:
            return wanted, "OK"
        return [u for u in wanted if u != 2], "NO"

    server, asked = _scripted_folder((1, 2, 3), answer, condstore=condstore)

    async def main() -> None:
        options = SyncOptions(timeout=5)
        async with engine(tmp_path, spec(server.port, "none"), PASSWORD, options) as (store, sync):
            await until("idle", lambda: _state_is(store, sync, "idle"))
            [inbox] = await store.folders(sync.account_id)
            assert inbox.highestmodseq == (5 if condstore else None)
            for n in (2, 3):
                sync.wake()

                async def asked_again(n: int = n) -> bool:
                    return len(asked) == n and await _state_is(store, sync, "idle")

                await until("UID 2 asked for again", asked_again)
            assert asked == ["1:*", "2", "2"]
            errors = await store.errors(sync.account_id)
            assert [e.code for e in errors] == ["MAILSTORE_UNAVAILABLE"]
            assert sorted(await store.folder_known(inbox.id)) == [1, 3]
            readable[0] = True
            sync.wake()

            async def stored() -> bool:
                return sorted(await store.folder_known(inbox.id)) == [1, 2, 3]

            await until("UID 2 stored", stored)
            new = await events_of(store, "message.new", 0)
            assert [e.data["uid"] for e in new] == [2]
            assert len(await store.errors(sync.account_id)) == 1

    with serve(server):
        asyncio.run(main())
