"""`imapscope serve` in a thread of the test process: the real app (API and web UI) on a free
loopback port, over uvicorn, with its SyncService against real IMAP servers (started by
:func:`imapscope.testing.serve_in_thread`, as the pytest plugin starts it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from imapscope.monitor import MonitorService
from imapscope.store import Store
from imapscope.sync import SyncOptions, SyncService
from imapscope.testing import serve_in_thread
from imapscope.webhooks import WebhookService

T = TypeVar("T")


@dataclass
class Serving:
    url: str
    token: str
    store: Store
    service: SyncService
    loop: asyncio.AbstractEventLoop
    monitors: MonitorService
    webhooks: WebhookService

    def call(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``work(store)`` on the service's loop (the store belongs to it)."""
        return asyncio.run_coroutine_threadsafe(work(self.store), self.loop).result(30)

    def client(self, token: str | None = "") -> httpx.Client:
        """An HTTP client; with the service's token unless another (or None) is given."""
        use = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {use}"} if use else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def serving(
    data_dir: Path, options: SyncOptions, reconcile_every: float = 0.5
) -> Iterator[Serving]:
    with serve_in_thread(data_dir, options, reconcile_every=reconcile_every) as served:
        yield Serving(served.url, served.token, served.store, served.service, served.loop.loop,
                      served.app.state.monitors, served.app.state.webhooks)  # fmt: skip
