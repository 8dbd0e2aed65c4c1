"""Sync state: folders (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) and message metadata, written by
the sync engine with the events that describe each change, in one transaction."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update

from imapscope.store._bounds import bounded, bounded_envelope, bounded_flags
from imapscope.store._bulk import Bulk
from imapscope.store._coalesce import Coalescer
from imapscope.store._db import Database, contains, no_account
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._leases import Fence, lease_lost, lost_fences
from imapscope.store._log import INSERT_EVENTS, EventRow
from imapscope.store._models import Account, Folder, Message, utcnow
from imapscope.store._views import FolderView, MessageMeta, MessageView


@dataclasses.dataclass(frozen=True, slots=True)
class _FolderList:
    """An account's folder names as the server lists them (:meth:`MailMixin.set_folders`)."""

    account_id: int
    names: tuple[str, ...]
    fence: Fence | None


_FOLDERS = cast(Table, Folder.__table__)
# Rows of (account id, name[, complete]); a dropped folder's messages go with it (ON DELETE
# CASCADE).
_DROP_FOLDER = Bulk(
    delete(_FOLDERS).where(
        _FOLDERS.c.account_id == bindparam("b_account"), _FOLDERS.c.name == bindparam("b_name")
    ),
    ("b_account", "b_name"),
)
_ADD_FOLDER = Bulk.insert(_FOLDERS, ("account_id", "name", "complete"))


@dataclasses.dataclass(frozen=True, slots=True)
class _FolderSync:
    """One folder's sync result (:meth:`MailMixin.apply_folder`)."""

    folder_id: int
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    messages: int | None
    reset: bool
    new: tuple[MessageMeta, ...]
    flags: dict[int, tuple[str, ...]]
    gone: tuple[int, ...]
    events: tuple[tuple[str, dict[str, Any]], ...]
    complete: bool | None
    fence: Fence | None


# Built once: building a statement and its cache key at each call cost more than running it.
_FOLDERS_OF = (
    select(Folder.account_id, Folder.id, Folder.name, Folder.uidvalidity, Folder.uidnext,
           Folder.highestmodseq, Folder.complete, Folder.messages)
    .where(Folder.account_id.in_(bindparam("ids", expanding=True)))
    .order_by(Folder.name)
)  # fmt: skip
_FOLDER_NAMES_OF = select(Folder.account_id, Folder.name).where(
    Folder.account_id.in_(bindparam("ids", expanding=True))
)
_ACCOUNTS_THERE = select(Account.id).where(Account.id.in_(bindparam("ids", expanding=True)))
_OWNERS_OF = select(Folder.id, Folder.account_id).where(
    Folder.id.in_(bindparam("ids", expanding=True))
)
_MESSAGES = cast(Table, Message.__table__)
_FOLDER_STATE: dict[str, Any] = {
    "uidvalidity": bindparam("b_validity"), "uidnext": bindparam("b_next"),
    "highestmodseq": bindparam("b_modseq"), "messages": bindparam("b_messages"),
}  # fmt: skip
# Rows of (folder id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, messages[, complete]).
_SET_FOLDER = Bulk(
    update(_FOLDERS).where(_FOLDERS.c.id == bindparam("b_id")).values(**_FOLDER_STATE),
    ("b_id", "b_validity", "b_next", "b_modseq", "b_messages"),
)
_SET_FOLDER_COMPLETE = Bulk(
    update(_FOLDERS).where(_FOLDERS.c.id == bindparam("b_id"))
    .values(**_FOLDER_STATE, complete=bindparam("b_complete")),
    ("b_id", "b_validity", "b_next", "b_modseq", "b_messages", "b_complete"),
)  # fmt: skip
# Rows of (folder id, UID).
_EXPUNGE = Bulk(
    delete(_MESSAGES).where(
        _MESSAGES.c.folder_id == bindparam("b_folder"), _MESSAGES.c.uid == bindparam("b_uid")
    ),
    ("b_folder", "b_uid"),
)
# Rows of (folder id, UID, flags, seen).
_SET_FLAGS = Bulk(
    update(_MESSAGES)
    .where(_MESSAGES.c.folder_id == bindparam("b_folder"), _MESSAGES.c.uid == bindparam("b_uid"))
    .values(flags=bindparam("b_flags"), seen=bindparam("b_seen")),
    ("b_folder", "b_uid", "b_flags", "b_seen"),
)  # fmt: skip


async def _folders_of(s: Any, account_ids: Sequence[int]) -> dict[int, list[FolderView]]:
    """Each account's folders by name."""
    found: dict[int, list[FolderView]] = {a: [] for a in account_ids}
    if account_ids:
        for r in await s.execute(_FOLDERS_OF, {"ids": sorted(found)}):
            found[r.account_id].append(
                FolderView(
                    r.id, r.name, r.uidvalidity, r.uidnext, r.highestmodseq, r.complete, r.messages
                )
            )
    return found


