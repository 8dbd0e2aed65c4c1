"""Several `serve` workers on one PostgreSQL database, as real processes against a real IMAP
server (the sandbox): the accounts are shared out, and when a worker is killed (-9) the others
take its accounts over within the lease time, with no mail lost and none reported twice."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
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


def register_accounts(data: Path, url: str, server: SandboxServer) -> None:
    """The sandbox's ACCOUNTS users as accounts (each its own login)."""

    async def register(store: Store) -> None:
        for i in range(ACCOUNTS):
            spec = AccountSpec(email=f"u{i}@example.test", host="localhost",
                               port=server.tls_port or 0, security="tls", username=f"u{i}",
                               poll_interval=60)  # fmt: skip
            await store.add_account(spec, f"pw-{i:04d}")

    query(data, url, register)


async def every_event(store: Store) -> list[Any]:
    """Every event in the store, oldest first (read in pages)."""
    found: list[Any] = []
    while batch := await store.events(after=found[-1].id if found else 0, limit=1000):
        found += batch
    return found


async def reported(store: Store) -> list[tuple[int, str, int, str]]:
    """(account, folder, uid, subject) of every ``message.new`` event."""
    return [(e.account_id, e.data["folder"], e.data["uid"], e.data.get("subject"))
            for e in await every_event(store) if e.kind == "message.new"]  # fmt: skip


async def _last_event_id(store: Store) -> int:
    events = await every_event(store)
    return events[-1].id if events else 0


