"""Expectations (the receive API): registered with the server's UIDNEXT of each folder they
watch, judged against new messages by whichever worker syncs the account, matched at most once
(and, when exclusive, with a claim on the message no other exclusive one can take)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from imapscope.store._db import Database
from imapscope.store._models import Expectation, ExpectationClaim, Folder, Message, utcnow
from imapscope.store._views import MessageView

#: Near misses kept per expectation (the newest).
NEAR_MISSES_KEPT = 20
#: Ended expectations (matched, expired, cancelled) are deleted this long after they ended.
ENDED_KEPT = dt.timedelta(days=1)
EXPECTATION_STATES = ("waiting", "matched", "expired", "cancelled")
#: Folders a spam filter files into (lower case): watched too while an expectation waits, so
#: that a message landing there is named as a near miss at once.
JUNK_NAMES = frozenset({"junk", "spam", "junk e-mail", "junk email", "bulk mail",
                        "[gmail]/spam", "inbox.junk", "inbox.spam"})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ExpectationView:
    id: int
    account_id: int
    criteria: dict[str, Any]
    folders: tuple[str, ...]
    exclusive: bool
    state: str  # waiting | matched | expired | cancelled
    created: dt.datetime
    expires: dt.datetime
    baseline: dict[str, int]
    judged: dict[str, int]
    ended: dt.datetime | None
    folder: str | None
    uid: int | None
    message: dict[str, Any]
    near_misses: tuple[dict[str, Any], ...]


def _view(row: Expectation, now: dt.datetime) -> ExpectationView:
    state = row.state
    expires = row.expires
    if state == "waiting" and expires <= now:
        state = "expired"
    return ExpectationView(
        row.id, row.account_id, dict(row.criteria), tuple(row.folders), row.exclusive, state,
        row.created, expires, {k: int(v) for k, v in row.baseline.items()},
        {k: int(v) for k, v in (row.judged or {}).items()},
        row.ended or (expires if state == "expired" else None),
        row.folder, row.uid, dict(row.message or {}), tuple(row.near_misses or ()),
    )  # fmt: skip


def _merged(kept: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[Any]:
    """Near misses kept plus new ones, each message once, the newest :data:`NEAR_MISSES_KEPT`."""
    have = {(m["folder"], m["uid"]) for m in kept}
    return [*kept, *(m for m in new if (m["folder"], m["uid"]) not in have)][-NEAR_MISSES_KEPT:]


class ExpectationsMixin(Database):
    async def add_expectation(
        self, account_id: int, *, criteria: Mapping[str, Any], folders: Sequence[str],
        exclusive: bool, expires: dt.datetime, baseline: Mapping[str, int],
        judged: Mapping[str, int],
    ) -> ExpectationView:  # fmt: skip
        now = utcnow()
        async with self._session() as s:
            await self._row(s, account_id)  # NotFoundError for an unknown account
            # Housekeeping: what ended a while ago goes (bounded: a few rows each time).
            old = select(Expectation.id).where(
                Expectation.ended < now - ENDED_KEPT
            ).limit(100)  # fmt: skip
            await s.execute(delete(Expectation).where(Expectation.id.in_(old)))
            stale = select(Expectation.id).where(
                Expectation.state == "waiting", Expectation.expires < now - ENDED_KEPT
            ).limit(100)  # fmt: skip
            await s.execute(delete(Expectation).where(Expectation.id.in_(stale)))
            row = Expectation(
                account_id=account_id, criteria=dict(criteria), folders=list(folders),
                exclusive=exclusive, expires=expires, baseline=dict(baseline),
                judged=dict(judged), created=now, message={}, near_misses=[],
            )  # fmt: skip
            s.add(row)
            await s.commit()
            return _view(row, now)

    async def expectation(self, expectation_id: int) -> ExpectationView:
        async with self._session() as s:
            row = await self._found(
                s, Expectation, expectation_id,
                f"no expectation with id {expectation_id} (expectations are deleted a day "
                "after they end)",
            )  # fmt: skip
            return _view(row, utcnow())

    async def waiting_expectations(self, account_id: int) -> list[ExpectationView]:
        """The account's expectations still waiting (not yet expired), oldest first."""
        now = utcnow()
        async with self._session() as s:
            rows = await s.scalars(
                select(Expectation)
                .where(Expectation.state == "waiting", Expectation.account_id == account_id,
                       Expectation.expires > now)
                .order_by(Expectation.id)
            )  # fmt: skip
            return [_view(r, now) for r in rows]

    async def watched_folders(self) -> dict[int, set[str]]:
        """Per account, the folders its waiting expectations watch, and its spam folder (the
        sync polls them while they wait)."""
        now = utcnow()
        async with self._session() as s:
            rows = await s.execute(
                select(Expectation.account_id, Expectation.folders).where(
                    Expectation.state == "waiting", Expectation.expires > now
                )
            )
            found: dict[int, set[str]] = {}
            for account_id, folders in rows:
                found.setdefault(account_id, set()).update(folders)
            if found:
                junk = await s.execute(
                    select(Folder.account_id, Folder.name).where(
                        Folder.account_id.in_(found), func.lower(Folder.name).in_(JUNK_NAMES)
                    )
                )
                for account_id, name in junk:
                    found[account_id].add(name)
            return found

    async def messages_from(
        self, account_id: int, folder: str, first_uid: int, limit: int = 500
    ) -> list[MessageView]:
        """Stored messages of one folder from ``first_uid`` on, in UID order."""
        async with self._session() as s:
            rows = await s.execute(
                select(Message.uid, Message.flags, Message.internaldate, Message.size,
                       Message.envelope)
                .join(Folder, Folder.id == Message.folder_id)
                .where(Folder.account_id == account_id, Folder.name == folder,
                       Message.uid >= first_uid)
                .order_by(Message.uid).limit(limit)
            )  # fmt: skip
            return [
                MessageView(uid, tuple(flags), at, size, envelope, folder)
                for uid, flags, at, size, envelope in rows
            ]

    async def note_judged(
        self, expectation_id: int, *, judged: Mapping[str, int],
        near_misses: Sequence[dict[str, Any]],
    ) -> None:  # fmt: skip
        """Record how far the folders were judged and the near misses found (added to those
        kept, each message once, the newest :data:`NEAR_MISSES_KEPT`)."""
        async with self._session() as s:
            row = await s.get(Expectation, expectation_id)
            if row is None or row.state != "waiting":
                return
            seen = dict(row.judged or {})
            for folder, uid in judged.items():
                seen[folder] = max(int(seen.get(folder, 0)), uid)
            row.judged = seen
            row.near_misses = _merged(row.near_misses or [], near_misses)
            await s.commit()

    async def match_expectation(
        self, expectation_id: int, *, folder: str, uid: int, message: Mapping[str, Any],
        exclusive: bool, near_misses: Sequence[dict[str, Any]] = (),
    ) -> bool:  # fmt: skip
        """Mark the expectation matched by this message; False when it no longer waits
        (matched by another worker, cancelled, expired) or, exclusive, when another exclusive
        expectation has claimed the message. One transaction: both or neither."""
        now = utcnow()
        async with self._session() as s:
            row = await s.get(Expectation, expectation_id)
            if row is None:
                return False
            if exclusive:
                s.add(ExpectationClaim(
                    account_id=row.account_id, folder=folder, uid=uid,
                    expectation_id=expectation_id,
                ))  # fmt: skip
                try:
                    await s.flush()
                except IntegrityError:
                    await s.rollback()
                    return False
            done = await s.execute(
                update(Expectation)
                .where(Expectation.id == expectation_id, Expectation.state == "waiting",
                       Expectation.expires > now)
                .values(state="matched", ended=now, folder=folder, uid=uid,
                        message=dict(message),
                        near_misses=_merged(row.near_misses or [], near_misses))
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            if getattr(done, "rowcount", 0) != 1:
                await s.rollback()
                return False
            await s.commit()
            return True

    async def cancel_expectation(self, expectation_id: int) -> ExpectationView:
        """Cancel a waiting expectation (one that ended stays as it ended)."""
        now = utcnow()
        async with self._session() as s:
            row = await self._found(
                s, Expectation, expectation_id, f"no expectation with id {expectation_id}"
            )
            if row.state == "waiting" and row.expires > now:
                row.state, row.ended = "cancelled", now
                await s.commit()
            return _view(row, now)
