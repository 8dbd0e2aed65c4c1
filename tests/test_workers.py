"""Several `serve` workers on one PostgreSQL database, as real processes against a real IMAP
server (the sandbox): the accounts are shared out, and when a worker is killed (-9) the others
take its accounts over within the lease time, with no mail lost and none reported twice."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from imapscope.sandbox import SandboxServer, build_store, ensure_certificates
from imapscope.store import AccountSpec, Store
from tests.scripted import running
from tests.servers.postgres import Postgres
from tests.test_serve_cli import until

ACCOUNTS = 12
TTL = 3.0


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[SandboxServer, Path]]:
    certificates = ensure_certificates(tmp_path / "certs")
    store = build_store([(f"u{i}", f"pw-{i:04d}") for i in range(ACCOUNTS)], demo_messages=3)
    server = SandboxServer(store, port=0, tls_port=0, smtp_port=0,
                           tls_context=certificates.server_context())  # fmt: skip
    with running(server):
        yield server, certificates.ca_file


def query(data: Path, url: str, work: Any) -> Any:
    async def main() -> Any:
        store = await Store.open(data, url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_a_killed_worker_s_accounts_are_taken_over_with_nothing_lost(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], tmp_path: Path
) -> None:
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"  # shared by the workers: it holds the key that seals the secrets

    async def register(store: Store) -> None:
        for i in range(ACCOUNTS):
            spec = AccountSpec(email=f"u{i}@example.test", host="localhost",
                               port=server.tls_port or 0, security="tls", username=f"u{i}",
                               poll_interval=60)  # fmt: skip
            await store.add_account(spec, f"pw-{i:04d}")

    query(data, url, register)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imapscope",
                "serve",
                "--data-dir",
                str(data),
                "--port",
                "0",
                "--database",
                url,
                "--lease-ttl",
                str(TTL),
                "--ca-file",
                str(ca_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:

        async def overview(store: Store) -> tuple[dict[int, str | None], dict[int, str]]:
            owners = await store.lease_owners()
            states = {a.id: a.state for a in await store.accounts()}
            return owners, states

        def shared_out() -> bool:
            owners, states = query(data, url, overview)
            held = Counter(o for o in owners.values() if o)
            return (set(states.values()) == {"idle"} and len(held) == 3
                    and max(held.values()) <= ACCOUNTS // 3 + 1)  # fmt: skip

        try:
            until("every account idle, shared by the three workers", shared_out, timeout=30)
        except AssertionError:
            owners, states = query(data, url, overview)
            alive = [w.poll() is None for w in workers]
            raise AssertionError(f"owners {owners} states {states} alive {alive}") from None
        owners, _ = query(data, url, overview)
        victim = next(w for w in workers if any(o and f":{w.pid}:" in o for o in owners.values()))
        orphaned = sorted(a for a, o in owners.items() if o and f":{victim.pid}:" in o)
        assert orphaned

        async def cursor(store: Store) -> int:
            events = await store.events(limit=1000)
            return events[-1].id if events else 0

        start = query(data, url, cursor)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        # Mail arrives for an orphaned account while nobody syncs it.
        message = EmailMessage()
        target = orphaned[0] - 1
        message["From"], message["To"] = "bob@example.test", f"u{target}@example.test"
        message["Subject"] = "sent during the failover"
        message.set_content("hello")
        with smtplib.SMTP("127.0.0.1", server.smtp_port or 0) as smtp:
            smtp.send_message(message)

        def taken_over() -> bool:
            owners, states = query(data, url, overview)
            alive = {o for o in owners.values() if o and f":{victim.pid}:" not in o}
            return (all(owners[a] in alive for a in orphaned)
                    and all(states[a] == "idle" for a in orphaned))  # fmt: skip

        until("the orphaned accounts idle on the other workers", taken_over, timeout=TTL + 20)
        took = time.monotonic() - killed_at

        async def new_mail(store: Store) -> list[tuple[int, str, int]]:
            found = [e for e in await store.events(after=start, limit=1000)
                     if e.kind == "message.new"]  # fmt: skip
            return [(e.account_id, e.data["folder"], e.data["uid"]) for e in found]

        def arrived() -> list[tuple[int, str, int]]:
            return [m for m in query(data, url, new_mail) if m[0] == orphaned[0]]

        until("the message sent during the failover", arrived, timeout=15)
        time.sleep(1.0)  # any duplicate would be written by now
        delivered = query(data, url, new_mail)
        assert len([m for m in delivered if m[0] == orphaned[0]]) == 1
        assert len(delivered) == len(set(delivered))  # no message reported twice
        assert took < TTL + 15, took
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
            assert worker.stderr is not None
            worker.stderr.close()
