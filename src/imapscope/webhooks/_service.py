"""Delivering webhooks: each worker fans out new events into the outbox, and drains the due
deliveries of each endpoint in a task of that endpoint's own, so a slow or dead receiver delays
no other. Deliveries to one endpoint run up to :data:`PARALLEL` at a time: they are not
ordered (each payload carries the event's id, which only grows)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from imapscope.store import RETRIES, DeliveryView, Outcome, Store
from imapscope.webhooks._http import Attempt, post, session

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("imapscope.webhooks")

#: Deliveries to one endpoint in flight at once.
PARALLEL = 16
#: Deliveries one endpoint's task claims at a time.
BATCH = 200
#: How long a claim lasts: a batch's worst case (every attempt timing out) fits in it.
CLAIM_HOLD = 180.0
#: How often a worker looks for work other workers made (seconds); its own is seen at once.
POLL = 1.0


def _body(delivery: DeliveryView) -> str:
    return orjson.dumps(delivery.payload).decode()


def message_id(delivery: DeliveryView) -> str:
    """The ``webhook-id``: the same on every attempt and replay of one event."""
    return f"evt_{delivery.event_id}"


class WebhookService:
    """Start with :meth:`start`, stop with :meth:`stop`. ``schedule`` (seconds between
    attempts) and ``clock`` are for tests."""

    def __init__(
        self, store: Store, worker_id: str, *, schedule: Sequence[float] = RETRIES,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:  # fmt: skip
        self.store = store
        self.worker_id = worker_id
        self.schedule = tuple(schedule)
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._drains: dict[int, asyncio.Task[None]] = {}
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._drains.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()

    async def _loop(self) -> None:
        while True:
            try:
                while made := await self.store.fan_out(now=self.clock()):
                    pass  # a backlog: fan it all out (1,000 events at a time)
                if made is None:
                    # No endpoint is enabled: nothing to send, and events written meanwhile
                    # are not for anyone (an endpoint gets those written after it is added or
                    # enabled). Woken by an endpoint added or enabled in this process, or
                    # after POLL (one added through another worker); not at each event write,
                    # which would ask the database once per write for nothing.
                    await self.store.webhooks_changed.wait(POLL)
                    continue
                for webhook_id in await self.store.due_webhooks(now=self.clock()):
                    running = self._drains.get(webhook_id)
                    if running is None or running.done():
                        self._drains[webhook_id] = asyncio.create_task(
                            self._drain(webhook_id), name=f"webhook-{webhook_id}"
                        )
                wait = POLL
                if not any(not t.done() for t in self._drains.values()):
                    # Nothing being sent: wake for the next retry that falls due (a drain
                    # under way takes what falls due meanwhile itself).
                    due = await self.store.next_delivery_at()
                    if due is not None:
                        wait = min(POLL, max(0.0, (due - self.clock()).total_seconds()))
            except Exception:  # the loop must outlive a passing database error
                log.exception("webhooks: fan-out failed; trying again in %ss", POLL)
                wait = POLL
            await self.store.events_written.wait(wait)

    async def _drain(self, webhook_id: int) -> None:
        """Send one endpoint's due deliveries until none is left."""
        if self._client is None:  # made at the first delivery: nothing to import before
            self._client = session()
        gate = asyncio.Semaphore(PARALLEL)
        client = self._client

        async def attempt(delivery: DeliveryView, url: str, keys: list[str]) -> Outcome:
            async with gate:
                done: Attempt = await post(client, url, keys, message_id(delivery),
                                           _body(delivery))  # fmt: skip
            return Outcome(delivery.id, done.ok, done.status, done.ms, done.said)

        try:
            while True:
                claimed = await self.store.claim_deliveries(
                    self.worker_id, webhook_id, now=self.clock(), hold=CLAIM_HOLD, limit=BATCH
                )
                if not claimed:
                    return
                outcomes = await asyncio.gather(*(attempt(*c) for c in claimed))
                await self.store.finish_deliveries(
                    self.worker_id, outcomes, now=self.clock(), schedule=self.schedule
                )
        except Exception:
            log.exception("webhooks: delivering to endpoint %s failed; trying again", webhook_id)


async def send_test(store: Store, webhook_id: int) -> Attempt:
    """A ``webhook.test`` message to the endpoint now (not through the outbox): how it went."""
    url, keys = await store.webhook_target(webhook_id)
    now = dt.datetime.now(dt.UTC)
    body = orjson.dumps({
        "type": "webhook.test", "timestamp": now.isoformat(),
        "data": {"webhook_id": webhook_id, "text": "a test message from imapscope"},
    }).decode()  # fmt: skip
    async with session() as client:
        return await post(client, url, keys, f"test_{webhook_id}_{int(now.timestamp())}", body)
