"""One sandbox process holding many authenticated sessions, some in IDLE; mail arrives over SMTP.

    .venv/bin/python -m bench.sandbox_load [--sessions 10000] [--idle 1000] [--users 100]

The sandbox runs as ``imapscope sandbox --open`` in its own process, so its RSS is its own. The
client opens ``--sessions`` plaintext sessions and logs each in; ``--idle`` of them SELECT INBOX
and enter IDLE (spread over ``--users`` users). Then one message per user is delivered over SMTP,
and for every IDLE session the delay from the start of that SMTP transaction to the session
seeing EXISTS is recorded (an upper bound: it includes the SMTP exchange).
Printed: RSS per session, and the delay's p50/p99/max.
Targets (issue #5): p99 <= 100 ms at 1,000 IDLE sessions; <= 50 KB RSS per plaintext session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def login(
    port: int, user: str, gate: asyncio.Semaphore
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(f"a LOGIN {user} pw\r\n".encode())
        while not (await reader.readline()).startswith(b"a "):
            pass
    return reader, writer


async def enter_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"b SELECT INBOX\r\nc IDLE\r\n")
    while not (await reader.readline()).startswith(b"+ "):
        pass


async def wait_exists(reader: asyncio.StreamReader, arrived: dict[int, float], key: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.endswith(b"EXISTS\r\n"):
            arrived[key] = time.perf_counter()
            return


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data = tempfile.mkdtemp(prefix="imapscope-load-")
    server = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "sandbox", "--open", "--port", "0", "--tls-port", "0",
         "--smtp-port", "0", "--admin-port", "0", "--data-dir", data],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert server.stdout is not None
    text = ""
    for line in server.stdout:
        text += line
        if "Ctrl-C" in line:
            break
    port = int(text.split("plaintext+STARTTLS port:")[1].split()[0])
    smtp_port = int(text.split("SMTP port (delivery):")[1].split()[0])
    try:
        gate = asyncio.Semaphore(200)
        users = [f"user{n}" for n in range(args.users)]
        # Create every user once, so the baseline includes their (empty) mailboxes.
        warm = await asyncio.gather(*(login(port, u, gate) for u in users))
        for _, writer in warm:
            writer.close()
        await asyncio.sleep(0.5)
        baseline = rss_kib(server.pid)
        started = time.perf_counter()
        sessions = await asyncio.gather(
            *(login(port, users[n % args.users], gate) for n in range(args.sessions))
        )
        opened = time.perf_counter() - started
        idle = sessions[: args.idle]
        await asyncio.gather(*(enter_idle(r, w) for r, w in idle))
        await asyncio.sleep(0.5)
        loaded = rss_kib(server.pid)
        per_session = (loaded - baseline) * 1024 / args.sessions

        arrived: dict[int, float] = {}
        watchers = [
            asyncio.create_task(wait_exists(reader, arrived, n))
            for n, (reader, _) in enumerate(idle)
        ]
        sent: dict[str, float] = {}
        loop = asyncio.get_running_loop()

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
                for user in users:
                    # From the moment the client starts the transaction: the sandbox pushes
                    # EXISTS before it answers DATA with 250, so the end would be too late.
                    sent[user] = time.perf_counter()
                    smtp.sendmail("load@example.test", [f"{user}@example.test"],
                                  b"Subject: load\r\n\r\nhello\r\n")  # fmt: skip

        await loop.run_in_executor(None, deliver)
        await asyncio.wait(watchers, timeout=30)
        delays = sorted(
            (arrived[n] - sent[users[n % args.users]]) * 1000
            for n in range(len(idle)) if n in arrived
        )  # fmt: skip
        for _, writer in sessions:
            writer.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()

    print(f"{args.sessions} sessions ({args.idle} in IDLE, {args.users} users) opened in "
          f"{opened:.1f} s")  # fmt: skip
    print(f"sandbox RSS: {baseline / 1024:.1f} MiB before, {loaded / 1024:.1f} MiB with the "
          f"sessions: {per_session / 1024:.1f} KiB per session")  # fmt: skip
    if delays:
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        seen = f"{len(delays)}/{len(idle)} sessions saw EXISTS"
        spread = f"p50 {statistics.median(delays):.1f} ms, p99 {p99:.1f} ms"
        print(f"IDLE push after SMTP delivery: {seen}; {spread}, max {delays[-1]:.1f} ms")
    else:
        print("no IDLE session saw EXISTS")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--idle", type=int, default=1_000)
    parser.add_argument("--users", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
