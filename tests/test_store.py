"""The store on real SQLite files: migrations, WAL, encrypted credentials, error log, events."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from imapscope.store import (
    DB_FILE,
    ERRORS_KEPT,
    AccountSpec,
    MessageMeta,
    SecretKeyError,
    Store,
    StoreError,
    Summary,
)
from imapscope.store._bounds import (
    MAX_ADDRESS,
    MAX_ADDRESSES,
    MAX_FLAGS,
    MAX_MESSAGE_ID,
    MAX_SUBJECT,
    TRUNCATED,
)
from imapscope.store._crypto import KEY_ENV, KEY_FILE
from imapscope.store._migrate import HEAD
from imapscope.store._models import Base, ErrorEntry
from tests.conftest import Database

T = TypeVar("T")
PASSWORD = "s3cret-Pa55word-xyzzy"
SPEC = AccountSpec(
    email="alice@example.test",
    host="127.0.0.1",
    port=993,
    security="tls",
    username="alice@example.test",
)


def run(tmp_path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = await Store.open(tmp_path)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch, database: Database) -> None:
    """Every test here runs on SQLite and on PostgreSQL (the ``database`` fixture)."""
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def sqlite_only(database: Database) -> None:
    if database.kind != "sqlite":
        pytest.skip("inspects the SQLite file itself (WAL, file mode)")


@pytest.mark.usefixtures("sqlite_only")
def test_open_creates_schema_wal_and_a_private_key(tmp_path: Path) -> None:
    run(tmp_path, lambda s: s.accounts())
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {
            "accounts",
            "folders",
            "messages",
            "errors",
            "events",
            "alembic_version",
            "api_tokens",
        } <= tables
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD


def test_migrations_match_the_models(tmp_path: Path, database: Database) -> None:
    run(tmp_path, lambda s: s.accounts())
    url = database.url or f"sqlite+aiosqlite:///{tmp_path / DB_FILE}"

    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
        finally:
            await engine.dispose()

    diff = asyncio.run(compare())
    assert diff == [], "models changed without a migration: add one under store/migrations"


def test_reopen_keeps_accounts_and_decrypts_with_the_same_key(tmp_path: Path) -> None:
    added = run(tmp_path, lambda s: s.add_account(SPEC, PASSWORD))
    assert run(tmp_path, lambda s: s.secret(added.id)) == PASSWORD
    views = run(tmp_path, lambda s: s.accounts())
    assert [v.spec for v in views] == [SPEC]
    assert views[0].state == "connecting"
    assert views[0].state_since.tzinfo is not None


def test_password_is_not_in_the_database(tmp_path: Path, database: Database) -> None:
    run(tmp_path, lambda s: s.add_account(SPEC, PASSWORD))
    raw = database.dump(tmp_path)
    assert SPEC.email.encode() in raw  # the file holds the account: the search is meaningful
    assert PASSWORD.encode() not in raw


def test_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, key)
    added = run(tmp_path, lambda s: s.add_account(SPEC, PASSWORD))
    assert not (tmp_path / KEY_FILE).exists()
    before = run(tmp_path, lambda s: s.accounts())
    # A worker with another key is refused at open, before it writes anything.
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(StoreError, match=r"sealed with another key.*IMAPSCOPE_SECRET_KEY"):
        run(tmp_path, lambda s: s.accounts())
    monkeypatch.setenv(KEY_ENV, key)
    assert run(tmp_path, lambda s: s.accounts()) == before
    assert run(tmp_path, lambda s: s.secret(added.id)) == PASSWORD


def test_bad_keys_are_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(SecretKeyError, match=r"not a Fernet key.*generate one"):
        run(tmp_path, lambda s: s.accounts())
    monkeypatch.delenv(KEY_ENV)
    run(tmp_path, lambda s: s.accounts())
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(SecretKeyError, match=r"readable by others.*chmod 600"):
        run(tmp_path, lambda s: s.accounts())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "alice"}, "has no '@'"),
        ({"host": ""}, "host is empty"),
        ({"port": 0}, "out of range"),
        ({"security": "ssl"}, "use one of tls, starttls, none"),
        ({"auth": "kerberos"}, "use one of password, oauth2"),
        ({"username": ""}, "username is empty"),
        ({"poll_interval": 1}, "too short"),
    ],
)
def test_bad_account_input_says_what_to_fix(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    bad = dataclasses.replace(SPEC, **change)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=message):
        run(tmp_path, lambda s: s.add_account(bad, PASSWORD))
    assert run(tmp_path, lambda s: s.accounts()) == []


def test_duplicate_and_missing_accounts(tmp_path: Path) -> None:
    run(tmp_path, lambda s: s.add_account(SPEC, PASSWORD))
    with pytest.raises(StoreError, match="already exists"):
        run(tmp_path, lambda s: s.add_account(SPEC, "other"))
    with pytest.raises(StoreError, match="no account with id 99"):
        run(tmp_path, lambda s: s.account(99))
    with pytest.raises(StoreError, match=r"password .* is empty"):
        run(tmp_path, lambda s: s.add_account(SPEC, ""))


def test_error_log_keeps_the_newest_20_and_the_last_hour_and_scrubs_secrets(
    tmp_path: Path,
) -> None:
    async def body(s: Store) -> None:
        a = await s.add_account(SPEC, PASSWORD)
        for i in range(ERRORS_KEPT + 5):
            await s.record_error(
                a.id,
                state="auth_error",
                step="login",
                code="AUTH_FAILED",
                message=f"attempt {i} with {PASSWORD}",
                server_text=f"NO [AUTHENTICATIONFAILED] {PASSWORD}",
            )
        errors = await s.errors(a.id)
        assert [e.message for e in errors] == [
            f"attempt {i} with ***" for i in reversed(range(5, ERRORS_KEPT + 5))
        ]
        assert all(PASSWORD not in e.server_text for e in errors)
        # The last hour's entries are all kept, so the hour's count is not the log's length.
        assert await s.count_errors(a.id) == ERRORS_KEPT + 5
        hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, seconds=1)
        summary = (await s.summaries(hour_ago))[a.id]
        assert (summary.errors, summary.recent_errors) == (ERRORS_KEPT, ERRORS_KEPT + 5)
        # Once they are older than an hour, only the newest 20 stay.
        async with s._session() as session:
            await session.execute(update(ErrorEntry).values(at=hour_ago))
            await session.commit()
        await s.record_error(a.id, state="auth_error", step="login", code="AUTH_FAILED",
                             message="the latest")  # fmt: skip
        assert await s.count_errors(a.id) == ERRORS_KEPT
        assert [e.message for e in await s.errors(a.id)][:2] == [
            "the latest",
            "attempt 24 with ***",
        ]
        summary = (await s.summaries(hour_ago + dt.timedelta(seconds=1)))[a.id]
        assert (summary.errors, summary.recent_errors) == (ERRORS_KEPT, 1)

    run(tmp_path, body)


def test_events_resume_from_a_cursor_and_ids_are_never_reused(tmp_path: Path) -> None:
    async def body(s: Store) -> None:
        a = await s.add_account(SPEC, PASSWORD)
        ids = [await s.add_event(a.id, "message.new", {"uid": u}) for u in (1, 2, 3)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 3
        after = await s.events(after=ids[0])
        assert [(e.id, e.data["uid"]) for e in after] == [(ids[1], 2), (ids[2], 3)]
        with pytest.raises(StoreError, match="limit 0 is out of range"):
            await s.events(limit=0)
        # Removing the account removes its events; a new event still gets a higher id.
        await s.remove_account(a.id)
        assert await s.events() == []
        b = await s.add_account(SPEC, PASSWORD)
        assert await s.add_event(b.id, "account.state") > ids[-1]

    run(tmp_path, body)


def test_state_changes_move_state_since_only_on_change(tmp_path: Path) -> None:
    async def body(s: Store) -> None:
        a = await s.add_account(SPEC, PASSWORD)
        await s.set_state(a.id, "idle")
        first = await s.account(a.id)
        await s.set_state(a.id, "idle")
        again = await s.account(a.id)
        assert first.state == again.state == "idle"
        assert again.state_since == first.state_since >= a.state_since

    run(tmp_path, body)


def test_remove_account_cascades(tmp_path: Path) -> None:
    async def body(s: Store) -> int:
        a = await s.add_account(SPEC, PASSWORD)
        await s.record_error(
            a.id, state="connect_error", step="tcp", code="TCP_REFUSED", message="x"
        )
        await s.remove_account(a.id)
        return a.id

    async def counts(s: Store) -> list[int]:
        async with s._session() as session:
            return [
                int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
                for table in ("accounts", "errors", "events")
            ]

    run(tmp_path, body)
    assert run(tmp_path, counts) == [0, 0, 0]


def test_summaries_count_per_account_in_grouped_queries(tmp_path: Path) -> None:
    async def body(s: Store) -> None:
        a = await s.add_account(SPEC, PASSWORD)
        b = await s.add_account(dataclasses.replace(SPEC, email="b@example.test"), PASSWORD)
        idle = await s.add_account(dataclasses.replace(SPEC, email="c@example.test"), PASSWORD)
        await s.set_folders(a.id, ["INBOX", "Sent"])
        inbox = next(f for f in await s.folders(a.id) if f.name == "INBOX")
        new = [MessageMeta(u, (), None, 10, {}) for u in (1, 2, 3)]
        await s.apply_folder(inbox.id, uidvalidity=1, uidnext=4, new=new)
        for _ in range(2):
            await s.record_error(b.id, state="auth_error", step="authenticate",
                                 code="AUTH_FAILED", message="no")  # fmt: skip
        before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        found = await s.summaries(before)
        assert found[a.id] == Summary(folders=2, messages=3)
        assert found[b.id].errors == 2
        assert found[b.id].recent_errors == 2
        assert found[b.id].last_error is not None
        assert found[b.id].last_error >= before
        assert idle.id not in found  # nothing to count
        later = await s.summaries(
            dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), [b.id, idle.id]
        )
        assert later[b.id].recent_errors == 0  # old errors are not recent
        assert later[b.id].errors == 2
        assert later[idle.id] == Summary()
        assert set(later) == {b.id, idle.id}

    run(tmp_path, body)


def test_a_date_in_any_zone_is_stored_as_the_same_moment(tmp_path: Path) -> None:
    """An INTERNALDATE comes in the server's zone ("+0200"): it reads back as the same moment,
    in UTC, and sorts among the others by that moment. (SQLite keeps no offset: its wall-clock
    time was stored and read back as UTC, two hours off.)"""
    plus2 = dt.timezone(dt.timedelta(hours=2))
    earlier = dt.datetime(2024, 1, 1, 9, 2, tzinfo=plus2)  # 07:02 UTC
    later = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC)

    async def body(s: Store) -> tuple[Any, list[Any]]:
        added = await s.add_account(SPEC, PASSWORD)
        [inbox] = await s.set_folders(added.id, ["INBOX"])
        new = [MessageMeta(1, (), earlier, 10, {}), MessageMeta(2, (), later, 10, {})]
        await s.apply_folder(inbox.id, uidvalidity=1, uidnext=3, new=new)
        _, page = await s.messages(added.id)
        return await s.message(added.id, "INBOX", 1), page

    one, page = run(tmp_path, body)
    assert one.internaldate == earlier
    assert one.internaldate.utcoffset() == dt.timedelta(0)
    assert [m.uid for m in page] == [2, 1]  # newest first: 08:00 UTC, then 07:02 UTC


def test_stored_messages_keep_what_was_synced_and_cut_what_a_server_inflates(
    tmp_path: Path,
) -> None:
    """The bulk message insert stores each column as read back (dates, flags, envelope, the
    searchable subject and sender); a server-chosen text over its named limit is cut, with the
    marker, and a list over its limit is shortened."""
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    plain = {"date": "Tue, 2 Jan 2024", "subject": "Café at 3?", "from": ["bob@example.test"],
             "from_name": "Bob Smïth", "to": ["a@example.test"], "message_id": "<1@x>"}  # fmt: skip
    inflated = {
        "subject": "s" * 5000,
        "from": [f"u{i}@example.test" for i in range(80)],
        "to": ["x" * 2000 + "@example.test", "", "y@example.test"],
        "from_name": "n" * 900,
        "message_id": "<" + "m" * 2000 + ">",
    }
    flags = (*tuple(f"$flag{i}" for i in range(150)), "\\Seen")

    async def body(s: Store) -> list[MessageMeta]:
        a = await s.add_account(SPEC, PASSWORD)
        await s.set_folders(a.id, ["INBOX"])
        inbox = (await s.folders(a.id))[0]
        await s.apply_folder(inbox.id, uidvalidity=1, uidnext=3, new=[
            MessageMeta(1, ("\\Seen", "$Label1"), when, 1234, plain),
            MessageMeta(2, (*flags[:3], "k" * 300), None, None, inflated),
        ])  # fmt: skip
        assert (await s.messages(a.id, text="smïth"))[0] == 1  # searchable sender name
        assert (await s.messages(a.id, unseen=True))[0] == 1
        return [await s.message(a.id, "INBOX", uid) for uid in (1, 2)]

    first, second = run(tmp_path, body)
    assert (first.flags, first.internaldate, first.size) == (("\\Seen", "$Label1"), when, 1234)
    assert first.envelope == plain
    assert second.internaldate is None
    assert second.size is None
    assert second.flags[:3] == flags[:3]
    assert second.flags[3] == "k" * 188 + TRUNCATED
    env = second.envelope
    assert len(env["subject"]) == MAX_SUBJECT
    assert env["subject"].endswith(TRUNCATED)
    assert env["from"] == [f"u{i}@example.test" for i in range(MAX_ADDRESSES)]
    assert env["to"][0].endswith(TRUNCATED)
    assert len(env["to"][0]) == MAX_ADDRESS
    assert env["to"][1:] == ["y@example.test"]
    assert len(env["from_name"]) == MAX_ADDRESS
    assert len(env["message_id"]) == MAX_MESSAGE_ID


def test_flags_beyond_the_limit_are_dropped(tmp_path: Path) -> None:
    async def body(s: Store) -> tuple[str, ...]:
        a = await s.add_account(SPEC, PASSWORD)
        await s.set_folders(a.id, ["INBOX"])
        inbox = (await s.folders(a.id))[0]
        many = tuple(f"$f{i}" for i in range(MAX_FLAGS + 20))
        await s.apply_folder(inbox.id, uidvalidity=1, uidnext=2,
                             new=[MessageMeta(1, many, None, 1, {})])  # fmt: skip
        return (await s.message(a.id, "INBOX", 1)).flags

    assert run(tmp_path, body) == tuple(f"$f{i}" for i in range(MAX_FLAGS))


def test_json_columns_encode_what_the_standard_library_does() -> None:
    """orjson encodes JSON columns; what it refuses (an integer past 64 bits, which a server
    can send as a count) falls back to the standard library, so nothing that stored before
    fails now."""
    from imapscope.store._db import _json_dumps  # noqa: PLC0415

    for value in ({"n": 2**70}, {1: "a", "b": [1.5, None, True]}, ["é", {"x": {}}]):
        assert json.loads(_json_dumps(value)) == json.loads(json.dumps(value))


def test_imap_s_largest_numbers_are_stored(tmp_path: Path) -> None:
    """UIDVALIDITY, UIDNEXT and UIDs are 32-bit unsigned, HIGHESTMODSEQ 63-bit (RFC 9051,
    RFC 7162): the largest of each is stored and read back on both databases (PostgreSQL's
    32-bit integer held none of them before migration 0013)."""
    top32, top63 = 2**32 - 1, 2**63 - 1

    async def body(s: Store) -> tuple[Any, ...]:
        a = await s.add_account(SPEC, PASSWORD)
        await s.set_folders(a.id, ["INBOX"])
        inbox = (await s.folders(a.id))[0]
        await s.apply_folder(inbox.id, uidvalidity=top32, uidnext=top32, highestmodseq=top63,
                             new=[MessageMeta(top32 - 1, (), None, top32, {})])  # fmt: skip
        folder = (await s.folders(a.id))[0]
        message = await s.message(a.id, "INBOX", top32 - 1)
        return folder.uidvalidity, folder.uidnext, folder.highestmodseq, message.uid, message.size

    assert run(tmp_path, body) == (top32, top32, top63, top32 - 1, top32)
