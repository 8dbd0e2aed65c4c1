"""First sync of a big mailbox: a raw socket draining the metadata FETCH, against `imapscope
serve` from its start until the account is `idle` with every message stored.

Needs root (the rig).

    .venv/bin/python -m bench.first_sync [--messages 100000] [--security tls]

Prints, side by side: the raw drain (login, SELECT, ``UID FETCH 1:* (UID FLAGS INTERNALDATE
RFC822.SIZE ENVELOPE)`` read until the tagged OK: Dovecot's own speed, the floor), serve's time
from process start to `idle` with N messages stored (read from the store's SQLite file), serve's
peak RSS, and the ratio serve/raw (target <= 3).
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers.dovecot import start_dovecot
from tests.servers.rig import TestCA

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


def stored(db: Path) -> tuple[str, int]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            state = conn.execute("SELECT state FROM accounts").fetchone()
            count = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.Error:
        return "", 0
    return (state[0] if state else ""), int(count)


def serve_sync(
    work: Path, port: int, ca_file: Path, *, user: str, password: str, n: int
) -> tuple[float, int]:
    import asyncio  # noqa: PLC0415

    data = work / "data"

    async def register() -> None:
        store = await Store.open(data)
        spec = AccountSpec(email=f"{user}@example.test", host="localhost", port=port,
                           security="tls", username=user)  # fmt: skip
        await store.add_account(spec, password)
        await store.close()

    asyncio.run(register())
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "serve", "--data-dir", str(data), "--port", "0",
         "--ca-file", str(ca_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0
    try:
        while time.perf_counter() - started < 600:
            state, count = stored(data / DB_FILE)
            if state == "idle" and count >= n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(30)
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imapscope-first-sync-"))
    ca = TestCA(work / "ca")
    started = time.perf_counter()
    dovecot = start_dovecot(ca, users={"big": "big-pw"}, messages=args.messages)
    print(f"dovecot seeded with {args.messages} messages in {time.perf_counter() - started:.1f}s")
    try:
        raw_drain(dovecot.tls_port, ca.ca_file, "big", "big-pw")  # warm Dovecot's index
        raw = min(raw_drain(dovecot.tls_port, ca.ca_file, "big", "big-pw") for _ in range(2))
        print(f"raw drain: {raw:.2f}s")
        sync, peak = serve_sync(
            work, dovecot.tls_port, ca.ca_file, user="big", password="big-pw", n=args.messages
        )
        print(
            f"serve start -> idle with {args.messages} stored: {sync:.2f}s, "
            f"peak RSS {peak / 1024:.0f} MiB"
        )
        print(f"ratio_vs_raw={sync / raw:.2f} peak_rss_mib={peak / 1024:.0f}")
    finally:
        dovecot.stop()
        os.sync()


if __name__ == "__main__":
    main()
