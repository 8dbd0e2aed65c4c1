"""Read a 100,000-message FETCH four ways, side by side, from one rig Dovecot on loopback.

    .venv/bin/python -m bench.fetch_100k [--messages 100000] [--repeat 3]

Contenders, each run in its own subprocess (so its peak RSS is its own) against the same server,
for ``UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)``:

1. raw: a plain socket reads until the tagged OK. The floor: the server's own speed.
2. imapscope: the sans-IO codec behind an asyncio Protocol, keeping one typed record per message
   (uid, flags, size, internal date, envelope kept raw for later decoding).
3. imapclient: imaplib + imapclient's ``parse_fetch_response`` (what most Python tools use).
4. aioimaplib: at 10,000 messages only (its FETCH handling is quadratic), reported separately.

Needs root (the rig) and the bench extras: ``scripts/install-python test,bench``.
The last line is exactly
``ratio_vs_raw=<imapscope/raw> speedup_vs_imapclient=<imapclient/imapscope>``.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aioimaplib
from imapclient.response_parser import parse_fetch_response
from tests.servers.dovecot import start_dovecot
from tests.servers.rig import TestCA

from imapscope.imap import (
    NEED_DATA,
    ClientConnection,
    Fetch,
    FetchResponse,
    Login,
    Select,
    TaggedResponse,
)
from imapscope.sandbox import demo as seed

COMMAND = "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
ITEMS = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
USER = "alice"


# --- contenders: each returns the number of messages it read ---------------------------------


def run_raw(port: int, password: str, folder: str) -> int:

    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb", buffering=1 << 20)
    reader.readline()
    sock.sendall(f'a LOGIN {USER} "{password}"\r\nb EXAMINE {folder}\r\n'.encode())
    while not reader.readline().startswith(b"b "):
        pass
    sock.sendall(f"c {COMMAND}\r\n".encode())
    # Counting lines that start a FETCH is all a raw reader does; ENVELOPEs with literals would
    # add lines that do not start with "* ", so this counts messages exactly.
    count = 0
    while True:
        chunk = reader.readline()
        if chunk.startswith(b"c "):
            break
        if chunk.startswith(b"* "):
            count += 1
    sock.close()
    return count


class _CodecProtocol(asyncio.Protocol):
    """The codec behind an asyncio Protocol: each chunk goes from the transport straight into
    the codec (no StreamReader buffer in between), events are handled as they come."""

    def __init__(self, records: list[tuple[object, ...]], keep: bool = True) -> None:
        self.conn = ClientConnection()
        self.records = records
        self.keep = keep
        self.count = 0
        self.transport: asyncio.Transport | None = None
        self.waiting: tuple[str | None, asyncio.Future[None]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        records = self.records
        while (event := conn.next_event()) is not NEED_DATA:
            if type(event) is FetchResponse:
                self.count += 1
                if not self.keep:
                    continue
                records.append(
                    (
                        event.uid,
                        event.flags,
                        event.size,
                        event.internaldate_raw,
                        event.items.get("ENVELOPE"),
                    )
                )
            elif self.waiting is not None:
                tag, done = self.waiting
                if tag is None or (isinstance(event, TaggedResponse) and event.tag == tag):
                    self.waiting = None
                    done.set_result(None)
        pending = conn.data_to_send()
        if pending and self.transport is not None:
            self.transport.write(pending)

    async def run(self, command: object | None) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tag = None if command is None else self.conn.send(command)  # type: ignore[arg-type]
        self.waiting = (tag, done)
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())
        await done


def run_imapscope(port: int, password: str, folder: str, keep: bool = True) -> int:
    records: list[tuple[object, ...]] = []
    protocol = _CodecProtocol(records, keep)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[None] = loop.create_future()
        protocol.waiting = (None, waiting)  # the greeting
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        await waiting
        await protocol.run(Login(USER, password))
        await protocol.run(Select(folder, readonly=True))
        await protocol.run(Fetch("1:*", ITEMS, uid=True))
        transport.close()

    asyncio.run(main())
    return protocol.count


def run_imapscope_streaming(port: int, password: str, folder: str) -> int:
    """The same, keeping no records: its memory shows what the codec itself holds."""
    return run_imapscope(port, password, folder, keep=False)


def run_imapclient(port: int, password: str, folder: str) -> int:

    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(USER, password)
    client.select(folder, readonly=True)
    typ, data = client.uid("FETCH", "1:*", ITEMS)
    assert typ == "OK", data
    parsed = parse_fetch_response(data, normalise_times=True, uid_is_key=True)
    client.logout()
    return len(parsed)


def run_aioimaplib(port: int, password: str, folder: str) -> int:

    async def main() -> int:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=600)
        await client.wait_hello_from_server()
        await client.login(USER, password)
        await client.select(folder)  # its EXAMINE does not enter the selected state
        response = await client.uid("fetch", "1:*", ITEMS)
        await client.logout()
        return sum(1 for line in response.lines if b" FETCH " in line)

    return asyncio.run(main())


CONTENDERS = {
    "raw": run_raw,
    "imapscope": run_imapscope,
    "imapscope-nokeep": run_imapscope_streaming,
    "imapclient": run_imapclient,
    "aioimaplib": run_aioimaplib,
}


def child(name: str, port: int, password: str, folder: str) -> None:
    started = time.perf_counter()
    count = CONTENDERS[name](port, password, folder)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "seconds": elapsed, "peak_mib": peak_kib / 1024}))


def measure(name: str, port: int, password: str, folder: str, expected: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fetch_100k", "--child", name, str(port), password, folder],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["count"] != expected:
        raise SystemExit(f"{name} read {result['count']} messages, expected {expected}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--aioimaplib-messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (best is kept)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, port, password, folder = args.child
        child(name, int(port), password, folder)
        return 0

    ca = TestCA(Path(tempfile.mkdtemp(prefix="imapscope-bench-ca-")))
    print(f"seeding {args.messages} + {args.aioimaplib_messages} messages ...", flush=True)
    started = time.perf_counter()
    small = args.aioimaplib_messages
    server = start_dovecot(
        ca,
        messages=args.messages,
        extra_config="",
    )
    # A second folder with fewer messages for aioimaplib (quadratic).
    folder_dir = server.directory / "home" / USER / "Maildir" / ".Small"
    seed.write_maildir(folder_dir, seed.generate(small, seed=2))
    (folder_dir / "maildirfolder").touch()
    subprocess.run(["chown", "-R", "dovecot:", str(folder_dir)], check=True)
    print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
    password = server.users[USER]
    try:
        # Warm up: Dovecot indexes the maildir on first access; every contender then reads a warm
        # index, as in steady-state operation.
        measure("raw", server.port, password, "INBOX", args.messages)
        measure("raw", server.port, password, "Small", small)
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for name in ("raw", "imapscope", "imapclient"):
                results.setdefault(name, []).append(
                    measure(name, server.port, password, "INBOX", args.messages)
                )
        results["imapscope-nokeep"] = [
            measure("imapscope-nokeep", server.port, password, "INBOX", args.messages)
        ]
        small_results = {
            name: measure(name, server.port, password, "Small", small)
            for name in ("raw", "imapscope", "imapclient", "aioimaplib")
        }
    finally:
        server.stop()

    print(f"\nUID FETCH 1:* {ITEMS}, {args.messages} messages, best of {args.repeat}")
    print("(imapscope-nokeep: once, keeping no records, to show the codec's own memory):")
    best = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in results.items()}
    for name, result in best.items():
        spread = statistics.pstdev(r["seconds"] for r in results[name])
        print(
            f"  {name:<16} {result['seconds']:8.2f} s  (sd {spread:.2f})  "
            f"{args.messages / result['seconds']:>9,.0f} msg/s  "
            f"peak RSS {result['peak_mib']:.0f} MiB"
        )
    print(f"\nsame, {small} messages (aioimaplib is quadratic, so it runs only here):")
    for name, result in small_results.items():
        print(f"  {name:<16} {result['seconds']:8.2f} s  peak RSS {result['peak_mib']:.0f} MiB")
    ratio = best["imapscope"]["seconds"] / best["raw"]["seconds"]
    speedup = best["imapclient"]["seconds"] / best["imapscope"]["seconds"]
    print(f"ratio_vs_raw={ratio:.2f} speedup_vs_imapclient={speedup:.1f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
