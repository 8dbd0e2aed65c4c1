"""The storage interface: accounts (credentials encrypted), folders, messages, errors, events.

SQLite in the data directory by default (WAL), through SQLAlchemy 2's asyncio layer; the schema
is portable to PostgreSQL. Alembic migrations are applied by :meth:`Store.open`.

Status: the schema, the migrations, credential encryption and the account/error/event
repository exist; the sync engine, API and UI that use them arrive with the rest of issue #6.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from imapscope.store import _migrate
from imapscope.store._crypto import SecretBox, SecretKeyError, load_or_create_key
from imapscope.store._models import Account, ErrorEntry, Event, Folder, Message, utcnow

__all__ = [
    "AccountSpec",
    "AccountView",
    "ErrorView",
    "EventView",
    "FolderView",
    "MessageMeta",
    "SecretKeyError",
    "Store",
    "StoreError",
]

DB_FILE = "imapscope.db"
ERRORS_KEPT = 20
SECURITY_MODES = ("tls", "starttls", "none")
AUTH_KINDS = ("password", "oauth2")
REDACTED = "***"


class StoreError(Exception):
    """Bad input or a conflict; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    """What a user registers. The secret (password, app password or token) travels separately."""

    email: str
    host: str
    port: int
    security: str
    username: str
    auth: str = "password"
    name: str = ""
    proxy: str | None = None
    include_folders: tuple[str, ...] = ()
    exclude_folders: tuple[str, ...] = ()
    poll_interval: int = 300

    def validate(self) -> None:
        if "@" not in self.email:
            raise StoreError(f"email {self.email!r} has no '@'; give the mailbox address")
        if not self.host:
            raise StoreError("host is empty; give the IMAP server's name or address")
        if not 1 <= self.port <= 65535:
            raise StoreError(
                f"port {self.port} is out of range; use 1-65535 (993 TLS, 143 STARTTLS)"
            )
        if self.security not in SECURITY_MODES:
            raise StoreError(
                f"security {self.security!r} is unknown; use one of {', '.join(SECURITY_MODES)}"
            )
        if self.auth not in AUTH_KINDS:
            raise StoreError(f"auth {self.auth!r} is unknown; use one of {', '.join(AUTH_KINDS)}")
        if not self.username:
            raise StoreError("username is empty; most servers want the full address")
        if self.poll_interval < 10:
            raise StoreError(
                f"poll interval {self.poll_interval}s is too short; use 10 seconds or more"
            )


@dataclasses.dataclass(frozen=True)
class AccountView:
    """An account as the rest of imapscope sees it: everything but the secret."""

    id: int
    spec: AccountSpec
    paused: bool
    state: str
    state_since: dt.datetime
    last_sync: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class FolderView:
    id: int
    name: str
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None


@dataclasses.dataclass(frozen=True)
class MessageMeta:
    """What the sync engine keeps of a message."""

    uid: int
    flags: tuple[str, ...]
    internaldate: dt.datetime | None
    size: int | None
    envelope: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ErrorView:
    id: int
    at: dt.datetime
    state: str
    step: str
    code: str
    message: str
    server_text: str


