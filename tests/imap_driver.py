"""A minimal blocking driver for the sans-IO client connection, for tests only.

The product's IO layer is imapscope.net (asyncio); this exists so codec tests can talk to real
servers with nothing between the codec and the socket.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Sequence
from typing import Protocol

from imapscope.imap import (
    NEED_DATA,
    ClientConnection,
    Command,
    Greeting,
    Mechanism,
    Response,
    StartTLS,
    TaggedResponse,
)


class _Connection(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> object: ...


def drain(conn: _Connection, data: bytes) -> list[object]:
    """Feed ``data`` to a client or server connection; return every event it then yields."""
    conn.receive_data(data)
    found = []
    while (event := conn.next_event()) is not NEED_DATA:
        found.append(event)
    return found


def received(line: bytes, literals: Sequence[bytes | bytearray] = ()) -> object:
    """The one response a fresh client codec (greeted with PREAUTH) reads from ``line``: as it
    is, or with each of ``literals`` sent after its marker (``{N}\\r\\n`` in ``line``)."""
    conn = ClientConnection()
    drain(conn, b"* PREAUTH ready\r\n")
    wire: list[bytes] = []
    pos = 0
    markers = re.finditer(rb"\{\d+\}\r\n", line) if literals else ()
    for marker, literal in zip(markers, literals, strict=True):
        wire += (line[pos : marker.end()], bytes(literal))
        pos = marker.end()
    found = drain(conn, b"".join([*wire, line[pos:]]))
    assert len(found) == 1, found
    return found[0]


OPEN: list[Driver] = []  # closed after every test by the close_drivers fixture (conftest.py)


class Driver:
    def __init__(
        self, host: str, port: int, context: ssl.SSLContext | None = None, **options: object
    ) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=10)
        OPEN.append(self)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.log: list[tuple[str, bytes]] = []
        self.conn = ClientConnection(
            log=lambda direction, line: self.log.append((direction, line)),
            **options,  # type: ignore[arg-type]
        )
        greeting = self.next()
        assert isinstance(greeting, Greeting), greeting
        self.greeting = greeting

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def next(self) -> Response:
        while True:
            event = self.conn.next_event()
            # next_event may queue bytes (a literal released by "+", a SASL answer): flush them
            # before blocking on the socket.
            self.flush()
            if event is not NEED_DATA:
                assert not isinstance(event, type(NEED_DATA))
                return event
            self.conn.receive_data(self.sock.recv(65536))

    def wait(self, tag: str) -> tuple[TaggedResponse, list[Response]]:
        untagged: list[Response] = []
        while True:
            event = self.next()
            if isinstance(event, TaggedResponse) and event.tag == tag:
                return event, untagged
            untagged.append(event)

    def run(self, command: Command) -> tuple[TaggedResponse, list[Response]]:
        tag = self.conn.send(command)
        self.flush()
        return self.wait(tag)

    def login_sasl(self, mechanism: Mechanism) -> tuple[TaggedResponse, list[Response]]:
        tag = self.conn.authenticate(mechanism)
        self.flush()
        return self.wait(tag)

    def starttls(self, context: ssl.SSLContext) -> TaggedResponse:
        done, _ = self.run(StartTLS())
        if done.status == "OK":
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
            self.conn.tls_established()
        return done

    def close(self) -> None:
        self.sock.close()
