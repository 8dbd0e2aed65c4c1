"""The storage interface: accounts (credentials encrypted), folders, messages, errors, events.

SQLite in the data directory by default (WAL), through SQLAlchemy 2's asyncio layer; the schema
is portable to PostgreSQL. Alembic migrations are applied by :meth:`Store.open`.

API tokens are kept as SHA-256 digests: a token is shown once, when it is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, event, func, select, update
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from imapscope.store import _migrate
from imapscope.store._bounds import bounded, bounded_envelope, bounded_flags
from imapscope.store._crypto import SecretBox, load_or_create_key
from imapscope.store._errors import ConflictError, NotFoundError, SecretKeyError, StoreError
from imapscope.store._models import (
    Account,
    ApiToken,
    ErrorEntry,
    Event,
    Folder,
    Message,
    utcnow,
)

__all__ = [
    "AccountSpec",
    "AccountView",
    "ConflictError",
    "ErrorView",
    "EventView",
    "FolderView",
    "MessageMeta",
    "MessageView",
    "NotFoundError",
    "SecretKeyError",
    "Store",
    "StoreError",
    "Summary",
    "TokenView",
    "jsonable",
]

DB_FILE = "imapscope.db"
ERRORS_KEPT = 20
#: Evidence lines kept per error entry (each bounded too).
ERROR_EVIDENCE_KEPT = 10
SECURITY_MODES = ("tls", "starttls", "none")
AUTH_KINDS = ("password", "oauth2")
REDACTED = "***"


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
    revision: int = 1


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
class MessageView(MessageMeta):
    """A stored message's metadata, with the folder it is in."""

    folder: str


@dataclasses.dataclass(frozen=True)
class Summary:
    """An account's counts, for lists and health."""

    folders: int = 0
    messages: int = 0
    errors: int = 0  # kept (at most 20)
    recent_errors: int = 0  # at or after the ``since`` asked for
    last_error: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    created: dt.datetime
    last_used: dt.datetime | None