@dataclasses.dataclass(frozen=True)
class EventView:
    id: int
    account_id: int
    at: dt.datetime
    kind: str
    data: dict[str, Any]


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _columns(spec: AccountSpec) -> dict[str, Any]:
    """The spec as account columns (tuples stored as JSON lists)."""
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _view(row: Account) -> AccountView:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(AccountSpec)}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    spec = AccountSpec(**fields)
    return AccountView(
        id=row.id,
        spec=spec,
        paused=row.paused,
        state=row.state,
        state_since=_utc(row.state_since),
        last_sync=_utc(row.last_sync) if row.last_sync else None,
    )


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    """One data directory's database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box
        self._session = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, data_dir: Path, url: str | None = None) -> Store:
        """Open (creating if needed) the store, its key, and bring the schema up to date."""
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        box = SecretBox(load_or_create_key(data_dir))
        engine = create_async_engine(url or f"sqlite+aiosqlite:///{data_dir / DB_FILE}")
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade)
        return cls(engine, box)

    async def close(self) -> None:
        await self._engine.dispose()

    # -- accounts --------------------------------------------------------------------------

    async def add_account(self, spec: AccountSpec, secret: str) -> AccountView:
        spec.validate()
        if not secret:
            raise StoreError("the password (or token) is empty")
        row = Account(**_columns(spec), secret=self._box.seal(secret))
        async with self._session() as s:
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:
                raise StoreError(
                    f"an account for {spec.email} already exists; edit it or remove it first"
                ) from None
            return _view(row)

    async def _row(self, s: Any, account_id: int) -> Account:
        row = await s.get(Account, account_id)
        if row is None:
            raise StoreError(
                f"no account with id {account_id}; list them with 'imapscope accounts list'"
            )
        assert isinstance(row, Account)
        return row

    async def account(self, account_id: int) -> AccountView:
        async with self._session() as s:
            return _view(await self._row(s, account_id))

    async def accounts(self) -> list[AccountView]:
        async with self._session() as s:
            rows = (await s.scalars(select(Account).order_by(Account.id))).all()
            return [_view(r) for r in rows]

    async def secret(self, account_id: int) -> str:
        """The decrypted secret, for the connection layer only; never log or return it."""
        async with self._session() as s:
            return self._box.open((await self._row(s, account_id)).secret)

    async def set_state(self, account_id: int, state: str) -> None:
        async with self._session() as s:
            row = await self._row(s, account_id)
            if row.state != state:
                row.state, row.state_since = state, utcnow()
            await s.commit()

    async def remove_account(self, account_id: int) -> None:
        """Delete the account and, by cascade, its folders, messages, errors and events."""
        async with self._session() as s:
            await s.delete(await self._row(s, account_id))
            await s.commit()

    # -- error log ---------------------------------------------------------------------------

    async def record_error(
        self,
        account_id: int,
        *,
        state: str,
        step: str,
        code: str,
        message: str,
        server_text: str = "",
    ) -> None:
        """Append to the account's error log, keeping the newest :data:`ERRORS_KEPT`.

        The account's own secret is scrubbed from the text whatever the caller passed.
        """
        async with self._session() as s:
            row = await self._row(s, account_id)
            secret = self._box.open(row.secret)

            def scrub(text: str) -> str:
                return text.replace(secret, REDACTED) if secret else text

            s.add(
                ErrorEntry(
                    account_id=account_id,
                    state=state,
                    step=step,
                    code=code,
                    message=scrub(message)[:2000],
                    server_text=scrub(server_text)[:2000],
                )
            )
            await s.flush()
            keep = (
                select(ErrorEntry.id)
                .where(ErrorEntry.account_id == account_id)
                .order_by(ErrorEntry.id.desc())
                .limit(ERRORS_KEPT)
            )
            old = await s.scalars(
                select(ErrorEntry).where(
                    ErrorEntry.account_id == account_id, ErrorEntry.id.not_in(keep)
                )
            )
            for entry in old:
                await s.delete(entry)
            await s.commit()

    async def errors(self, account_id: int) -> list[ErrorView]:
        """The kept errors, newest first."""
        async with self._session() as s:
            rows = await s.scalars(
                select(ErrorEntry)
                .where(ErrorEntry.account_id == account_id)
                .order_by(ErrorEntry.id.desc())
            )
            return [
                ErrorView(r.id, _utc(r.at), r.state, r.step, r.code, r.message, r.server_text)
                for r in rows
            ]

    # -- events ------------------------------------------------------------------------------

    async def add_event(
        self, account_id: int, kind: str, data: dict[str, Any] | None = None
    ) -> int:
        async with self._session() as s:
            row = Event(account_id=account_id, kind=kind, data=data or {})
            s.add(row)
            await s.commit()
            return row.id

    async def events(self, after: int = 0, limit: int = 100) -> Sequence[EventView]:
        """Events with an id above the cursor ``after``, oldest first."""
        if limit < 1 or limit > 1000:
            raise StoreError(f"limit {limit} is out of range; use 1-1000")
        async with self._session() as s:
            rows = await s.scalars(
                select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
            )
            return [EventView(r.id, r.account_id, _utc(r.at), r.kind, r.data) for r in rows]

    async def count_errors(self, account_id: int) -> int:
        async with self._session() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(ErrorEntry)
                .where(ErrorEntry.account_id == account_id)
            )
            return int(n or 0)

    # -- folders and messages (written by the sync engine) -----------------------------------

    async def folders(self, account_id: int) -> list[FolderView]:
        async with self._session() as s:
            rows = await s.scalars(
                select(Folder).where(Folder.account_id == account_id).order_by(Folder.name)
            )
            return [
                FolderView(r.id, r.name, r.uidvalidity, r.uidnext, r.highestmodseq) for r in rows
            ]

    async def set_folders(
        self, account_id: int, names: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """Make the stored folder list equal ``names``; return (added, removed)."""
        async with self._session() as s:
            rows = {
                r.name: r
                for r in await s.scalars(select(Folder).where(Folder.account_id == account_id))
            }
            added = [n for n in names if n not in rows]
            removed = [n for n in rows if n not in names]
            for name in added:
                s.add(Folder(account_id=account_id, name=name))
            for name in removed:
                await s.delete(rows[name])
            await s.commit()
            return added, removed

    async def folder_known(self, folder_id: int) -> dict[int, tuple[str, ...]]:
        """The stored UIDs of a folder and their flags."""
        async with self._session() as s:
            rows = await s.execute(
                select(Message.uid, Message.flags).where(Message.folder_id == folder_id)
            )
            return {uid: tuple(flags) for uid, flags in rows}

    async def apply_folder(
        self,
        folder_id: int,
        *,
        uidvalidity: int | None,
        uidnext: int | None,
        reset: bool = False,
        new: Sequence[MessageMeta] = (),
        flags: Mapping[int, tuple[str, ...]] | None = None,
        gone: Sequence[int] = (),
    ) -> None:
        """Apply one folder's sync result in one transaction (``reset`` drops every message
        first: the UIDVALIDITY changed)."""
        async with self._session() as s:
            folder = await s.get(Folder, folder_id)
            if folder is None:
                return  # removed meanwhile
            folder.uidvalidity, folder.uidnext = uidvalidity, uidnext
            if reset:
                await s.execute(delete(Message).where(Message.folder_id == folder_id))
            if gone:
                await s.execute(
                    delete(Message).where(Message.folder_id == folder_id, Message.uid.in_(gone))
                )
            for uid, value in (flags or {}).items():
                await s.execute(
                    update(Message)
                    .where(Message.folder_id == folder_id, Message.uid == uid)
                    .values(flags=list(value))
                )
            for m in new:
                s.add(
                    Message(
                        folder_id=folder_id,
                        uid=m.uid,
                        flags=list(m.flags),
                        internaldate=m.internaldate,
                        size=m.size,
                        envelope=m.envelope,
                    )
                )
            await s.commit()

    async def message_count(self, account_id: int) -> int:
        async with self._session() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(Message)
                .join(Folder)
                .where(Folder.account_id == account_id)
            )
            return int(n or 0)

    async def mark_synced(self, account_id: int) -> None:
        async with self._session() as s:
            row = await self._row(s, account_id)
            row.last_sync = utcnow()
            await s.commit()
