"""Sync state: folders (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) and message metadata, written by
the sync engine with the events that describe each change, in one transaction."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update

from imapscope.store._bounds import bounded, bounded_envelope, bounded_flags
from imapscope.store._bulk import BulkInsert
from imapscope.store._coalesce import Coalescer
from imapscope.store._db import Database, contains, no_account
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._leases import Fence, check_fence, lease_lost, lost_fences
from imapscope.store._models import Account, Event, Folder, Message, utcnow
from imapscope.store._views import FolderView, MessageMeta, MessageView, utc


@dataclasses.dataclass(frozen=True, slots=True)
class _FolderList:
    """An account's folder names as the server lists them (:meth:`MailMixin.set_folders`)."""

    account_id: int
    names: tuple[str, ...]
    fence: Fence | None


_FOLDERS = cast(Table, Folder.__table__)
_DROP_FOLDER = delete(_FOLDERS).where(
    _FOLDERS.c.account_id == bindparam("b_account"), _FOLDERS.c.name == bindparam("b_name")
)  # its messages go with it (ON DELETE CASCADE)
_ADD_FOLDER = insert(_FOLDERS).values(account_id=bindparam("b_account"), name=bindparam("b_name"))


class MailMixin(Database):
    async def folders(self, account_id: int) -> list[FolderView]:
        """The account's folders by name (read with those other accounts ask for at the same
        moment: each supervisor reads its own after every sync)."""
        return await self._folder_reads(account_id)

    @functools.cached_property
    def _folder_reads(self) -> Coalescer[int, list[FolderView]]:
        return self._coalescer(self._read_folders)

    async def _read_folders(self, account_ids: Sequence[int]) -> list[list[FolderView]]:
        found: dict[int, list[FolderView]] = {}
        async with self._session() as s:
            rows = await s.execute(
                select(Folder.account_id, Folder.id, Folder.name, Folder.uidvalidity,
                       Folder.uidnext, Folder.highestmodseq, Folder.complete)
                .where(Folder.account_id.in_(set(account_ids)))
                .order_by(Folder.name)
            )  # fmt: skip
            for r in rows:
                found.setdefault(r.account_id, []).append(
                    FolderView(r.id, r.name, r.uidvalidity, r.uidnext, r.highestmodseq, r.complete)
                )
        return [list(found.get(a, ())) for a in account_ids]

    async def set_folders(
        self, account_id: int, names: Sequence[str], *, fence: Fence | None = None
    ) -> tuple[list[str], list[str]]:
        """Make the stored folder list equal ``names``; return (added, removed). Each is a
        ``folder.added`` or ``folder.removed`` event, in the same transaction (shared with other
        accounts' lists written at the same moment, :mod:`._coalesce`)."""
        done: tuple[list[str], list[str]] = await self._folder_lists(
            _FolderList(account_id, tuple(dict.fromkeys(names)), fence)
        )
        return done

    @functools.cached_property
    def _folder_lists(self) -> Coalescer[_FolderList, tuple[list[str], list[str]]]:
        return self._coalescer(self._write_folder_lists)

    async def _write_folder_lists(
        self, writes: Sequence[_FolderList]
    ) -> list[tuple[list[str], list[str]] | StoreError]:
        ids = {w.account_id for w in writes}
        async with self._session() as s:
            lost = await lost_fences(s, [(w.account_id, w.fence) for w in writes if w.fence])
            exist = set(await s.scalars(select(Account.id).where(Account.id.in_(ids))))
            held: dict[int, list[str]] = {}
            for account_id, name in await s.execute(
                select(Folder.account_id, Folder.name).where(Folder.account_id.in_(ids))
            ):
                held.setdefault(account_id, []).append(name)
            answers: list[tuple[list[str], list[str]] | StoreError] = []
            added: list[dict[str, Any]] = []
            removed: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
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
                added += ({"b_account": w.account_id, "b_name": n} for n in new)
                removed += ({"b_account": w.account_id, "b_name": n} for n in gone)
                events += (
                    {"account_id": w.account_id, "kind": kind, "data": {"folder": n}}
                    for kind, names in (("folder.added", new), ("folder.removed", gone))
                    for n in names
                )  # fmt: skip
                answers.append((new, gone))
            # Removed first: a name gone and back within one batch is a new folder.
            if removed:
                await s.execute(_DROP_FOLDER, removed)
            if added:
                await s.execute(_ADD_FOLDER, added)
            if events:
                await s.execute(insert(cast(Table, Event.__table__)), events)
            await s.commit()
        if events:
            self.events_written.fire()
        return answers

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
        complete: bool | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Apply one folder's sync result, and the events that describe it, in one transaction
        (``reset`` drops every message first: the UIDVALIDITY changed; ``complete`` marks the
        end, or with False the restart, of the folder's first full sync). A crash leaves both or
        neither: an event is never lost, nor written twice by the next sync.

        Hot path: one Core statement per kind of change (executemany), no ORM object per
        message."""
        async with self._session() as s:
            folder = await s.get(Folder, folder_id)
            if folder is None:
                return  # removed meanwhile
            await check_fence(s, folder.account_id, fence, utcnow())
            if events:
                await s.execute(insert(cast(Table, Event.__table__)), [
                    {"account_id": folder.account_id, "kind": kind, "data": bounded_event(data)}
                    for kind, data in events
                ])  # fmt: skip
            folder.uidvalidity, folder.uidnext = uidvalidity, uidnext
            folder.highestmodseq = highestmodseq
            if complete is not None:
                folder.complete = complete
            if reset:
                await s.execute(delete(Message).where(Message.folder_id == folder_id))
            if gone:
                await s.execute(
                    delete(Message).where(Message.folder_id == folder_id, Message.uid.in_(gone))
                )
            if flags:
                table = cast(Table, Message.__table__)
                await s.execute(
                    update(table)
                    .where(table.c.folder_id == folder_id, table.c.uid == bindparam("the_uid"))
                    .values(flags=bindparam("the_flags"), seen=bindparam("is_seen")),
                    [{"the_uid": uid, "the_flags": bounded_flags(value),
                      "is_seen": "\\Seen" in value} for uid, value in flags.items()],
                )  # fmt: skip
            if new:
                await _INSERT_MESSAGES.run(s, [_message_row(folder_id, m) for m in new])
            await s.commit()
            if events:
                self.events_written.fire()

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
    internaldate = utc(m.internaldate) if m.internaldate else None
    return MessageView(m.uid, tuple(m.flags), internaldate, m.size, m.envelope, folder=folder)


_INSERT_MESSAGES = BulkInsert(
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
