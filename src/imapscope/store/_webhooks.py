"""Webhook endpoints and their outbox.

The event table is the outbox's source: every event is written in the same transaction as the
change it describes. :meth:`WebhooksMixin.fan_out` turns the events after a cursor into one
delivery row per matching endpoint, and moves the cursor, in one transaction (a unique
(endpoint, event) pair: two workers fanning out at once cannot both write a delivery). Each
delivery is then claimed by one worker at a time (:func:`~imapscope.store._jobs.claim_rows`),
attempted, and finished: delivered, retried on :data:`RETRIES`, or failed. Every attempt is
logged. Nothing is lost between the change and the receiver: a crash before the fan-out leaves
the cursor where it was; a crash during an attempt leaves the delivery claimed until its claim
runs out, and another attempt follows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update

from imapscope.store._bounds import bounded
from imapscope.store._db import Database
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._jobs import claim_rows
from imapscope.store._models import (
    Event,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)

#: Seconds after each failed attempt before the next: the first attempt is immediate, then
#: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; after the eighth failure the delivery has failed.
RETRIES = (5, 300, 1800, 7200, 18000, 36000, 36000)
#: An endpoint whose deliveries have failed, with no success, for this long is disabled.
DISABLE_AFTER = dt.timedelta(days=5)
#: How long a rotated-out secret still signs (both signatures are sent meanwhile).
OLD_SECRET_VALID = dt.timedelta(hours=24)
#: Attempts kept per endpoint in its log (the newest).
ATTEMPTS_KEPT = 1000
#: Finished deliveries are deleted this long after they finished (replay re-creates them).
DELIVERIES_KEPT = dt.timedelta(days=7)
#: Most events one replay queues.
REPLAY_MAX = 10_000
#: PostgreSQL advisory lock key that keeps fan-outs apart ("hook" in ASCII).
FANOUT_LOCK = 0x686F6F6B
CURSOR = "webhooks.cursor"
DELIVERY_STATES = ("pending", "delivered", "failed")


@dataclasses.dataclass(frozen=True)
class WebhookView:
    id: int
    shown: str
    description: str
    events: tuple[str, ...]
    accounts: tuple[int, ...]
    enabled: bool
    disabled_reason: str
    created: dt.datetime
    failing_since: dt.datetime | None
    rotating_until: dt.datetime | None  # the old secret still signs until then


@dataclasses.dataclass(frozen=True)
class DeliveryView:
    id: int
    webhook_id: int
    event_id: int
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_at: dt.datetime | None  # when pending
    created: dt.datetime
    done: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class AttemptView:
    id: int
    delivery_id: int
    at: dt.datetime
    status_code: int | None
    ms: int
    outcome: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one attempt went (what :meth:`WebhooksMixin.finish_deliveries` records)."""

    delivery_id: int
    ok: bool
    status_code: int | None
    ms: int
    said: str


def _view(row: Webhook, now: dt.datetime) -> WebhookView:
    until = row.old_until if row.old_secret else None
    return WebhookView(
        row.id, row.shown, row.description, tuple(row.events), tuple(row.accounts),
        row.enabled, row.disabled_reason, row.created,
        row.failing_since,
        until if until and until > now else None,
    )  # fmt: skip


def _delivery(row: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        row.id, row.webhook_id, row.event_id, row.kind, dict(row.payload), row.status,
        row.attempts, row.next_at if row.status == "pending" else None, row.created,
        row.done,
    )  # fmt: skip


def payload_of(event: Event) -> dict[str, Any]:
    """What a receiver gets for an event (Standard Webhooks' shape: type, timestamp, data)."""
    return {
        "type": event.kind, "timestamp": event.at.isoformat(),
        "data": {"id": event.id, "account_id": event.account_id, **(event.data or {})},
    }  # fmt: skip


def _wants(hook: Webhook, event: Event) -> bool:
    return (
        event.id > hook.after_event
        and (not hook.events or event.kind in hook.events)
        and (not hook.accounts or event.account_id in hook.accounts)
    )


