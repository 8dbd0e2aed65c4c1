"""Webhook delivery: throughput to a local receiver, and latency from an SMTP delivery to the
signed webhook.

    .venv/bin/python -m bench.webhooks [--events 20000] [--rounds 100]

`imapscope serve` (its own process, on SQLite) with one webhook endpoint pointed at a receiver
in this process (asyncio, HTTP/1.1 keep-alive, answers 204 and counts).

1. Throughput: ``--events`` events written straight into the store's event table (as the sync
   engine writes them, in batches of 1,000) while serve runs; from the first write to the
   last delivery received: events delivered per second. Target (issue 15): >= 1,000/s.
2. Latency: the sandbox (its own process) with an account registered and idle; ``--rounds``
   messages delivered over its SMTP, one at a time; from the end of each SMTP transaction to its
   ``message.new`` webhook arriving: p50/p99. Target: p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import httpx

from bench._sandbox import ready, sandbox, wait_idle
from bench.accounts_idle import serve, stop
from bench.expect import pct
from imapscope.store import AccountSpec, Store


class Receiver:
    """A minimal HTTP/1.1 server on a thread: answers every POST with 204, notes when each
    body arrived."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    body = await reader.readexactly(length)
                    self.arrived.append((time.perf_counter(), body))
                    writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def main() -> None:
            server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await server.serve_forever()

        self.loop.run_until_complete(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def write_events(data: Path, account_id: int, n: int) -> float:
    """Write ``n`` events in batches of 1,000 (one transaction each); when the first went."""
    from sqlalchemy import insert  # noqa: PLC0415

    from imapscope.store._models import Event  # noqa: PLC0415

    store = await Store.open(data)
    try:
        first = time.perf_counter()
        for start in range(0, n, 1000):
            async with store._session() as s:  # the sync engine's bulk path
                await s.execute(insert(Event), [
                    {"account_id": account_id, "kind": "message.new",
                     "data": {"folder": "INBOX", "uid": i + 1, "subject": f"bench {i}"}}
                    for i in range(start, min(n, start + 1000))
                ])  # fmt: skip
                await s.commit()
        return first
    finally:
        await store.close()


async def add_account(data: Path, port: int) -> int:
    store = await Store.open(data)
    try:
        spec = AccountSpec(email="alice@example.test", host="localhost", port=port,
                           security="tls", username="alice", poll_interval=3600)  # fmt: skip
        return int((await store.add_account(spec, "pw")).id)
    finally:
        await store.close()


def throughput(api: httpx.Client, data: Path, account_id: int, n: int) -> tuple[float, float]:
    receiver = Receiver()
    api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["message.new"]})
    first = asyncio.run(write_events(data, account_id, n))
    deadline = time.monotonic() + 600
    while len(receiver.arrived) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(receiver.arrived) < n:
        raise SystemExit(f"only {len(receiver.arrived)} of {n} webhooks arrived in 600 s")
    elapsed = receiver.arrived[-1][0] - first
    return n / elapsed, elapsed


def latency(api: httpx.Client, smtp_port: int, rounds: int) -> list[float]:
    receiver = Receiver()
    api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["message.new"]})
    found: list[float] = []
    for i in range(rounds):
        message = EmailMessage()
        message["From"], message["To"] = "bench@example.test", "alice@example.test"
        message["Subject"] = f"latency {i}"
        message.set_content("hello")
        before = len(receiver.arrived)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
            sent = time.perf_counter()
        deadline = time.monotonic() + 30
        while True:
            got = [a for a, body in receiver.arrived[before:]
                   if json.loads(body)["data"].get("subject") == f"latency {i}"]  # fmt: skip
            if got:
                found.append(got[0] - sent)
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"round {i}: no webhook within 30 s")
            time.sleep(0.001)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox(Path(tmp) / "sandbox") as box:
        data = Path(tmp) / "serve"
        account_id = asyncio.run(add_account(data, box.tls_port))
        served = serve(data, box.ca_file)
        try:
            headers = {"Authorization": f"Bearer {served.token}"}
            with httpx.Client(base_url=served.url, headers=headers, timeout=30) as api:
                ready(api)
                wait_idle(api, account_id)
                rate, elapsed = throughput(api, data, account_id, args.events)
                for hook in api.get("/api/v1/webhooks").json():
                    api.delete(f"/api/v1/webhooks/{hook['id']}")
                waits = [v * 1000 for v in latency(api, box.smtp_port, args.rounds)]
        finally:
            stop(served.proc)
    print(f"throughput: {args.events} events delivered in {elapsed:.2f} s = {rate:,.0f} "
          f"events/s (one endpoint; target >= 1,000/s)")  # fmt: skip
    print(f"latency, SMTP delivery -> signed webhook received ({args.rounds} rounds): "
          f"p50 {pct(waits, 50):.1f} ms, p99 {pct(waits, 99):.1f} ms, max {max(waits):.1f} ms "
          "(target p99 <= 250 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
