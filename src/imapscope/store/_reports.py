"""Report schedules: a report made every week or month and sent through channels, by a
``report.send`` job (key ``report:<id>``) that puts itself back for the next period."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import delete, select

from imapscope.store._db import Database
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._models import Channel, Job, Monitor, ReportSchedule

REPORT_JOB = "report.send"
REPORT_EVERY = ("week", "month")
REPORT_FORMATS = ("pdf", "html", "csv", "json")
#: When a scheduled report goes out: this long after its period ends (Monday, or the 1st, UTC).
REPORT_DELAY = dt.timedelta(hours=6)


def report_key(schedule_id: int) -> str:
    return f"report:{schedule_id}"


def next_report(every: str, after: dt.datetime) -> dt.datetime:
    """When the next report of this kind goes out after ``after``."""
    midnight = after.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "week":
        start = midnight - dt.timedelta(days=midnight.weekday())  # this Monday
        due = start + REPORT_DELAY
        return due if due > after else due + dt.timedelta(days=7)
    start = midnight.replace(day=1)
    due = start + REPORT_DELAY
    if due > after:
        return due
    following = (start + dt.timedelta(days=32)).replace(day=1)
    return following + REPORT_DELAY


@dataclasses.dataclass(frozen=True)
class ReportScheduleView:
    id: int
    name: str
    every: str
    format: str
    channels: tuple[int, ...]
    monitors: tuple[int, ...]
    created: dt.datetime
    next_send: dt.datetime | None


class ReportsMixin(Database):
    async def add_report_schedule(
        self, name: str, every: str, form: str, channels: list[int], monitors: list[int], *,
        now: dt.datetime,
    ) -> ReportScheduleView:  # fmt: skip
        if not name.strip() or len(name) > 200:
            raise StoreError("a report schedule needs a name of 1-200 characters")
        if every not in REPORT_EVERY:
            raise StoreError(f"every {every!r} is unknown: use {', '.join(REPORT_EVERY)}")
        if form not in REPORT_FORMATS:
            raise StoreError(f"format {form!r} is unknown: use {', '.join(REPORT_FORMATS)}")
        if not channels:
            raise StoreError("give at least one channel to send the report through")
        async with self._session() as s:
            found = set(await s.scalars(select(Channel.id).where(Channel.id.in_(channels))))
            if set(channels) - found:
                missing = ", ".join(map(str, sorted(set(channels) - found)))
                raise StoreError(
                    f"no channel with id {missing}; list them with GET /api/v1/channels"
                )
            known = set(await s.scalars(select(Monitor.id).where(Monitor.id.in_(monitors))))
            if set(monitors) - known:
                missing = ", ".join(map(str, sorted(set(monitors) - known)))
                raise StoreError(f"no monitor with id {missing}")
            row = ReportSchedule(
                name=name.strip(), every=every, format=form, channels=list(channels),
                monitors=list(monitors), created=now,
            )  # fmt: skip
            s.add(row)
            await s.flush()
            due = next_report(every, now)
            s.add(Job(kind=REPORT_JOB, key=report_key(row.id), payload={"schedule": row.id},
                      run_at=due))  # fmt: skip
            await s.commit()
            return _view(row, due)

    async def report_schedules(self) -> list[ReportScheduleView]:
        async with self._session() as s:
            due = dict((await s.execute(
                select(Job.key, Job.run_at).where(Job.kind == REPORT_JOB, Job.done.is_(None))
            )).all())  # fmt: skip
            rows = await s.scalars(select(ReportSchedule).order_by(ReportSchedule.id))
            return [_view(r, due.get(report_key(r.id))) for r in rows]

    async def report_schedule(self, schedule_id: int) -> ReportScheduleView:
        for found in await self.report_schedules():
            if found.id == schedule_id:
                return found
        raise NotFoundError(f"no report schedule with id {schedule_id}")

    async def remove_report_schedule(self, schedule_id: int) -> None:
        async with self._session() as s:
            row = await s.get(ReportSchedule, schedule_id)
            if row is None:
                raise NotFoundError(f"no report schedule with id {schedule_id}")
            await s.execute(delete(Job).where(Job.key == report_key(schedule_id)))
            await s.delete(row)
            await s.commit()


def _view(row: ReportSchedule, due: dt.datetime | None) -> ReportScheduleView:
    return ReportScheduleView(
        row.id, row.name, row.every, row.format, tuple(row.channels), tuple(row.monitors),
        row.created, due,
    )  # fmt: skip