class WebhooksMixin(Database):
    def _hook(self, s: Any, webhook_id: int) -> Any:
        said = f"no webhook with id {webhook_id}; list them with GET /api/v1/webhooks"
        return self._found(s, Webhook, webhook_id, said)

    async def add_webhook(
        self, url: str, shown: str, secret: str, *, events: Sequence[str] = (),
        accounts: Sequence[int] = (), description: str = "",
    ) -> WebhookView:  # fmt: skip
        """A new endpoint; it receives the events written from now on."""
        async with self._session() as s:
            last = await self._listening_from_now(s)
            row = Webhook(
                url=self._box.seal(url), shown=shown, secret=self._box.seal(secret),
                events=list(events), accounts=list(accounts), description=description,
                after_event=last, enabled=True, disabled_reason="", created=utcnow(),
            )  # fmt: skip
            s.add(row)
            await s.commit()
            self.webhooks_changed.fire()
            return _view(row, utcnow())

    async def webhooks(self) -> list[WebhookView]:
        now = utcnow()
        async with self._session() as s:
            return [_view(r, now) for r in await s.scalars(select(Webhook).order_by(Webhook.id))]

    async def webhook(self, webhook_id: int) -> WebhookView:
        async with self._session() as s:
            return _view(await self._hook(s, webhook_id), utcnow())

    async def webhook_target(self, webhook_id: int) -> tuple[str, list[str]]:
        """The endpoint's URL and the secrets that sign for it (the new one first)."""
        async with self._session() as s:
            row = await self._hook(s, webhook_id)
            return self._box.open(row.url), self._secrets(row, utcnow())

    def _secrets(self, row: Webhook, now: dt.datetime) -> list[str]:
        found = [self._box.open(row.secret)]
        if row.old_secret is not None and row.old_until and row.old_until > now:
            found.append(self._box.open(row.old_secret))
        return found

    async def update_webhook(
        self, webhook_id: int, *, url: str | None = None, shown: str | None = None,
        events: Sequence[str] | None = None, accounts: Sequence[int] | None = None,
        description: str | None = None, enabled: bool | None = None,
    ) -> WebhookView:  # fmt: skip
        async with self._session() as s:
            row = await self._hook(s, webhook_id)
            if url is not None and shown is not None:
                row.url, row.shown = self._box.seal(url), shown
            if events is not None:
                row.events = list(events)
            if accounts is not None:
                row.accounts = list(accounts)
            if description is not None:
                row.description = description
            if enabled is not None:
                if enabled and not row.enabled:
                    await self._listening_from_now(s)
                row.enabled = enabled
                if enabled:  # a fresh start: its failures so far no longer count
                    row.disabled_reason, row.failing_since = "", None
            await s.commit()
            if enabled:
                self.webhooks_changed.fire()
            return _view(row, utcnow())

    async def remove_webhook(self, webhook_id: int) -> None:
        async with self._session() as s:
            await s.delete(await self._hook(s, webhook_id))
            await s.commit()

    async def rotate_webhook(
        self, webhook_id: int, secret: str, *, now: dt.datetime
    ) -> WebhookView:
        """A new signing secret; the old one still signs for :data:`OLD_SECRET_VALID`."""
        async with self._session() as s:
            row = await self._hook(s, webhook_id)
            row.old_secret, row.old_until = row.secret, now + OLD_SECRET_VALID
            row.secret = self._box.seal(secret)
            await s.commit()
            return _view(row, now)

    async def _listening_from_now(self, s: Any) -> int:
        """In the transaction that enables an endpoint: the newest event's id; when no endpoint
        was enabled, the fan-out cursor moves to it (what was written while nobody listened is
        not sent). :meth:`fan_out` leaves the cursor alone while nobody listens, so that the
        events a busy server writes cost it one read each time, not a write."""
        last = int(await s.scalar(select(func.max(Event.id))) or 0)
        if await s.scalar(select(Webhook.id).where(Webhook.enabled).limit(1)) is None:
            await self._put_setting(s, CURSOR, str(last).encode())
        return last

    # -- the outbox ----------------------------------------------------------------------------

    async def fan_out(self, *, now: dt.datetime, limit: int = 1000) -> int | None:
        """Deliveries for the events after the cursor (up to ``limit`` events), and the cursor
        moved past them, in one transaction; how many deliveries were made (None: no endpoint
        is enabled, nothing was read)."""
        async with self._session() as s:
            hooks = list(await s.scalars(select(Webhook).where(Webhook.enabled)))
            if not hooks:  # nobody listens (see _listening_from_now)
                return None
            if self.dialect == "postgresql":
                await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FANOUT_LOCK})
            last = await self._setting(s, CURSOR)
            cursor = int(last) if last is not None else min(h.after_event for h in hooks)
            events = list(await s.scalars(
                select(Event).where(Event.id > cursor).order_by(Event.id).limit(limit)
            ))  # fmt: skip
            if not events:
                return 0
            rows = [
                {"webhook_id": h.id, "event_id": e.id, "kind": e.kind, "payload": payload_of(e),
                 "status": "pending", "attempts": 0, "next_at": now, "created": now}
                for e in events for h in hooks if _wants(h, e)
            ]  # fmt: skip
            if rows:
                await s.execute(insert(WebhookDelivery), rows)
            await self._put_setting(s, CURSOR, str(events[-1].id).encode())
            # Housekeeping, a bounded bit each time: finished deliveries of long ago.
            old = select(WebhookDelivery.id).where(
                WebhookDelivery.done < now - DELIVERIES_KEPT
            ).limit(1000)  # fmt: skip
            await s.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))
            await s.commit()
            return len(rows)

    async def due_webhooks(self, *, now: dt.datetime) -> set[int]:
        """The enabled endpoints that have deliveries due and unclaimed."""
        free = WebhookDelivery.claimed_until.is_(None) | (WebhookDelivery.claimed_until < now)
        async with self._session() as s:
            rows = await s.scalars(
                select(WebhookDelivery.webhook_id).distinct()
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_at <= now,
                       free, Webhook.enabled)
            )  # fmt: skip
            return set(rows)

    async def claim_deliveries(
        self, worker: str, webhook_id: int, *, now: dt.datetime, hold: float, limit: int = 100
    ) -> list[tuple[DeliveryView, str, list[str]]]:
        """Claim one endpoint's due deliveries for ``hold`` seconds (none while it is
        disabled): each with the endpoint's URL and signing secrets, in event order."""
        async with self._session() as s:
            hook = await s.get(Webhook, webhook_id)
            if hook is None or not hook.enabled:
                return []
            due = (
                (WebhookDelivery.webhook_id == webhook_id)
                & (WebhookDelivery.status == "pending")
                & (WebhookDelivery.next_at <= now)
            )
            won = await claim_rows(
                s, WebhookDelivery, due, (WebhookDelivery.next_at, WebhookDelivery.id),
                worker=worker, now=now, hold=hold, limit=limit,
            )  # fmt: skip
            await s.commit()
            if not won:
                return []
            rows = list(await s.scalars(
                select(WebhookDelivery).where(WebhookDelivery.id.in_(won))
                .order_by(WebhookDelivery.event_id, WebhookDelivery.id)
                .execution_options(populate_existing=True)
            ))  # fmt: skip
            url, keys = self._box.open(hook.url), self._secrets(hook, now)
            return [(_delivery(r), url, keys) for r in rows]

    async def finish_deliveries(
        self, worker: str, outcomes: Sequence[Outcome], *, now: dt.datetime,
        schedule: Sequence[float] = RETRIES,
    ) -> None:  # fmt: skip
        """Record attempts: delivered, to be retried on ``schedule``, or failed; an endpoint
        that has only failed for :data:`DISABLE_AFTER` is disabled. One transaction."""
        if not outcomes:
            return
        async with self._session() as s:
            rows = {r.id: r for r in await s.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.id.in_([o.delivery_id for o in outcomes]),
                    WebhookDelivery.claimed_by == worker,
                )
            )}  # fmt: skip
            attempts = []
            result: dict[int, bool] = {}  # per endpoint: any success in this batch
            for o in outcomes:
                row = rows.get(o.delivery_id)
                if row is None:
                    continue  # the claim ran out and another worker took it: theirs now
                attempts.append({"webhook_id": row.webhook_id, "delivery_id": row.id, "at": now,
                                 "status_code": o.status_code, "ms": o.ms,
                                 "outcome": bounded(o.said, 500)})  # fmt: skip
                row.claimed_by, row.claimed_until = None, None
                if o.ok:
                    row.status, row.done = "delivered", now
                elif row.attempts > len(schedule):
                    row.status, row.done = "failed", now
                else:
                    row.next_at = now + dt.timedelta(seconds=schedule[row.attempts - 1])
                result[row.webhook_id] = result.get(row.webhook_id, False) or o.ok
            if attempts:
                await s.execute(insert(WebhookAttempt), attempts)
            for hook in await s.scalars(select(Webhook).where(Webhook.id.in_(result))):
                if result[hook.id]:
                    hook.failing_since = None
                elif hook.failing_since is None:
                    hook.failing_since = now
                elif hook.failing_since < now - DISABLE_AFTER and hook.enabled:
                    hook.enabled = False
                    hook.disabled_reason = (
                        f"disabled {now:%Y-%m-%d %H:%M} UTC: every delivery failed since "
                        f"{hook.failing_since:%Y-%m-%d %H:%M} UTC; fix the receiver, then "
                        "enable it (its pending deliveries wait)"
                    )
                newest = select(WebhookAttempt.id).where(
                    WebhookAttempt.webhook_id == hook.id
                ).order_by(WebhookAttempt.id.desc()).limit(ATTEMPTS_KEPT)  # fmt: skip
                await s.execute(delete(WebhookAttempt).where(
                    WebhookAttempt.webhook_id == hook.id, WebhookAttempt.id.not_in(newest)
                ))  # fmt: skip
            await s.commit()

    async def next_delivery_at(self) -> dt.datetime | None:
        async with self._session() as s:
            found = await s.scalar(
                select(func.min(WebhookDelivery.next_at)).where(
                    WebhookDelivery.status == "pending", WebhookDelivery.claimed_by.is_(None)
                )
            )
            return found

    async def deliveries(
        self, webhook_id: int, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryView]:
        """The endpoint's deliveries, newest first."""
        if status is not None and status not in DELIVERY_STATES:
            raise StoreError(f"status {status!r} is unknown; use {', '.join(DELIVERY_STATES)}")
        async with self._session() as s:
            await self._hook(s, webhook_id)
            query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            if status is not None:
                query = query.where(WebhookDelivery.status == status)
            rows = await s.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit))
            return [_delivery(r) for r in rows]

    async def delivery_counts(self) -> dict[int, dict[str, int]]:
        """Per endpoint, its deliveries by status."""
        async with self._session() as s:
            rows = await s.execute(
                select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
                .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
            )  # fmt: skip
            found: dict[int, dict[str, int]] = {}
            for webhook_id, status, n in rows:
                found.setdefault(webhook_id, {})[status] = int(n)
            return found

    async def attempts(self, webhook_id: int, *, limit: int = 100) -> list[AttemptView]:
        """The endpoint's attempts, newest first."""
        async with self._session() as s:
            await self._hook(s, webhook_id)
            rows = await s.scalars(
                select(WebhookAttempt).where(WebhookAttempt.webhook_id == webhook_id)
                .order_by(WebhookAttempt.id.desc()).limit(limit)
            )  # fmt: skip
            return [AttemptView(r.id, r.delivery_id, r.at, r.status_code, r.ms, r.outcome)
                    for r in rows]  # fmt: skip

    async def redeliver(self, webhook_id: int, delivery_id: int, *, now: dt.datetime) -> None:
        """Send a delivery again now, with a new round of attempts (same id, same body)."""
        async with self._session() as s:
            row = await s.get(WebhookDelivery, delivery_id)
            if row is None or row.webhook_id != webhook_id:
                raise NotFoundError(f"webhook {webhook_id} has no delivery {delivery_id}")
            row.status, row.next_at, row.attempts, row.done = "pending", now, 0, None
            row.claimed_by = row.claimed_until = None
            await s.commit()

    async def replay(
        self, webhook_id: int, *, after_event: int | None = None,
        since: dt.datetime | None = None, now: dt.datetime,
    ) -> int:  # fmt: skip
        """Queue again every event after ``after_event`` (or written at or after ``since``)
        that the endpoint wants, up to :data:`REPLAY_MAX`; how many. Each keeps its
        ``webhook-id``: receivers that keep the ids they saw skip what they have."""
        async with self._session() as s:
            hook = await self._hook(s, webhook_id)
            query = select(Event).order_by(Event.id).limit(REPLAY_MAX)
            if after_event is not None:
                query = query.where(Event.id > after_event)
            if since is not None:
                query = query.where(Event.at >= since)
            events = [e for e in await s.scalars(query)
                      if (not hook.events or e.kind in hook.events)
                      and (not hook.accounts or e.account_id in hook.accounts)]  # fmt: skip
            if not events:
                return 0
            ids = [e.id for e in events]
            await s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == webhook_id,
                       WebhookDelivery.event_id.in_(ids))
                .values(status="pending", next_at=now, attempts=0, done=None, claimed_by=None,
                        claimed_until=None)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            have = set(await s.scalars(
                select(WebhookDelivery.event_id).where(
                    WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.event_id.in_(ids)
                )
            ))  # fmt: skip
            missing = [
                {"webhook_id": webhook_id, "event_id": e.id, "kind": e.kind,
                 "payload": payload_of(e), "status": "pending", "attempts": 0, "next_at": now,
                 "created": now}
                for e in events if e.id not in have
            ]  # fmt: skip
            if missing:
                await s.execute(insert(WebhookDelivery), missing)
            await s.commit()
            return len(events)
