"""Accounts and their secrets (sealed at rest), states, revisions, and the per-account counts
the lists and health show."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from imapscope.store._bulk import Bulk
from imapscope.store._coalesce import Coalescer
from imapscope.store._db import Database, contains, no_account
from imapscope.store._errors import ConflictError, StoreError
from imapscope.store._leases import Fence, lease_lost, lost_fences
from imapscope.store._log import ERRORS_KEPT, INSERT_EVENTS, EventRow
from imapscope.store._models import Account, ErrorEntry, Folder, Message, utcnow
from imapscope.store._views import AccountSpec, AccountView, Summary

#: The most accounts one page of a list holds.
MAX_PAGE = 1000


@dataclasses.dataclass(frozen=True)
class AccountQuery:
    """A filter and a page of the account list: accounts whose state is ``state`` and whose
    e-mail, name or server contains ``text`` (any case); ``limit`` of them with an id above
    ``after`` (keyset paging: a page stays right while accounts are added or removed)."""

    state: str | None = None
    text: str | None = None
    after: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and not 1 <= self.limit <= MAX_PAGE:
            raise StoreError(f"limit {self.limit} is out of range; use 1-{MAX_PAGE}")
        if self.after < 0:
            raise StoreError(f"after {self.after} is negative; use an account id, or 0")

    def applied(self, statement: Any) -> Any:
        """``statement`` with this query's filter (not its page)."""
        if self.state is not None:
            statement = statement.where(Account.state == self.state)
        if self.text:
            statement = statement.where(
                contains(self.text, Account.email, Account.name, Account.host)
            )
        return statement


def _columns(spec: AccountSpec) -> dict[str, Any]:
    """The spec as account columns (tuples stored as JSON lists)."""
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AccountSpec))
# What a view is made of, without the sealed secret: listing 10,000 accounts reads these as plain
# rows (no ORM object, no identity map), several times faster than whole Account objects.
_VIEW_COLUMNS = (
    *(getattr(Account, name) for name in _SPEC_FIELDS),
    Account.id, Account.paused, Account.state, Account.state_since, Account.last_sync,
    Account.revision, Account.next_attempt, Account.halted,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class _AccountWrite:
    """A supervisor's write for its account: its running state (``state``, when the next
    attempt is due, why none is), and (``synced``) that it just synced every folder."""

    account_id: int
    fence: Fence | None
    state: str | None = None
    next_attempt: dt.datetime | None = None
    halted: str | None = None
    synced: bool = False


class _Held(NamedTuple):
    """An account's running state as stored."""

    state: str
    since: dt.datetime
    due: dt.datetime | None
    halted: str | None


# Core statements, one row per account (``updated`` given, as its column's onupdate would).
_ACCOUNTS = cast(Table, Account.__table__)
# Rows of (account id, state, since, next attempt, halted, updated).
_SET_STATE = Bulk(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), state_since=bindparam("b_since"),
            next_attempt=bindparam("b_due"), halted=bindparam("b_halted"),
            updated=bindparam("b_updated")),
    ("b_id", "b_state", "b_since", "b_due", "b_halted", "b_updated"),
)  # fmt: skip
# Built once: building a statement and its cache key at each call cost more than running it.
_STATES_OF = select(
    Account.id, Account.state, Account.state_since, Account.next_attempt, Account.halted
).where(Account.id.in_(bindparam("ids", expanding=True)))
_ACCOUNTS_OF = select(*_VIEW_COLUMNS, Account.secret).where(
    Account.id.in_(bindparam("ids", expanding=True))
)
# Rows of (account id, last sync, updated).
_SET_SYNCED = Bulk(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("b_id"))
    .values(last_sync=bindparam("b_at"), updated=bindparam("b_updated")),
    ("b_id", "b_at", "b_updated"),
)


def _view(row: Any) -> AccountView:
    """An account's view from its ORM object or a row of :data:`_VIEW_COLUMNS`."""
    values = {name: getattr(row, name) for name in _SPEC_FIELDS}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    spec = AccountSpec(**fields)
    return AccountView(
        id=row.id,
        spec=spec,
        paused=row.paused,
        state=row.state,
        state_since=row.state_since,
        last_sync=row.last_sync,
        revision=row.revision,
        next_attempt=row.next_attempt,
        halted=row.halted,
    )


