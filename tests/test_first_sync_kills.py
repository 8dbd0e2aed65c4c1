"""A first sync of a big mailbox survives `kill -9` at random points: `serve` is killed five
times while the INBOX is being stored, then runs to the end; the store equals the server (every
folder, message for message), nothing is stored twice, and the first sync of each folder is one
`folder.synced` event, with no per-message events."""

from __future__ import annotations

import asyncio
import imaplib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapscope.store import DB_FILE, AccountSpec, Store
from tests.servers.dovecot import start_dovecot
from tests.servers.rig import RunningServer, TestCA

MESSAGES = 100_000
KILLS = 5
PASSWORD = "big-pw-0001"


@pytest.fixture
def big_dovecot(test_ca: TestCA) -> Iterator[RunningServer]:
    """The rig's Dovecot with MESSAGES in the INBOX (the sandbox, in Python, serves a 100,000
    message FETCH too slowly for a test). Its mail lies in memory (/dev/shm) where there is one:
    creating 100,000 files on this machine's disk took 9 s, on tmpfs 2.7 s."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    server = start_dovecot(test_ca, users={"big": PASSWORD}, messages=MESSAGES, parent=parent)
    yield server
    server.stop()


def stored(db: Path) -> int:
    """About how many messages are stored (the highest row id: cheap, so that watching does
    not slow the writer down)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0)
    except sqlite3.Error:
        return 0


def server_counts(server: RunningServer) -> dict[str, int]:
    client = imaplib.IMAP4(server.host, server.port)
    client.login("big", PASSWORD)
    counts = {}
    _, listed = client.list()
    for line in listed:
        assert isinstance(line, bytes)
        if b"\\Noselect" in line:
            continue
        found_name = re.search(r'\) (?:"."|NIL) "?(.*?)"?$', line.decode())
        assert found_name is not None, line
        name = found_name.group(1)
        _, status = client.status(f'"{name}"', "(MESSAGES)")
        found = re.search(rb"MESSAGES (\d+)", status[0] or b"")
        assert found is not None
        counts[name] = int(found.group(1))
    client.logout()
    return counts


def test_kill_9_during_a_first_sync_five_times_then_it_completes_exactly(
    big_dovecot: RunningServer, test_ca: TestCA, tmp_path: Path
) -> None:
    server, ca_file = big_dovecot, test_ca.ca_file
    data = tmp_path / "data"

    async def register() -> int:
        store = await Store.open(data)
        spec = AccountSpec(email="big@example.test", host="localhost", port=server.tls_port,
                           security="tls", username="big")  # fmt: skip
        added = await store.add_account(spec, PASSWORD)
        await store.close()
        return added.id

    account_id = asyncio.run(register())
    # The default lease time (30 s): a killed serve's lease is taken over at once by the next
    # one on this machine (its lock in the data directory is gone), not after the lease time.
    command = [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(data), "--port",
               "0", "--ca-file", str(ca_file)]  # fmt: skip
    rng = random.Random(20261201)
    points = sorted(rng.randrange(MESSAGES // 20, MESSAGES * 19 // 20) for _ in range(KILLS))
    seen: list[int] = []
    for point in points:
        before = stored(data / DB_FILE)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            while stored(data / DB_FILE) == before and time.monotonic() - started < 60:
                time.sleep(0.05)
            resumed = time.monotonic() - started
            assert resumed < 20, f"a restart waited {resumed:.0f} s to write (lease time 30 s)"
            deadline = time.monotonic() + 120
            while stored(data / DB_FILE) < point and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"serve exited ({proc.returncode}) before {point}")
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        seen.append(stored(data / DB_FILE))
    assert seen == sorted(seen)  # each restart went on from where the last was killed
    assert seen[-1] < MESSAGES  # the last kill came before the end

    expected = server_counts(server)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        async def state() -> tuple[str, dict[str, int]]:
            store = await Store.open(data)
            try:
                account = await store.account(account_id)
                return account.state, await store.folder_counts(account_id)
            finally:
                await store.close()

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            current, counts = asyncio.run(state())
            if current == "idle" and counts == expected:
                break
            time.sleep(0.2)
        assert (current, counts) == ("idle", expected)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

    with sqlite3.connect(data / DB_FILE) as conn:
        doubled = conn.execute(
            "SELECT count(*) FROM (SELECT folder_id, uid FROM messages "
            "GROUP BY folder_id, uid HAVING count(*) > 1)"
        ).fetchone()[0]
        events = Counter(kind for (kind,) in conn.execute("SELECT kind FROM events"))
        synced = Counter(
            folder for (folder,) in conn.execute(
                "SELECT json_extract(data, '$.folder') FROM events WHERE kind = 'folder.synced'"
            )
        )  # fmt: skip
    assert doubled == 0
    assert events["message.new"] == 0  # a first sync reports folders, not each message
    assert synced == Counter(dict.fromkeys(expected, 1))  # one folder.synced per folder
