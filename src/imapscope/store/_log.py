"""The error log (the newest entries per account, scrubbed and bounded) and the event table
(a cursor that is never reused)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, and_, delete, func, or_, select

from imapscope.store._bounds import bounded
from imapscope.store._bulk import Bulk
from imapscope.store._db import Database
from imapscope.store._errors import SecretKeyError, StoreError
from imapscope.store._leases import Fence, check_fence
from imapscope.store._models import ErrorEntry, Event, utcnow
from imapscope.store._views import ErrorView, EventView

ERRORS_KEPT = 20
#: Entries of the last hour are kept beyond :data:`ERRORS_KEPT`, so that "errors in the last
#: hour" is a count, not the log's length; at most this many (one a second for an hour).
ERRORS_HOUR_CAP = 3600
ERRORS_WINDOW = dt.timedelta(hours=1)
#: Evidence lines kept per error entry (each bounded too).
ERROR_EVIDENCE_KEPT = 10
REDACTED = "***"
#: Events written in bulk in the caller's transaction (the sync engine's writes and the group
#: commits): one ``(account_id, at, kind, data)`` row per event.
INSERT_EVENTS = Bulk.insert(cast(Table, Event.__table__), ("account_id", "at", "kind", "data"))
EventRow = tuple[int | None, dt.datetime, str, dict[str, Any]]


class LogMixin(Database):
    async def error_counts(self, since: dt.datetime) -> dict[str, int]:
        """Error entries since ``since`` per finding code, over every account (the log keeps
        every entry of the last hour: counts over up to an hour are exact)."""
        async with self._session() as s:
            rows = await s.execute(
                select(ErrorEntry.code, func.count(ErrorEntry.id))
                .where(ErrorEntry.at >= since)
                .group_by(ErrorEntry.code)
            )
            return {str(code): int(n) for code, n in rows}

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
        fence: Fence | None = None,
    ) -> None:
        """Append to the account's error log: the newest :data:`ERRORS_KEPT` are kept, and
        every entry of the last hour up to :data:`ERRORS_HOUR_CAP` (the hour's count).

        The account's own secret is scrubbed from the text whatever the caller passed; every
        field is bounded (:func:`bounded`).
        """
        async with self._session() as s:
            await check_fence(s, account_id, fence, utcnow())
            row = await self._row(s, account_id)
            try:
                secret = self._box.open(row.secret)
            except SecretKeyError:
                secret = ""  # unreadable here, so nothing imapscope passes can hold it

            def scrub(text: str) -> str:
                return text.replace(secret, REDACTED) if secret else text

            entry = ErrorEntry(
                account_id=account_id,
                state=state,
                step=step,
                code=code,
                message=bounded(scrub(message), 2000),
                server_text=bounded(scrub(server_text), 2000),
                fix=bounded(scrub(fix), 2000),
                evidence=[bounded(scrub(e), 1000) for e in evidence[:ERROR_EVIDENCE_KEPT]],
            )
            s.add(entry)
            # The finding as an event too (webhooks, the stream): what and how to fix it.
            s.add(Event(account_id=account_id, kind="account.error", data={
                "code": code, "summary": entry.message, "fix": entry.fix, "step": step,
                "state": state,
            }))  # fmt: skip
            await s.flush()
            newest = (
                select(ErrorEntry.id)
                .where(ErrorEntry.account_id == account_id)
                .order_by(ErrorEntry.id.desc())
            )
            await s.execute(
                delete(ErrorEntry).where(
                    ErrorEntry.account_id == account_id,
                    or_(
                        ErrorEntry.id.not_in(newest.limit(ERRORS_HOUR_CAP)),
                        and_(
                            ErrorEntry.id.not_in(newest.limit(ERRORS_KEPT)),
                            ErrorEntry.at < utcnow() - ERRORS_WINDOW,
                        ),
                    ),
                )
            )
            await s.commit()
            self.events_written.fire()

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
                    r.at,
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

    async def count_errors(self, account_id: int) -> int:
        query = select(func.count()).select_from(ErrorEntry)
        async with self._session() as s:
            return int(await s.scalar(query.where(ErrorEntry.account_id == account_id)) or 0)

    async def add_event(
        self, account_id: int, kind: str, data: dict[str, Any] | None = None
    ) -> int:
        async with self._session() as s:
            row = Event(account_id=account_id, kind=kind, data=data or {})
            s.add(row)
            await s.commit()
            self.events_written.fire()
            return row.id

    async def last_event_id(self) -> int:
        """The newest event's id (0 without events): a cursor for "from now on"."""
        async with self._session() as s:
            return int(await s.scalar(select(func.max(Event.id))) or 0)

    async def events(self, after: int = 0, limit: int = 100) -> Sequence[EventView]:
        """Events with an id above the cursor ``after``, oldest first."""
        if limit < 1 or limit > 1000:
            raise StoreError(f"limit {limit} is out of range; use 1-1000")
        async with self._session() as s:
            rows = await s.scalars(
                select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
            )
            return [EventView(r.id, r.account_id, r.at, r.kind, r.data) for r in rows]