async def _write_round(s: Any, syncs: Sequence[_FolderSync], owners: Mapping[int, int]) -> None:
    """Folders' sync results, each folder at most once, in the caller's transaction: events,
    folder state, dropped (a new UIDVALIDITY) and expunged messages, flags, new messages."""
    now = utcnow()
    events = [
        (owners[x.folder_id], now, kind, bounded_event(data))
        for x in syncs for kind, data in x.events
    ]  # fmt: skip
    if events:
        await INSERT_EVENTS.run(s, events)
    if plain := [x for x in syncs if x.complete is None]:
        await _SET_FOLDER.run(s, [
            (x.folder_id, x.uidvalidity, x.uidnext, x.highestmodseq, x.messages) for x in plain
        ])  # fmt: skip
    if completed := [x for x in syncs if x.complete is not None]:
        await _SET_FOLDER_COMPLETE.run(s, [
            (x.folder_id, x.uidvalidity, x.uidnext, x.highestmodseq, x.messages, x.complete)
            for x in completed
        ])  # fmt: skip
    if reset := [x.folder_id for x in syncs if x.reset]:
        await s.execute(delete(Message).where(Message.folder_id.in_(reset)))
    if gone := [(x.folder_id, uid) for x in syncs for uid in x.gone]:
        await _EXPUNGE.run(s, gone)
    if flags := [
        (x.folder_id, uid, bounded_flags(value), "\\Seen" in value)
        for x in syncs for uid, value in x.flags.items()
    ]:  # fmt: skip
        await _SET_FLAGS.run(s, flags)
    if rows := [_message_row(x.folder_id, m) for x in syncs for m in x.new]:
        await _INSERT_MESSAGES.run(s, rows)


