"""Notification channels (their URLs sealed: they carry tokens and passwords) and the
notifications sent to them, each with its attempts, so a failing channel is seen, never
silently dropped. Sending is a ``notify`` job (see :mod:`._jobs`): once across workers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update

from imapscope.store._bounds import bounded
from imapscope.store._db import Database
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._jobs import give_back
from imapscope.store._models import Channel, Job, Notification

CHANNEL_KINDS = ("apprise", "webhook")
NOTIFY_JOB = "notify"
#: When a failed notification is tried again (seconds after each failure); then it is failed.
NOTIFY_RETRIES = (30, 120, 600, 1800, 3600)
NOTIFICATIONS_LISTED = 200


@dataclasses.dataclass(frozen=True)
class ChannelView:
    id: int
    name: str
    kind: str
    shown: str  # the URL with its secrets masked
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class NotificationView:
    id: int
    channel_id: int
    monitor_id: int | None
    incident_id: int | None
    kind: str
    created: dt.datetime
    status: str  # pending | sent | failed
    attempts: int
    sent: dt.datetime | None
    last_error: str
    title: str


def notify_key(notification_id: int) -> str:
    return f"notify:{notification_id}"


def _channel(row: Channel) -> ChannelView:
    return ChannelView(row.id, row.name, row.kind, row.shown, row.created)


def _notification(row: Notification) -> NotificationView:
    return NotificationView(
        row.id, row.channel_id, row.monitor_id, row.incident_id, row.kind, row.created,
        row.status, row.attempts, row.sent, row.last_error,
        str(row.message.get("title", "")),
    )  # fmt: skip


class ChannelsMixin(Database):
    async def add_channel(
        self, name: str, kind: str, url: str, shown: str, signing_secret: str | None = None
    ) -> ChannelView:
        name = name.strip()
        if not name or len(name) > 200:
            raise StoreError("a channel needs a name of 1-200 characters")
        if kind not in CHANNEL_KINDS:
            raise StoreError(f"channel kind {kind!r} is unknown; use {', '.join(CHANNEL_KINDS)}")
        row = Channel(
            name=name, kind=kind, url=self._box.seal(url), shown=bounded(shown, 500),
            signing_secret=self._box.seal(signing_secret) if signing_secret else None,
        )  # fmt: skip
        async with self._session() as s:
            s.add(row)
            await s.commit()
            return _channel(row)

    async def _channel_row(self, s: Any, channel_id: int) -> Channel:
        found: Channel = await self._found(
            s, Channel, channel_id,
            f"no channel with id {channel_id}; list them with 'imapscope channels list'",
        )  # fmt: skip
        return found

    async def channel(self, channel_id: int) -> ChannelView:
        async with self._session() as s:
            return _channel(await self._channel_row(s, channel_id))

    async def channels(self) -> list[ChannelView]:
        async with self._session() as s:
            return [_channel(r) for r in await s.scalars(select(Channel).order_by(Channel.id))]

    async def channel_secrets(self, channel_id: int) -> tuple[str, str | None]:
        """The channel's URL and signing secret, unsealed (for sending only)."""
        async with self._session() as s:
            row = await self._channel_row(s, channel_id)
            secret = None if row.signing_secret is None else self._box.open(row.signing_secret)
            return self._box.open(row.url), secret

    async def remove_channel(self, channel_id: int) -> None:
        """Delete a channel and its log; monitors stop naming it."""
        from imapscope.store._models import Monitor  # noqa: PLC0415 - one aggregate's edge

        async with self._session() as s:
            row = await self._channel_row(s, channel_id)
            for monitor in await s.scalars(select(Monitor)):
                if channel_id in monitor.channels or channel_id in monitor.escalation_channels:
                    monitor.channels = [c for c in monitor.channels if c != channel_id]
                    monitor.escalation_channels = [
                        c for c in monitor.escalation_channels if c != channel_id
                    ]
            queued = await s.scalars(
                select(Notification.id).where(Notification.channel_id == channel_id,
                                              Notification.status == "pending")
            )  # fmt: skip
            keys = [notify_key(n) for n in queued]
            if keys:
                await s.execute(delete(Job).where(Job.key.in_(keys)))
            await s.delete(row)
            await s.commit()

    async def log_notification(
        self, channel_id: int, kind: str, message: dict[str, Any], *, now: dt.datetime,
        error: str | None,
    ) -> NotificationView:  # fmt: skip
        """Record a notification sent at once, outside the queue (a test message): sent, or
        failed with ``error``."""
        async with self._session() as s:
            await self._channel_row(s, channel_id)
            row = Notification(
                channel_id=channel_id, kind=kind, created=now, message=message, attempts=1,
                status="failed" if error else "sent", sent=None if error else now,
                last_error=bounded(error or "", 2000),
            )  # fmt: skip
            s.add(row)
            await s.commit()
            return _notification(row)

    async def queue_for_job(
        self, job_id: int, worker: str, channels: Sequence[int], kind: str,
        message: dict[str, Any], *, now: dt.datetime, next_run: dt.datetime,
    ) -> bool:  # fmt: skip
        """Queue notifications made by a recurring job (a scheduled report) and put the job
        back for ``next_run``, in one transaction, while this worker's claim holds."""
        async with self._session() as s:
            kept = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker)
                .values(run_at=next_run, claimed_by=None, claimed_until=None, attempts=0)
            )  # fmt: skip
            if not kept.rowcount:  # type: ignore[attr-defined]
                await s.rollback()
                return False
            existing = set(await s.scalars(select(Channel.id).where(Channel.id.in_(channels))))
            await self._queue(s, [c for c in channels if c in existing], kind, message,
                              monitor_id=None, incident_id=None, now=now)  # fmt: skip
            await s.commit()
            return True

    async def _queue(
        self, s: Any, channels: Sequence[int], kind: str, message: dict[str, Any], *,
        monitor_id: int | None, incident_id: int | None, now: dt.datetime,
    ) -> list[int]:  # fmt: skip
        """Notifications to these channels, each with its ``notify`` job, in the caller's
        transaction (so a crash loses neither the cause nor its notifications)."""
        made = []
        for channel_id in channels:
            note = Notification(
                channel_id=channel_id, monitor_id=monitor_id, incident_id=incident_id, kind=kind,
                created=now, message=message,
            )  # fmt: skip
            s.add(note)
            await s.flush()
            s.add(Job(kind=NOTIFY_JOB, key=notify_key(note.id),
                      payload={"notification": note.id}, run_at=now))  # fmt: skip
            made.append(note.id)
        return made

    # -- sending -------------------------------------------------------------------------------

    async def notification(self, notification_id: int) -> tuple[NotificationView, dict[str, Any]]:
        """A notification and its message (title, body, data)."""
        async with self._session() as s:
            row = await s.get(Notification, notification_id)
            if row is None:
                raise NotFoundError(f"no notification with id {notification_id}")
            return _notification(row), dict(row.message)

    async def notification_sent(
        self, notification_id: int, job_id: int, worker: str, *, now: dt.datetime
    ) -> bool:
        """Mark it sent (and its job done), while this worker's claim holds."""
        async with self._session() as s:
            done = await s.execute(
                update(Job).where(Job.id == job_id, Job.claimed_by == worker, Job.done.is_(None))
                .values(done=now, claimed_until=None)
            )  # fmt: skip
            if not done.rowcount:  # type: ignore[attr-defined]
                await s.rollback()
                return False
            await s.execute(
                update(Notification).where(Notification.id == notification_id)
                .values(status="sent", sent=now, attempts=Notification.attempts + 1,
                        last_error="")
            )  # fmt: skip
            await s.commit()
            return True

    async def notification_failed(
        self, notification_id: int, job_id: int, worker: str, *, error: str, now: dt.datetime,
        attempt: int,
    ) -> dt.datetime | None:  # fmt: skip
        """Record a failed attempt; the job comes back after the next of
        :data:`NOTIFY_RETRIES`, or (when they are used up) the notification is failed. When
        it is tried again (None: it was given up)."""
        retry_at = (now + dt.timedelta(seconds=NOTIFY_RETRIES[attempt - 1])
                    if attempt <= len(NOTIFY_RETRIES) else None)  # fmt: skip
        async with self._session() as s:
            if not await give_back(s, job_id, worker, error=error, retry_at=retry_at, now=now):
                await s.rollback()
                return retry_at
            await s.execute(
                update(Notification).where(Notification.id == notification_id)
                .values(status="pending" if retry_at else "failed",
                        attempts=Notification.attempts + 1, last_error=bounded(error, 2000))
            )  # fmt: skip
            await s.commit()
            return retry_at

    async def notifications(
        self, *, channel_id: int | None = None, monitor_id: int | None = None,
        limit: int = NOTIFICATIONS_LISTED,
    ) -> list[NotificationView]:  # fmt: skip
        """Newest first."""
        async with self._session() as s:
            query = select(Notification)
            if channel_id is not None:
                await self._channel_row(s, channel_id)
                query = query.where(Notification.channel_id == channel_id)
            if monitor_id is not None:
                query = query.where(Notification.monitor_id == monitor_id)
            rows = await s.scalars(query.order_by(Notification.id.desc()).limit(limit))
            return [_notification(r) for r in rows]

    async def notification_counts(self) -> dict[tuple[int, str], int]:
        """Notifications kept, per (channel, status)."""
        async with self._session() as s:
            rows = await s.execute(
                select(Notification.channel_id, Notification.status, func.count())
                .group_by(Notification.channel_id, Notification.status)
            )  # fmt: skip
            return {(int(c), str(st)): int(n) for c, st, n in rows}

    async def notification_failures(self) -> dict[int, int]:
        """Per channel, notifications that gave up (status failed)."""
        async with self._session() as s:
            rows = await s.execute(
                select(Notification.channel_id, func.count())
                .where(Notification.status == "failed").group_by(Notification.channel_id)
            )  # fmt: skip
            return {int(c): int(n) for c, n in rows}
