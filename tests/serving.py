"""`imapscope serve` in a thread of the test process: the real app (API and web UI) on a free
loopback port, over uvicorn, with its SyncService against real IMAP servers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from imapscope.api import create_app
from imapscope.cli_serve import bind, first_token
from imapscope.monitor import MonitorService
from imapscope.store import Store
from imapscope.sync import SyncOptions, SyncService

T = TypeVar("T")


@dataclass
class Serving:
    url: str
    token: str
    store: Store
    service: SyncService
    loop: asyncio.AbstractEventLoop
    monitors: MonitorService

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
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = bind("127.0.0.1", 0)
    holder: dict[str, Any] = {}

    async def start() -> Serving:
        store = await Store.open(data_dir)
        # A data directory that served before (a restart, a second worker) has its first
        # token already: these tests get one of their own.
        token = await first_token(store) or (await store.create_token("tests"))[1]
        service = SyncService(store, options, reconcile_every=reconcile_every)
        app = create_app(service, manage_service=True)
        holder["app"] = app
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        holder["server"] = server
        holder["task"] = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        app.state.monitors.public_url = f"http://127.0.0.1:{port}"
        return Serving(f"http://127.0.0.1:{port}", token, store, service, loop, app.state.monitors)

    async def stop(s: Serving) -> None:
        holder["server"].should_exit = True
        await holder["task"]
        await s.store.close()

    s = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield s
    finally:
        asyncio.run_coroutine_threadsafe(stop(s), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sock.close()
