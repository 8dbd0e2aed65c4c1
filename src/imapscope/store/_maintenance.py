"""Maintenance windows: one-off or weekly, for one monitor or all. A run inside one raises no
alert and does not count against uptime."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select

from imapscope.store._db import Database
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._models import Maintenance, Monitor

WEEK = dt.timedelta(days=7)


@dataclasses.dataclass(frozen=True)
class MaintenanceView:
    id: int
    monitor_id: int | None  # None: every monitor
    starts: dt.datetime
    ends: dt.datetime
    weekly: bool
    reason: str

    def covers(self, at: dt.datetime) -> bool:
        """Whether ``at`` falls in the window (or, weekly, in one of its repeats)."""
        if at < self.starts:
            return False
        shift = WEEK * ((at - self.starts) // WEEK) if self.weekly else dt.timedelta(0)
        return self.starts + shift <= at < self.ends + shift


def check_window(starts: dt.datetime, ends: dt.datetime, weekly: bool) -> None:
    if starts.tzinfo is None or ends.tzinfo is None:
        raise StoreError("give the window's start and end with a time zone (e.g. 2026-12-24T"
                         "22:00:00+01:00, or Z for UTC)")  # fmt: skip
    if ends <= starts:
        raise StoreError(
            f"the window ends ({ends.isoformat()}) before it starts ({starts.isoformat()}); "
            "give an end after the start"
        )
    if weekly and ends - starts > WEEK:
        raise StoreError("a weekly window lasts at most 7 days (it repeats every week)")


def _view(row: Maintenance) -> MaintenanceView:
    return MaintenanceView(row.id, row.monitor_id, row.starts, row.ends, row.weekly, row.reason)


class MaintenanceMixin(Database):
    async def add_maintenance(
        self, starts: dt.datetime, ends: dt.datetime, *, monitor_id: int | None = None,
        weekly: bool = False, reason: str = "",
    ) -> MaintenanceView:  # fmt: skip
        check_window(starts, ends, weekly)
        if len(reason) > 500:
            raise StoreError("a reason has at most 500 characters")
        async with self._session() as s:
            if monitor_id is not None and await s.get(Monitor, monitor_id) is None:
                raise StoreError(f"no monitor with id {monitor_id}; list them with "
                                 "'imapscope monitors list'")  # fmt: skip
            row = Maintenance(monitor_id=monitor_id, starts=starts, ends=ends, weekly=weekly,
                              reason=reason)  # fmt: skip
            s.add(row)
            await s.commit()
            return _view(row)

    async def maintenance_windows(self, monitor_id: int | None = None) -> list[MaintenanceView]:
        """Every window (with ``monitor_id``: those that apply to it, global ones included)."""
        async with self._session() as s:
            query = select(Maintenance)
            if monitor_id is not None:
                query = query.where(
                    Maintenance.monitor_id.is_(None) | (Maintenance.monitor_id == monitor_id)
                )
            return [_view(r) for r in await s.scalars(query.order_by(Maintenance.id))]

    async def remove_maintenance(self, window_id: int) -> None:
        async with self._session() as s:
            row = await s.get(Maintenance, window_id)
            if row is None:
                raise NotFoundError(f"no maintenance window with id {window_id}")
            await s.delete(row)
            await s.commit()

    async def in_maintenance(self, monitor_id: int, at: dt.datetime) -> bool:
        return any(w.covers(at) for w in await self.maintenance_windows(monitor_id))