def start_worker(data: Path, url: str, ca_file: Path, **io: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(data), "--port", "0",
         "--database", url, "--lease-ttl", str(TTL), "--ca-file", str(ca_file)],
        text=True, **({"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} | io),
    )  # fmt: skip


def stop_all(workers: list[subprocess.Popen[str]]) -> None:
    """SIGTERM to every worker still running, then wait (kill what does not stop)."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        if worker.stderr is not None:
            worker.stderr.close()


def test_a_killed_worker_s_accounts_are_taken_over_with_nothing_lost(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], tmp_path: Path
) -> None:
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"  # shared by the workers: it holds the key that seals the secrets
    register_accounts(data, url, server)
    workers = [start_worker(data, url, ca_file, stderr=subprocess.PIPE) for _ in range(3)]
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
        stop_all(workers)


def test_serve_workers_share_one_port_the_accounts_logins_and_checks(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], tmp_path: Path
) -> None:
    """`serve --workers 2`: one port, two processes; the accounts are shared out between them;
    whichever process a request reaches shows every account, accepts a login made on the
    other, and shows a check the other runs; a killed worker is replaced; SIGTERM stops all."""
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"
    parent = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "serve", "--workers", "2", "--data-dir", str(data),
         "--port", "0", "--database", url, "--lease-ttl", str(TTL), "--ca-file", str(ca_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        lines = [parent.stdout.readline() for _ in range(4)]
        base = lines[0].split("web UI ")[1].split("/ ")[0]
        token = lines[2].strip()
        pids = [int(p) for p in lines[3].split("pids ")[1].split(", ")]
        assert len(pids) == 2, lines
        api = {"Authorization": f"Bearer {token}"}
        for i in range(ACCOUNTS):
            body = {"email": f"u{i}@example.test", "host": "localhost", "username": f"u{i}",
                    "port": server.tls_port, "secret": f"pw-{i:04d}"}  # fmt: skip
            with httpx.Client(base_url=base, headers=api, timeout=30) as client:  # new connection
                assert client.post("/api/v1/accounts", json=body).status_code == 201

        async def owners(store: Store) -> dict[int, str | None]:
            return await store.lease_owners()

        def shared_by(expected: set[int]) -> bool:
            held = Counter(o.split(":")[1] for o in query(data, url, owners).values() if o)
            return set(map(int, held)) == expected and max(held.values()) <= ACCOUNTS // 2 + 1

        until("the accounts shared by the two workers", lambda: shared_by(set(pids)), timeout=30)

        # Every request is a new connection, so they reach both workers: each answers alike.
        seen: set[int] = set()
        for _ in range(12):
            with httpx.Client(base_url=base, headers=api) as client:
                listed = client.get("/api/v1/accounts").json()
                assert len(listed) == ACCOUNTS
                seen.add(client.get("/readyz").json().get("pid"))
        assert seen == set(pids), seen  # both workers answered

        # A login made on one worker is good on the other; so is a check it runs.
        with httpx.Client(base_url=base, follow_redirects=False) as browser:
            assert browser.post("/login", data={"token": token}).status_code == 303
            cookies = dict(browser.cookies)
            csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/check").text)
            assert csrf is not None
            started = browser.post("/check", data={
                "csrf": csrf.group(1), "host": "localhost", "port": str(server.tls_port),
                "security": "tls",
            })  # fmt: skip
            assert started.status_code == 303
            check_path = started.headers["location"]
        for _ in range(12):
            with httpx.Client(base_url=base, cookies=cookies, follow_redirects=False) as other:
                assert other.get("/accounts").status_code == 200
                page = other.get(check_path)
                assert page.status_code == 200, page.text
        until("the check done", lambda: 'data-done="yes"' in httpx.get(
            base + check_path, cookies=cookies).text)  # fmt: skip

        # A worker killed is replaced; its accounts are held again by two live workers.
        os.kill(pids[0], signal.SIGKILL)

        def replaced() -> set[int]:
            held = {int(o.split(":")[1]) for o in query(data, url, owners).values() if o}
            return held if len(held) == 2 and pids[0] not in held else set()

        now_held = until("a new worker holding accounts", replaced, timeout=TTL + 20)
        assert pids[1] in now_held
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(20)
        except subprocess.TimeoutExpired:
            parent.kill()
            raise
        assert parent.stderr is not None
        said = parent.stderr.read()
        parent.stderr.close()
        assert parent.stdout is not None
        parent.stdout.close()
    assert parent.returncode == 0, said
    assert f"worker {pids[0]} exited" in said

    left = query(data, url, owners)
    assert not any(left.values())  # every lease handed back on SIGTERM


def test_several_workers_on_sqlite_ask_for_postgresql(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "imapscope", "serve", "--workers", "2", "--data-dir",
         str(tmp_path / "data"), "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "--workers 2 needs PostgreSQL" in said
    assert not (tmp_path / "data").exists()  # nothing written


def test_a_rolling_restart_under_a_trickle_of_mail_misses_nothing_and_doubles_nothing(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], tmp_path: Path
) -> None:
    """Every worker is restarted in turn (SIGTERM, then a new one) while mail keeps arriving:
    each message is reported once, none is missed."""
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"
    register_accounts(data, url, server)

    async def overview(store: Store) -> tuple[dict[int, str | None], dict[int, str]]:
        return await store.lease_owners(), {a.id: a.state for a in await store.accounts()}

    def shared_by(workers: list[subprocess.Popen[str]]) -> bool:
        owners, states = query(data, url, overview)
        pids = {int(o.split(":")[1]) for o in owners.values() if o}
        return set(states.values()) == {"idle"} and pids == {w.pid for w in workers}

    workers = [start_worker(data, url, ca_file) for _ in range(3)]
    sent: list[str] = []
    stop_sending = threading.Event()

    def trickle() -> None:
        rng = random.Random(7)
        with smtplib.SMTP("127.0.0.1", server.smtp_port or 0) as smtp:
            while not stop_sending.is_set() and len(sent) < 400:
                message = EmailMessage()
                subject = f"trickle {len(sent)}"
                message["From"] = "bob@example.test"
                message["To"] = f"u{rng.randrange(ACCOUNTS)}@example.test"
                message["Subject"] = subject
                message.set_content("hello")
                smtp.send_message(message)
                sent.append(subject)
                stop_sending.wait(0.1)

    sender = threading.Thread(target=trickle, daemon=True)
    try:
        until("every account idle, shared by three workers", lambda: shared_by(workers), 30)
        sender.start()
        for index in range(len(workers)):
            workers[index].send_signal(signal.SIGTERM)
            workers[index].wait(20)
            workers[index] = start_worker(data, url, ca_file)
            until(f"restart {index + 1}: shared by three workers again",
                  lambda: shared_by(workers), timeout=TTL + 30)  # fmt: skip
        stop_sending.set()
        sender.join(10)
        assert len(sent) >= 20

        def all_reported() -> bool:
            subjects = {r[3] for r in query(data, url, reported)}
            return set(sent) <= subjects

        until("every message sent during the restarts reported", all_reported, timeout=30)
        time.sleep(1.0)  # a duplicate would be written by now
        news = [r for r in query(data, url, reported) if str(r[3]).startswith("trickle ")]
        assert Counter(r[3] for r in news) == Counter(sent)  # each once: none missed or doubled
        assert len({r[:3] for r in news}) == len(news)
    finally:
        stop_sending.set()
        stop_all(workers)


def test_a_worker_paused_past_its_lease_wakes_up_fenced(
    postgres: Postgres, sandbox: tuple[SandboxServer, Path], tmp_path: Path
) -> None:
    """SIGSTOP a worker past its lease: the other takes its accounts over and records the mail
    that arrived meanwhile. SIGCONT: the woken worker (whose IDLE sessions now read that mail)
    writes nothing for the accounts it lost: each message is reported once."""
    server, ca_file = sandbox
    url = postgres.create_database()
    data = tmp_path / "data"
    register_accounts(data, url, server)
    workers = [start_worker(data, url, ca_file) for _ in range(2)]

    async def overview(store: Store) -> tuple[dict[int, str | None], dict[int, str]]:
        return await store.lease_owners(), {a.id: a.state for a in await store.accounts()}

    def shared() -> bool:
        owners, states = query(data, url, overview)
        pids = {int(o.split(":")[1]) for o in owners.values() if o}
        return set(states.values()) == {"idle"} and pids == {w.pid for w in workers}

    def shared_or_paused() -> bool:
        owners, states = query(data, url, overview)
        pids = {int(o.split(":")[1]) for o in owners.values() if o}
        return set(states.values()) <= {"idle", "paused"} and pids == {w.pid for w in workers}

    victim = workers[0]
    try:
        until("every account idle, shared by both workers", shared, timeout=30)
        owners, _ = query(data, url, overview)
        lost = sorted(a for a, o in owners.items() if o and f":{victim.pid}:" in o)
        assert lost
        os.kill(victim.pid, signal.SIGSTOP)
        subjects = []
        with smtplib.SMTP("127.0.0.1", server.smtp_port or 0) as smtp:
            for account_id in lost:  # the paused worker's IDLE sessions are told of these
                message = EmailMessage()
                message["From"], message["To"] = (
                    "bob@example.test",
                    f"u{account_id - 1}@example.test",
                )
                message["Subject"] = f"while paused {account_id}"
                message.set_content("hello")
                smtp.send_message(message)
                subjects.append(message["Subject"])

        def taken_over() -> bool:
            owners, states = query(data, url, overview)
            return all(owners[a] and f":{workers[1].pid}:" in owners[a] and states[a] == "idle"
                       for a in lost)  # fmt: skip

        until("the paused worker's accounts idle on the other", taken_over, timeout=TTL + 20)

        def recorded() -> bool:
            return set(subjects) <= {r[3] for r in query(data, url, reported)}

        until("the mail sent during the pause recorded", recorded, timeout=15)

        async def pause(store: Store) -> None:  # the new owner marks them "paused"
            for account_id in lost:
                await store.set_paused(account_id, True)

        query(data, url, pause)

        def all_paused() -> bool:
            return all(query(data, url, overview)[1][a] == "paused" for a in lost)

        until("the taken-over accounts paused by their new owner", all_paused, timeout=15)
        mark = query(data, url, _last_event_id)
        os.kill(victim.pid, signal.SIGCONT)
        # The woken worker's IDLE sessions read the EXISTS they were sent and go to sync (a
        # "syncing" state, new messages): every such write is refused, since the lease moved
        # on. It heartbeats, finds its leases gone and lets the accounts go; the two workers
        # then share them out again (a paused account stays "paused" whoever holds it).
        until("both workers share the accounts again", shared_or_paused, timeout=TTL + 30)
        assert victim.poll() is None  # fenced, not crashed

        async def states_since(store: Store) -> list[tuple[int, str]]:
            events = await store.events(after=mark, limit=1000)
            return [(e.account_id, e.data["state"]) for e in events
                    if e.kind == "account.state" and e.account_id in lost]  # fmt: skip

        assert all(state == "paused" for _, state in query(data, url, states_since))
        assert all_paused()
        news = [r for r in query(data, url, reported) if str(r[3]).startswith("while paused")]
        assert Counter(r[3] for r in news) == Counter(subjects)  # each once, none doubled
        assert len({r[:3] for r in news}) == len(news)
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGCONT)
        stop_all(workers)