def jsonable(view: Any) -> dict[str, Any]:
    """A view (any dataclass here) as JSON values: datetimes in ISO 8601, tuples as lists."""

    def value(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return v.isoformat()
        if isinstance(v, tuple):
            return [value(x) for x in v]
        return v

    return {f.name: value(getattr(view, f.name)) for f in dataclasses.fields(view)}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ErrorView:
    id: int
    at: dt.datetime
    state: str
    step: str
    code: str
    message: str
    server_text: str
    fix: str = ""
    evidence: tuple[str, ...] = ()


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
        revision=row.revision,
    )


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL's recommended level: a commit is not fsynced (the WAL is, at checkpoints), so a power
    # cut may lose the last moments of sync state, which the next sync fetches again; it never
    # corrupts the database. Thousands of small sync commits would otherwise each wait for fsync.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    """One data directory's database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer: sessions of this process take turns, so two of them never
        # race for the write lock (a reader upgrading to a writer against a newer snapshot
        # gets "database is locked" at once, whatever busy_timeout says). Other processes
        # (the CLI while serve runs) wait through busy_timeout.
        self._turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        if self._turn is None:
            async with self._sessions() as s:
                yield s
            return
        async with self._turn, self._sessions() as s:
            yield s

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
                raise ConflictError(
                    f"an account for {spec.email} already exists; edit it or remove it first"
                ) from None
            return _view(row)

    async def _row(self, s: Any, account_id: int) -> Account:
        row = await s.get(Account, account_id)
        if row is None:
            raise NotFoundError(
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

    async def set_state(self, account_id: int, state: str) -> bool:
        """Set the running state; a change is also an ``account.state`` event, written in the
        same transaction. True when it changed."""
        async with self._session() as s:
            row = await self._row(s, account_id)
            if row.state == state:
                return False
            row.state, row.state_since = state, utcnow()
            s.add(Event(account_id=account_id, kind="account.state", data={"state": state}))
            await s.commit()
            return True

    async def update_account(
        self, account_id: int, spec: AccountSpec, secret: str | None = None
    ) -> AccountView:
        """Replace the account's settings (and its secret, when given). A changed server or
        user drops the local copy: it belonged to another mailbox."""
        spec.validate()
        if secret == "":
            raise StoreError("the password (or token) is empty; leave it out to keep the old one")
        async with self._session() as s:
            row = await self._row(s, account_id)
            old = _view(row).spec
            for key, value in _columns(spec).items():
                setattr(row, key, value)
            if secret is not None:
                row.secret = self._box.seal(secret)
            row.revision += 1
            if (old.host, old.port, old.username) != (spec.host, spec.port, spec.username):
                await s.execute(delete(Folder).where(Folder.account_id == account_id))
            try:
                await s.commit()
            except IntegrityError:
                raise ConflictError(f"another account already uses {spec.email}") from None
            return _view(row)

    async def set_paused(self, account_id: int, paused: bool) -> AccountView:
        async with self._session() as s:
            row = await self._row(s, account_id)
            row.paused = paused
            row.revision += 1
            await s.commit()
            return _view(row)

    async def revisions(self) -> dict[int, int]:
        """Every account's id and revision: cheap enough to poll."""
        async with self._session() as s:
            return dict((await s.execute(select(Account.id, Account.revision))).all())

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
        fix: str = "",
        evidence: Sequence[str] = (),
    ) -> None:
        """Append to the account's error log, keeping the newest :data:`ERRORS_KEPT`.

        The account's own secret is scrubbed from the text whatever the caller passed; every
        field is bounded (:func:`bounded`).
        """
        async with self._session() as s:
            row = await self._row(s, account_id)
            try:
                secret = self._box.open(row.secret)
            except SecretKeyError:
                secret = ""  # unreadable here, so nothing imapscope passes can hold it

            def scrub(text: str) -> str:
                return text.replace(secret, REDACTED) if secret else text

            s.add(
                ErrorEntry(
                    account_id=account_id,
                    state=state,
                    step=step,
                    code=code,
                    message=bounded(scrub(message), 2000),
                    server_text=bounded(scrub(server_text), 2000),
                    fix=bounded(scrub(fix), 2000),
                    evidence=[bounded(scrub(e), 1000) for e in evidence[:ERROR_EVIDENCE_KEPT]],
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

    async def errors(self, account_id: int, limit: int = ERRORS_KEPT) -> list[ErrorView]:
        """The kept errors, newest first."""
        async with self._session() as s:
            rows = await s.scalars(
                select(ErrorEntry)
                .where(ErrorEntry.account_id == account_id)
                .order_by(ErrorEntry.id.desc())
                .limit(limit)
            )
            return [
                ErrorView(
                    r.id,
                    _utc(r.at),
                    r.state,
                    r.step,
                    r.code,
                    r.message,
                    r.server_text,
                    r.fix,
                    tuple(r.evidence or ()),
                )
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
        query = select(func.count()).select_from(ErrorEntry)
        async with self._session() as s:
            return int(await s.scalar(query.where(ErrorEntry.account_id == account_id)) or 0)

    async def summaries(
        self, since: dt.datetime, account_ids: Sequence[int] | None = None
    ) -> dict[int, Summary]:
        """Counts per account in two grouped queries, however many accounts there are."""
        folders = (
            select(Folder.account_id, func.count(func.distinct(Folder.id)), func.count(Message.id))
            .outerjoin(Message, Message.folder_id == Folder.id)
            .group_by(Folder.account_id)
        )
        recent = func.sum(case((ErrorEntry.at >= since, 1), else_=0))
        errors = select(
            ErrorEntry.account_id, func.count(ErrorEntry.id), recent, func.max(ErrorEntry.at)
        ).group_by(ErrorEntry.account_id)
        if account_ids is not None:
            folders = folders.where(Folder.account_id.in_(account_ids))
            errors = errors.where(ErrorEntry.account_id.in_(account_ids))
        async with self._session() as s:
            counted = {a: (int(f), int(m)) for a, f, m in (await s.execute(folders)).all()}
            failed = {
                a: (int(n), int(r or 0), _utc(last) if last else None)
                for a, n, r, last in (await s.execute(errors)).all()
            }
        found = {}
        for a in set(counted) | set(failed) | set(account_ids or ()):
            f, m = counted.get(a, (0, 0))
            n, r, last = failed.get(a, (0, 0, None))
            found[a] = Summary(folders=f, messages=m, errors=n, recent_errors=r, last_error=last)
        return found

    # -- API tokens --------------------------------------------------------------------------

    async def create_token(self, name: str) -> tuple[TokenView, str]:
        """A new token: the view, and the token itself (shown once; only its digest is kept)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise StoreError("a token needs a name of 1-200 characters (who or what uses it)")
        token = "isk_" + secrets.token_urlsafe(32)
        row = ApiToken(name=name, digest=_digest(token))
        async with self._session() as s:
            s.add(row)
            await s.commit()
            return TokenView(row.id, row.name, _utc(row.created), None), token

    async def tokens(self) -> list[TokenView]:
        async with self._session() as s:
            rows = await s.scalars(select(ApiToken).order_by(ApiToken.id))
            return [
                TokenView(r.id, r.name, _utc(r.created), _utc(r.last_used) if r.last_used else None)
                for r in rows
            ]

    async def check_token(self, token: str) -> TokenView | None:
        """The token's view when it is valid (and note its use), else None."""
        async with self._session() as s:
            row = await s.scalar(select(ApiToken).where(ApiToken.digest == _digest(token)))
            if row is None:
                return None
            now = utcnow()
            if row.last_used is None or now - _utc(row.last_used) > dt.timedelta(minutes=1):
                row.last_used = now
                await s.commit()
            return TokenView(row.id, row.name, _utc(row.created), now)

    async def revoke_token(self, token_id: int) -> None:
        async with self._session() as s:
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id}")
            await s.delete(row)
            await s.commit()

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
        """Make the stored folder list equal ``names``; return (added, removed). Each is a
        ``folder.added`` or ``folder.removed`` event, in the same transaction."""
        async with self._session() as s:
            rows = {
                r.name: r
                for r in await s.scalars(select(Folder).where(Folder.account_id == account_id))
            }
            added = [n for n in names if n not in rows]
            removed = [n for n in rows if n not in names]
            for name in added:
                s.add(Folder(account_id=account_id, name=name))
                s.add(Event(account_id=account_id, kind="folder.added", data={"folder": name}))
            for name in removed:
                await s.delete(rows[name])
                s.add(Event(account_id=account_id, kind="folder.removed", data={"folder": name}))
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
        highestmodseq: int | None = None,
        reset: bool = False,
        new: Sequence[MessageMeta] = (),
        flags: Mapping[int, tuple[str, ...]] | None = None,
        gone: Sequence[int] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """Apply one folder's sync result, and the events that describe it, in one transaction
        (``reset`` drops every message first: the UIDVALIDITY changed). A crash leaves both or
        neither: an event is never lost, nor written twice by the next sync."""
        async with self._session() as s:
            folder = await s.get(Folder, folder_id)
            if folder is None:
                return  # removed meanwhile
            for kind, data in events:
                s.add(Event(account_id=folder.account_id, kind=kind, data=bounded_event(data)))
            folder.uidvalidity, folder.uidnext = uidvalidity, uidnext
            folder.highestmodseq = highestmodseq
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
                    .values(flags=bounded_flags(value), seen="\\Seen" in value)
                )
            for m in new:
                s.add(Message(folder_id=folder_id, **_message_columns(m)))
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

    async def folder_counts(self, account_id: int) -> dict[str, int]:
        async with self._session() as s:
            rows = await s.execute(
                select(Folder.name, func.count(Message.id))
                .outerjoin(Message, Message.folder_id == Folder.id)
                .where(Folder.account_id == account_id)
                .group_by(Folder.name)
            )
            return {name: int(n) for name, n in rows}

    async def messages(
        self,
        account_id: int,
        *,
        folder: str | None = None,
        unseen: bool | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[MessageView]]:
        """One page of stored messages, newest first: (total matching, page)."""
        if not 1 <= limit <= 500:
            raise StoreError(f"limit {limit} is out of range; use 1-500")
        if offset < 0:
            raise StoreError(f"offset {offset} is negative; use 0 or more")
        query = select(Message, Folder.name).join(Folder).where(Folder.account_id == account_id)
        if folder is not None:
            query = query.where(Folder.name == folder)
        if unseen is not None:
            query = query.where(Message.seen.is_(not unseen))
        if text:
            escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            query = query.where(
                func.lower(Message.subject).like(pattern, escape="\\")
                | func.lower(Message.sender).like(pattern, escape="\\")
            )
        async with self._session() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
        page = await self._scan(
            query.order_by(Message.internaldate.desc(), Message.uid.desc())
            .limit(limit)
            .offset(offset)
        )
        return int(total or 0), [_message_view(m, name) for m, name in page]

    async def _scan(self, query: Any) -> list[tuple[Message, str]]:
        async with self._session() as s:
            return [(m, n) for m, n in (await s.execute(query)).all()]

    async def message(self, account_id: int, folder: str, uid: int) -> MessageView:
        query = (
            select(Message, Folder.name)
            .join(Folder)
            .where(Folder.account_id == account_id, Folder.name == folder, Message.uid == uid)
        )
        found = await self._scan(query)
        if not found:
            raise NotFoundError(f"no message with UID {uid} in {folder!r} of account {account_id}")
        return _message_view(*found[0])


def bounded_event(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data with the server-chosen texts in it bounded."""
    out = dict(data)
    if isinstance(out.get("subject"), str):
        out["subject"] = bounded(out["subject"], 998)
    if isinstance(out.get("flags"), list):
        out["flags"] = bounded_flags(out["flags"])
    return out


def _message_view(m: Message, folder: str) -> MessageView:
    internaldate = _utc(m.internaldate) if m.internaldate else None
    return MessageView(m.uid, tuple(m.flags), internaldate, m.size, m.envelope, folder=folder)


def _message_columns(meta: MessageMeta) -> dict[str, Any]:
    env = meta.envelope
    env = bounded_envelope(env)
    return {
        "uid": meta.uid,
        "flags": bounded_flags(meta.flags),
        "seen": "\\Seen" in meta.flags,
        "internaldate": meta.internaldate,
        "size": meta.size,
        "envelope": env,
        "subject": str(env.get("subject") or "")[:1000],
        "sender": " ".join(str(a) for a in env.get("from") or [] if a)[:1000],
    }
