"""The codec alone, no network: responses/s and MB/s per kind of traffic.

    .venv/bin/python -m bench.parse_micro

Traffic is recorded from a rig Dovecot (needs root) for FETCH FLAGS, FETCH ENVELOPE, FETCH
BODYSTRUCTURE and FETCH BODY[] (large literals); the 1,000,000-UID SEARCH is synthesized (the
rig would need a million-message mailbox), in the exact form servers send.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

from tests.servers.dovecot import start_dovecot
from tests.servers.rig import TestCA

from imapscope.imap import NEED_DATA, ClientConnection, Noop

MESSAGES = 20_000
CHUNK = 1 << 18


def record(port: int, password: str, command: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port))
    reader = sock.makefile("rb", buffering=1 << 20)
    reader.readline()
    sock.sendall(f'a LOGIN alice "{password}"\r\nb EXAMINE INBOX\r\n'.encode())
    while not reader.readline().startswith(b"b "):
        pass
    sock.sendall(b"c " + command + b"\r\n")
    out = bytearray()
    while True:
        line = reader.readline()
        if line.startswith(b"c "):
            break
        out += line
        # A literal's data may contain lines starting with "c ": read it whole.
        if line.endswith(b"}\r\n"):
            size = int(line[line.rindex(b"{") + 1 : -3])
            out += reader.read(size)
    sock.close()
    return bytes(out)


def parse_all(traffic: bytes) -> int:
    conn = ClientConnection()
    conn.receive_data(b"* PREAUTH ready\r\n")
    conn.next_event()
    tag = conn.send(Noop())
    count = 0
    for start in range(0, len(traffic), CHUNK):
        conn.receive_data(traffic[start : start + CHUNK])
        while conn.next_event() is not NEED_DATA:
            count += 1
    conn.receive_data(f"{tag} OK done\r\n".encode())
    while conn.next_event() is not NEED_DATA:
        pass
    return count


def main() -> None:
    ca = TestCA(Path(tempfile.mkdtemp(prefix="imapscope-micro-ca-")))
    server = start_dovecot(ca, messages=MESSAGES)
    password = server.users["alice"]
    try:
        record(server.port, password, b"FETCH 1:* (FLAGS)")  # warm the index
        traffic = {
            "FETCH (UID FLAGS)": record(server.port, password, b"UID FETCH 1:* (UID FLAGS)"),
            "FETCH (ENVELOPE)": record(server.port, password, b"FETCH 1:* (UID ENVELOPE)"),
            "FETCH (BODYSTRUCTURE)": record(
                server.port, password, b"FETCH 1:* (UID BODYSTRUCTURE)"
            ),
            "FETCH (BODY[]) literals": record(server.port, password, b"FETCH 1:2000 (BODY[])"),
        }
    finally:
        server.stop()
    traffic["SEARCH, 1,000,000 UIDs"] = (
        b"* SEARCH " + b" ".join(str(n).encode() for n in range(1, 1_000_001)) + b"\r\n"
    )
    print(f"{'traffic':<26}{'responses':>10}{'MB':>8}{'responses/s':>14}{'MB/s':>9}")
    for name, data in traffic.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            count = parse_all(data)
            best = min(best, time.perf_counter() - started)
        megabytes = len(data) / 1e6
        print(
            f"{name:<26}{count:>10}{megabytes:>8.1f}{count / best:>14,.0f}{megabytes / best:>9.1f}"
        )


if __name__ == "__main__":
    main()
