"""First sync of a big mailbox: a raw socket draining the metadata FETCH, against `imapscope
serve` from its start until the account is `idle` with every message stored, on SQLite and on
PostgreSQL.

Needs root (the rig, and the throwaway PostgreSQL cluster).

    .venv/bin/python -m bench.first_sync [--messages 100000] [--store sqlite|postgresql|both]
        [--profile FILE]

Prints, side by side: the raw drain (login, SELECT, ``UID FETCH 1:* (UID FLAGS INTERNALDATE
RFC822.SIZE ENVELOPE)`` read until the tagged OK: Dovecot's own speed, the floor), serve's time
from process start to `idle` with N messages stored (read from the store), split at the first
batch stored (start-up, connecting, SEARCH and the first FETCH; then the time per message of the
rest), serve's peak RSS and CPU, and the ratio serve/raw (target <= 3). ``--profile FILE``:
serve's cProfile data (``py-spy:FILE``: py-spy's samples, threads included); FILE gets the
store's name appended.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.servers.dovecot import start_dovecot
from tests.servers.postgres import Postgres, start_postgres
from tests.servers.rig import TestCA

from bench.accounts_idle import cpu_seconds, spy
from imapscope.store import DB_FILE, AccountSpec, Store

ITEMS = b"(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"


def raw_drain(port: int, ca_file: Path, user: str, password: str) -> float:
    started = time.perf_counter()
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port)) as plain, \
            context.wrap_socket(plain, server_hostname="localhost") as sock:  # fmt: skip
        reader = sock.makefile("rb", buffering=1 << 20)
        reader.readline()
        sock.sendall(f"a LOGIN {user} {password}\r\n".encode())
        while not reader.readline().startswith(b"a "):
            pass
        sock.sendall(b"b SELECT INBOX\r\n")
        while not reader.readline().startswith(b"b "):
            pass
        sock.sendall(b"c UID FETCH 1:* " + ITEMS + b"\r\n")
        while True:
            line = reader.readline()
            if line.startswith(b"c ") or not line:
                break
            if line.endswith(b"}\r\n"):
                size = int(line[line.rindex(b"{") + 1 : -3])
                reader.read(size)
    return time.perf_counter() - started


def stored_sqlite(db: Path) -> tuple[str, int]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            state = conn.execute("SELECT state FROM accounts").fetchone()
            count = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.Error:
        return "", 0
    return (state[0] if state else ""), int(count)


def stored_postgres(postgres: Postgres, database: str) -> tuple[str, int]:
    try:
        out = postgres.psql(
            "SELECT (SELECT state FROM accounts LIMIT 1) || '|' || "
            "(SELECT count(*) FROM messages)", database,
        )  # fmt: skip
    except subprocess.CalledProcessError:
        return "", 0
    state, _, count = out.partition("|")
    return state, int(count or 0)


def serve_sync(
    work: Path, port: int, ca_file: Path, *, user: str, password: str, n: int,
    database: str | None, stored: Callable[[], tuple[str, int]], profile: str | None,
) -> tuple[float, float, int, float]:  # fmt: skip
    """Seconds from serve's start to `idle` with ``n`` stored, seconds until the first
    messages were stored (start-up, connecting, the first batch), peak RSS (KiB), CPU
    seconds."""
    import asyncio  # noqa: PLC0415

    data = work / f"data-{'pg' if database else 'sqlite'}"

    async def register() -> None:
        store = await Store.open(data, database)
        spec = AccountSpec(email=f"{user}@example.test", host="localhost", port=port,
                           security="tls", username=user)  # fmt: skip
        await store.add_account(spec, password)
        await store.close()

    asyncio.run(register())
    spied = (profile or "").startswith("py-spy:")
    runner = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile and not spied else [])]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*runner, "-m", "imapscope", "serve", "--data-dir", str(data), "--port", "0",
         "--ca-file", str(ca_file), *(["--database", database] if database else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sampler = spy(proc.pid, (profile or "")[7:]) if spied else None
    peak, cpu, first = 0, 0.0, 0.0
    try:
        while time.perf_counter() - started < 600:
            state, count = stored()
            if count and not first:
                first = time.perf_counter() - started
            if state == "idle" and count >= n:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)  # cProfile writes its data on a clean exit
        proc.wait(60)
        if sampler is not None:
            sampler.wait(60)
    return elapsed, first, peak, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--profile", help="serve's cProfile data to FILE.<store>")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imapscope-first-sync-"))
    ca = TestCA(work / "ca")
    started = time.perf_counter()
    dovecot = start_dovecot(ca, users={"big": "big-pw"}, messages=args.messages)
    print(f"dovecot seeded with {args.messages} messages in {time.perf_counter() - started:.1f}s")
    postgres = start_postgres() if args.store in ("postgresql", "both") else None
    try:
        raw_drain(dovecot.tls_port, ca.ca_file, "big", "big-pw")  # warm Dovecot's index
        raw = min(raw_drain(dovecot.tls_port, ca.ca_file, "big", "big-pw") for _ in range(2))
        print(f"raw drain: {raw:.2f}s")
        stores: list[tuple[str, str | None, Callable[[], tuple[str, int]]]] = []
        if args.store in ("sqlite", "both"):
            db = work / "data-sqlite" / DB_FILE
            stores.append(("SQLite", None, lambda: stored_sqlite(db)))
        if postgres is not None:
            url = postgres.create_database("first")
            name = url.rsplit("/", 1)[1]
            stores.append(("PostgreSQL", url, lambda: stored_postgres(postgres, name)))
        for label, database, stored in stores:
            sync, first, peak, cpu = serve_sync(
                work, dovecot.tls_port, ca.ca_file, user="big", password="big-pw",
                n=args.messages, database=database, stored=stored,
                profile=f"{args.profile}.{label.lower()}" if args.profile else None,
            )  # fmt: skip
            print(
                f"{label}: serve start -> idle with {args.messages} stored: {sync:.2f}s "
                f"(CPU {cpu:.2f}s), peak RSS {peak / 1024:.0f} MiB, "
                f"ratio_vs_raw={sync / raw:.2f} (target <= 3)\n"
                f"  of which start -> first batch stored {first:.2f}s, then "
                f"{(sync - first) * 1e6 / max(1, args.messages):.1f} us per message"
            )
    finally:
        dovecot.stop()
        if postgres is not None:
            postgres.stop()
        os.sync()


if __name__ == "__main__":
    main()