class AccountsMixin(Database):
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

    async def account(self, account_id: int) -> AccountView:
        return _view(await self._account_reads(account_id))

    async def accounts(self, query: AccountQuery | None = None) -> list[AccountView]:
        """Every account by id, or the page and filter ``query`` asks for."""
        return await self._accounts(query)

    async def account_page(self, query: AccountQuery) -> tuple[list[AccountView], int | None]:
        """The page ``query`` asks for (``limit`` accounts), and the id the next page starts
        after (None: this page is the last)."""
        if query.limit is None:
            raise StoreError("a page needs a limit")
        found = await self._accounts(query, peek=True)
        if len(found) > query.limit:
            return found[: query.limit], found[query.limit - 1].id
        return found, None

    async def _accounts(self, query: AccountQuery | None, peek: bool = False) -> list[AccountView]:
        """``peek``: one account past the page, to know whether another page follows."""
        statement = select(*_VIEW_COLUMNS).order_by(Account.id)
        if query is not None:
            statement = query.applied(statement)
            if query.after:
                statement = statement.where(Account.id > query.after)
            if query.limit is not None:
                statement = statement.limit(query.limit + peek)
        async with self._session() as s:
            rows = await s.execute(statement)
            return [_view(r) for r in rows]

    async def account_count(self, query: AccountQuery | None = None) -> int:
        """How many accounts ``query``'s filter matches (its page aside)."""
        statement = select(func.count()).select_from(Account)
        if query is not None:
            statement = query.applied(statement)
        async with self._session() as s:
            return int(await s.scalar(statement) or 0)

    async def secret(self, account_id: int) -> str:
        """The decrypted secret, for the connection layer only; never log or return it."""
        return self._box.open((await self._account_reads(account_id)).secret)

    @functools.cached_property
    def _account_reads(self) -> Coalescer[int, Any]:
        """Accounts read at the same moment (every supervisor reads its account, then its
        secret, as it connects) are read with one statement."""
        return self._coalescer(self._read_accounts)

    async def _read_accounts(self, ids: Sequence[int]) -> list[Any]:
        """Each account's :data:`_VIEW_COLUMNS` and sealed secret, or :class:`NotFoundError`."""
        async with self._transaction() as s:
            rows = {r.id: r for r in await s.execute(_ACCOUNTS_OF, {"ids": sorted(set(ids))})}
        return [rows[i] if i in rows else no_account(i) for i in ids]

    async def set_state(
        self, account_id: int, state: str, *, next_attempt: dt.datetime | None = None,
        halted: str | None = None, fence: Fence | None = None, synced: bool = False,
    ) -> bool:  # fmt: skip
        """Set the running state, when the next attempt is due and why there is none
        (``halted``); a change of state is also an ``account.state`` event, written in the same
        transaction. ``synced``: and :meth:`mark_synced`, in the same write. True when the
        state changed. Accounts writing at the same moment share one transaction
        (:mod:`._coalesce`)."""
        changed: bool = await self._account_writes(
            _AccountWrite(account_id, fence, state, next_attempt, halted, synced)
        )
        return changed

    async def mark_synced(self, account_id: int, *, fence: Fence | None = None) -> None:
        """The account's folders were all synced just now (``last_sync``)."""
        await self._account_writes(_AccountWrite(account_id, fence, synced=True))

    @functools.cached_property
    def _account_writes(self) -> Coalescer[_AccountWrite, bool]:
        return self._coalescer(self._write_accounts)

    async def _write_accounts(self, writes: Sequence[_AccountWrite]) -> list[bool | StoreError]:
        """Several accounts' :meth:`set_state` and :meth:`mark_synced` in one transaction, in
        the order asked, each answered on its own: a lost lease or a removed account refuses
        that write alone."""
        now = utcnow()
        async with self._transaction() as s:
            lost = await lost_fences(s, [(w.account_id, w.fence) for w in writes if w.fence])
            held = {
                row.id: _Held(row.state, row.state_since, row.next_attempt, row.halted)
                for row in await s.execute(
                    _STATES_OF, {"ids": sorted({w.account_id for w in writes})}
                )
            }
            answers: list[bool | StoreError] = []
            changed: dict[int, _Held] = {}
            synced: set[int] = set()
            events: list[EventRow] = []
            for w in writes:
                was = held.get(w.account_id)
                if w.fence is not None and (w.account_id, w.fence) in lost:
                    answers.append(lease_lost(w.account_id, w.fence))
                    continue
                if was is None:
                    answers.append(no_account(w.account_id))
                    continue
                if w.synced:
                    synced.add(w.account_id)
                if w.state is None:
                    answers.append(True)
                elif (was.state, was.due, was.halted) == (
                    w.state, w.next_attempt, w.halted
                ):  # fmt: skip
                    answers.append(False)
                else:
                    moved = was.state != w.state
                    if moved:
                        data = {"state": w.state}
                        events.append((w.account_id, now, "account.state", data))
                    since = now if moved else was.since
                    held[w.account_id] = changed[w.account_id] = _Held(
                        w.state, since, w.next_attempt, w.halted
                    )
                    answers.append(moved)
            if changed:
                await _SET_STATE.run(s, [(i, *h, now) for i, h in changed.items()])
            if synced:
                await _SET_SYNCED.run(s, [(i, now, now) for i in sorted(synced)])
            if events:
                await INSERT_EVENTS.run(s, events)
        if events:
            self.events_written.fire()
        return answers

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
                a: (int(n), int(r or 0), last) for a, n, r, last in (await s.execute(errors)).all()
            }
        found = {}
        for a in set(counted) | set(failed) | set(account_ids or ()):
            f, m = counted.get(a, (0, 0))
            n, r, last = failed.get(a, (0, 0, None))
            found[a] = Summary(folders=f, messages=m, errors=min(n, ERRORS_KEPT), recent_errors=r,
                               last_error=last)  # fmt: skip
        return found