class MailMixin(Database):
    async def folders(self, account_id: int) -> list[FolderView]:
        """The account's folders by name (read with those other accounts ask for at the same
        moment: each supervisor reads its own after every sync)."""
        return await self._folder_reads(account_id)

    @functools.cached_property
    def _folder_reads(self) -> Coalescer[int, list[FolderView]]:
        return self._coalescer(self._read_folders)

    async def _read_folders(self, account_ids: Sequence[int]) -> list[list[FolderView]]:
        async with self._transaction() as s:
            found = await _folders_of(s, account_ids)
        return [list(found[a]) for a in account_ids]

    async def set_folders(
        self, account_id: int, names: Sequence[str], *, fence: Fence | None = None
    ) -> list[FolderView]:
        """Make the stored folder list equal ``names``: each folder added or removed is a
        ``folder.added`` or ``folder.removed`` event, in the same transaction (shared with other
        accounts' lists written at the same moment, :mod:`._coalesce`). Returns the account's
        folders as :meth:`folders` would now (the sync engine's next read)."""
        done: list[FolderView] = await self._folder_lists(
            _FolderList(account_id, tuple(dict.fromkeys(names)), fence)
        )
        return done

    @functools.cached_property
    def _folder_lists(self) -> Coalescer[_FolderList, list[FolderView]]:
        return self._coalescer(self._write_folder_lists)

    async def _write_folder_lists(
        self, writes: Sequence[_FolderList]
    ) -> list[list[FolderView] | StoreError]:
        ids = {w.account_id for w in writes}
        async with self._transaction() as s:
            now = utcnow()
            lost = await lost_fences(s, [(w.account_id, w.fence) for w in writes if w.fence])
            exist = set(await s.scalars(_ACCOUNTS_THERE, {"ids": sorted(ids)}))
            held: dict[int, list[str]] = {}
            for account_id, name in await s.execute(_FOLDER_NAMES_OF, {"ids": sorted(ids)}):
                held.setdefault(account_id, []).append(name)
            answers: list[int | StoreError] = []  # the account whose folders answer
            added: list[tuple[int, str, bool]] = []
            removed: list[tuple[int, str]] = []
            events: list[EventRow] = []
            for w in writes:
                if w.fence is not None and (w.account_id, w.fence) in lost:
                    answers.append(lease_lost(w.account_id, w.fence))
                    continue
                if w.account_id not in exist:
                    answers.append(no_account(w.account_id))
                    continue
                was = held.get(w.account_id, [])
                new = [n for n in w.names if n not in was]
                gone = [n for n in was if n not in w.names]
                held[w.account_id] = list(w.names)
                added += ((w.account_id, n, False) for n in new)
                removed += ((w.account_id, n) for n in gone)
                events += (
                    (w.account_id, now, kind, {"folder": n})
                    for kind, names in (("folder.added", new), ("folder.removed", gone))
                    for n in names
                )  # fmt: skip
                answers.append(w.account_id)
            # Removed first: a name gone and back within one batch is a new folder.
            if removed:
                await _DROP_FOLDER.run(s, removed)
            if added:
                await _ADD_FOLDER.run(s, added)
            if events:
                await INSERT_EVENTS.run(s, events)
            listed = await _folders_of(s, [a for a in answers if isinstance(a, int)])
        if events:
            self.events_written.fire()
        return [list(listed[a]) if isinstance(a, int) else a for a in answers]

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
        messages: int | None = None,
        reset: bool = False,
        new: Sequence[MessageMeta] = (),
        flags: Mapping[int, tuple[str, ...]] | None = None,
        gone: Sequence[int] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        complete: bool | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Apply one folder's sync result, and the events that describe it, in one transaction
        (``reset`` drops every message first: the UIDVALIDITY changed; ``complete`` marks the
        end, or with False the restart, of the folder's first full sync; ``messages``, the
        server's count that goes with ``uidnext`` and ``highestmodseq``, is given with the last
        batch, None before). A crash leaves both or neither: an event is never lost, nor written
        twice by the next sync.

        Hot path: one Core statement per kind of change (executemany), no ORM object per
        message; folders synced at the same moment, by any account, share the transaction
        (:mod:`._coalesce`)."""
        await self._folder_syncs(_FolderSync(
            folder_id, uidvalidity, uidnext, highestmodseq, messages, reset, tuple(new),
            dict(flags or {}), tuple(gone), tuple(events), complete, fence,
        ))  # fmt: skip

    @functools.cached_property
    def _folder_syncs(self) -> Coalescer[_FolderSync, None]:
        return self._coalescer(self._write_folder_syncs)

    async def _write_folder_syncs(self, syncs: Sequence[_FolderSync]) -> list[StoreError | None]:
        """Several folders' :meth:`apply_folder` in one transaction: one statement per kind of
        change for all of them. A folder asked twice is written in a second round, after the
        first (each folder's results land in the order they were asked)."""
        async with self._transaction() as s:
            owners = dict(
                (await s.execute(_OWNERS_OF, {"ids": sorted({x.folder_id for x in syncs})})).all()
            )
            lost = await lost_fences(
                s,
                [
                    (owners[x.folder_id], x.fence)
                    for x in syncs
                    if x.fence and x.folder_id in owners
                ],
            )
            answers: list[StoreError | None] = []
            rounds: list[list[_FolderSync]] = []
            seen: dict[int, int] = {}  # folder -> how many of its syncs are placed
            for x in syncs:
                account_id = owners.get(x.folder_id)
                if account_id is not None and x.fence and (account_id, x.fence) in lost:
                    answers.append(lease_lost(account_id, x.fence))
                    continue
                answers.append(None)
                if account_id is not None:  # else the folder was removed meanwhile: no write
                    turn = seen[x.folder_id] = seen.get(x.folder_id, -1) + 1
                    if turn == len(rounds):
                        rounds.append([])
                    rounds[turn].append(x)
            for syncs_now in rounds:
                await _write_round(s, syncs_now, owners)
        if any(x.events for x in syncs):
            self.events_written.fire()
        return answers

    async def message_count(self, account_id: int) -> int:
        async with self._session() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(Message)
                .join(Folder)
                .where(Folder.account_id == account_id)
            )
            return int(n or 0)

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
            query = query.where(contains(text, Message.subject, Message.sender))
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
    if isinstance(out.get("envelope"), dict):
        out["envelope"] = bounded_envelope(out["envelope"])
    return out


def _message_view(m: Message, folder: str) -> MessageView:
    internaldate = m.internaldate
    return MessageView(m.uid, tuple(m.flags), internaldate, m.size, m.envelope, folder=folder)


_INSERT_MESSAGES = Bulk.insert(
    cast(Table, Message.__table__),
    ("folder_id", "uid", "flags", "seen", "internaldate", "size", "envelope", "subject", "sender"),
)


def _message_row(folder_id: int, meta: MessageMeta) -> tuple[Any, ...]:
    """A message's row for :data:`_INSERT_MESSAGES`, every server-chosen text bounded."""
    env = bounded_envelope(meta.envelope)
    # Searched by name and address: "Bob Smith bob@example.com".
    sender = " ".join([str(env.get("from_name") or "")] + [str(a) for a in env.get("from") or []])
    return (
        folder_id, meta.uid, bounded_flags(meta.flags), "\\Seen" in meta.flags,
        meta.internaldate, meta.size, env, str(env.get("subject") or "")[:1000],
        sender.strip()[:1000],
    )  # fmt: skip
