"""``imapscope serve`` and the sandbox in a thread of the calling process, on free loopback ports:
what the ``imapscope_mailbox`` fixture starts, and what imapscope's own tests serve from."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from imapscope.testing._client import AsyncMailbox, Mailbox, _Target

T = TypeVar("T")

__all__ = ["LocalStack", "LoopThread", "Served", "local_stack", "serve_in_thread"]


class LoopThread:
    """An asyncio event loop running in a daemon thread; :meth:`run` a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="imapscope-loop")  # fmt: skip
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Served:
    """A serve running on a :class:`LoopThread`: its URL, a token, and its parts."""

    url: str
    token: str
    store: Any  # imapscope.store.Store
    service: Any  # imapscope.sync.SyncService
    app: Any  # the FastAPI app
    loop: LoopThread


@contextlib.contextmanager
def serve_in_thread(
    data_dir: Path, options: Any, *, loop: LoopThread | None = None, reconcile_every: float = 0.5
) -> Iterator[Served]:
    """Serve (API, UI, sync, monitors) on a free loopback port until the block ends."""
    import uvicorn  # noqa: PLC0415 - heavy: only when serving

    from imapscope.api import create_app  # noqa: PLC0415
    from imapscope.cli_serve import bind, first_token  # noqa: PLC0415
    from imapscope.store import Store  # noqa: PLC0415
    from imapscope.sync import SyncService  # noqa: PLC0415

    own = loop is None
    runner = loop or LoopThread()
    sock = bind("127.0.0.1", 0)
    holder: dict[str, Any] = {}

    async def start() -> Served:
        store = await Store.open(data_dir)
        # A data directory that served before (a restart, a second worker) has its first
        # token already: a new one for this caller.
        token = await first_token(store) or (await store.create_token("local"))[1]
        service = SyncService(store, options, reconcile_every=reconcile_every)
        app = create_app(service, manage_service=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        holder["server"] = server
        holder["task"] = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if holder["task"].done():
                await holder["task"]  # raises why it did not start
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app.state.monitors.public_url = url
        return Served(url, token, store, service, app, runner)

    async def stop(served: Served) -> None:
        holder["server"].should_exit = True
        await holder["task"]
        await served.store.close()

    try:
        served = runner.run(start())
        try:
            yield served
        finally:
            runner.run(stop(served))
    finally:
        sock.close()
        if own:
            runner.close()


@dataclass
class LocalStack:
    """The sandbox (IMAP and SMTP, open mode) and a serve syncing one of its mailboxes."""

    served: Served
    sandbox: Any  # imapscope.sandbox.SandboxServer
    account_id: int
    address: str

    def target(self) -> _Target:
        smtp = ("127.0.0.1", self.sandbox.smtp_port or 0)
        return _Target(self.served.url, self.served.token, self.account_id, self.address, smtp)

    def mailbox(self) -> Mailbox:
        return Mailbox(self.target())

    def async_mailbox(self) -> AsyncMailbox:
        return AsyncMailbox(self.target())


@contextlib.contextmanager
def local_stack(directory: Path | None = None, *, user: str = "tester") -> Iterator[LocalStack]:
    """Start the sandbox and serve in this process (one thread), register the sandbox's
    mailbox ``user`` with serve, and wait until it is synced and idle."""
    from imapscope.sandbox import SandboxServer, build_store, ensure_certificates  # noqa: PLC0415
    from imapscope.store import AccountSpec  # noqa: PLC0415
    from imapscope.sync import SyncOptions  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imapscope-")))
        certificates = ensure_certificates(directory / "certs")
        password = secrets.token_urlsafe(16)
        store = build_store([(user, password)], open_mode=True)
        sandbox = SandboxServer(store, port=0, tls_port=0, smtp_port=0,
                                tls_context=certificates.server_context())  # fmt: skip
        loop = LoopThread()
        stack.callback(loop.close)
        loop.run(sandbox.start())
        stack.callback(lambda: loop.run(sandbox.stop()))
        options = SyncOptions(ca_file=str(certificates.ca_file), timeout=10)
        served = stack.enter_context(serve_in_thread(directory / "serve", options, loop=loop))
        address = f"{user}@imapscope.test"
        spec = AccountSpec(email=address, host="localhost", port=sandbox.tls_port or 0,
                           security="tls", username=user, poll_interval=60)  # fmt: skip

        async def register() -> int:
            added = await served.store.add_account(spec, password)
            await served.service.reconcile()
            for _ in range(3000):  # 30 s
                if (await served.store.account(added.id)).state == "idle":
                    return int(added.id)
                await asyncio.sleep(0.01)
            account = await served.store.account(added.id)
            raise RuntimeError(f"the sandbox mailbox did not sync: it is {account.state}")

        account_id = loop.run(register(), timeout=40)
        yield LocalStack(served, sandbox, account_id, address)
