"""Servers that misbehave on purpose, written with plain bytes (a codec would refuse to say
what they say): they trickle, flood, never finish, announce huge literals, echo secrets.

Each is a :class:`Hostile` with a behaviour name, served on a free loopback port in a thread
(``with hostile("trickle_greeting") as port``). They stop by themselves when the block ends, and
every loop they run is bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from tests.scripted import register, threaded_server

#: How long any single misbehaviour goes on before the server gives up on its own.
GIVE_UP_AFTER = 60.0
CAPS = b"IMAP4rev1 AUTH=PLAIN IDLE"
LITERAL = 200 * 1024 * 1024  # each literal of the flood, as a hostile server announced them


class Hostile:
    def __init__(self, behaviour: str, secret: str = "") -> None:
        self.behaviour = behaviour
        self.secret = secret
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent = 0  # bytes sent (the flood's progress)
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        register(self.tasks)
        try:
            async with asyncio.timeout(GIVE_UP_AFTER):
                await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.behaviour == "garbage_certificate":
            await reader.read(65536)  # the ClientHello
            writer.write(garbage_certificate_flight())
            await writer.drain()
            await reader.read(65536)  # the client's alert, or its hang-up
            return
        greeting = b"* OK [CAPABILITY " + CAPS + b"] hostile ready\r\n"
        if self.behaviour == "trickle_greeting":
            for byte in greeting:  # one byte every half second
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
            return
        writer.write(greeting)
        while line := await reader.readline():
            tag, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
            verb = rest.split(" ", 1)[0].upper()
            if verb == "UID":
                verb = "UID " + rest.split(" ", 2)[1].upper()
            if self.behaviour == "bye_every_command" and verb != "LOGOUT":
                while True:  # an untagged BYE every half second, never the tagged reply
                    writer.write(b"* BYE busy, hold on\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.5)
            if verb == "CAPABILITY":
                writer.write(b"* CAPABILITY " + CAPS + b"\r\n" + tag.encode() + b" OK done\r\n")
            elif verb == "LOGIN" and self.behaviour == "echo_secret":
                said = f"wrong password {self.secret!r} ({_b64(self.secret)})"
                writer.write(f"{tag} NO [AUTHENTICATIONFAILED] {said}\r\n".encode())
            elif verb == "AUTHENTICATE":
                if self.behaviour == "echo_secret":
                    blob = rest.split(" ")[-1] if rest.count(" ") >= 2 else ""
                    if not blob:
                        writer.write(b"+ \r\n")
                        await writer.drain()
                        blob = (await reader.readline()).decode().strip()
                    writer.write(f"{tag} NO [AUTHENTICATIONFAILED] bad {blob}\r\n".encode())
                else:
                    blob = rest.split(" ")[-1] if rest.count(" ") >= 2 else ""
                    if not blob:
                        writer.write(b"+ \r\n")
                        await writer.drain()
                        await reader.readline()
                    writer.write(tag.encode() + b" OK logged in\r\n")
            elif verb == "LOGIN":
                writer.write(tag.encode() + b" OK logged in\r\n")
            elif verb == "LIST":
                writer.write(b'* LIST () "/" INBOX\r\n' + tag.encode() + b" OK done\r\n")
            elif verb in ("SELECT", "EXAMINE"):
                writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                             + tag.encode() + b" OK [READ-ONLY] done\r\n")  # fmt: skip
            elif verb in ("SEARCH", "UID SEARCH"):
                writer.write(b"* SEARCH 1\r\n" + tag.encode() + b" OK done\r\n")
            elif verb in ("FETCH", "UID FETCH") and self.behaviour == "huge_literals":
                await self._flood(writer, tag)
            elif verb == "LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag.encode() + b" OK done\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag.encode() + b" OK done\r\n")
            await writer.drain()

    async def _flood(self, writer: asyncio.StreamWriter, tag: str) -> None:
        """Four literals of :data:`LITERAL` bytes in one FETCH response, sent as fast as the
        client reads them."""
        writer.write(b"* 1 FETCH (UID 1 FLAGS () ")
        chunk = b"x" * 65536
        for part in range(4):
            writer.write(b"BODY[%d] {%d}\r\n" % (part + 1, LITERAL))
            for _ in range(LITERAL // len(chunk)):
                writer.write(chunk)
                self.sent += len(chunk)
                await writer.drain()
            writer.write(b" ")
        writer.write(b")\r\n" + tag.encode() + b" OK done\r\n")


def garbage_certificate_flight() -> bytes:
    """A TLS 1.2 ServerHello and a Certificate message whose certificate is not DER: what a
    server with a corrupt certificate file sends (the handshake is plaintext up to there)."""

    def record(kind: int, body: bytes) -> bytes:
        return struct.pack("!BHH", kind, 0x0303, len(body)) + body

    def handshake(kind: int, body: bytes) -> bytes:
        return struct.pack("!B", kind) + len(body).to_bytes(3, "big") + body

    # renegotiation_info (OpenSSL refuses a server without it) and extended_master_secret
    extensions = struct.pack("!HHB", 0xFF01, 1, 0) + struct.pack("!HH", 0x0017, 0)
    hello = (
        struct.pack("!H", 0x0303)
        + os.urandom(32)
        + b"\x00"
        + struct.pack("!HB", 0xC02F, 0)
        + struct.pack("!H", len(extensions))
        + extensions
    )
    junk = b"\x30\x82\x01\x00" + b"\xff" * 64
    chain = len(junk).to_bytes(3, "big") + junk
    certificate = len(chain).to_bytes(3, "big") + chain
    return record(22, handshake(2, hello) + handshake(11, certificate))  # fmt: skip


def _b64(text: str) -> str:
    return base64.b64encode(b"\0alice\0" + text.encode()).decode()


@contextmanager
def hostile_server(behaviour: str, secret: str = "") -> Iterator[Hostile]:
    """The server itself (``.port``; ``.tasks`` holds one task per open connection)."""
    server = Hostile(behaviour, secret)
    with threaded_server(server.handle, server.tasks) as port:
        server.port = port
        yield server


@contextmanager
def hostile(behaviour: str, secret: str = "") -> Iterator[int]:
    with hostile_server(behaviour, secret) as server:
        yield server.port


#: What damage inserts: IMAP's syntax, and bytes it forbids.
DAMAGE_ALPHABET = b'()" {}\\\r\nNIL0123456789~+*[]<>ABCxyz\x00\xc3.:,%-'


def damaged(rng: random.Random, data: bytes) -> bytes:
    """``data`` with 1-3 changes, each a byte replaced, 1-4 deleted or 1-3 inserted (from
    :data:`DAMAGE_ALPHABET`)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        at, what = rng.randrange(len(out)), rng.random()
        if what < 0.4:
            out[at : at + 1] = bytes([rng.choice(DAMAGE_ALPHABET)])
        elif what < 0.7:
            del out[at : at + rng.randint(1, 4)]
        else:
            out[at:at] = bytes(rng.choice(DAMAGE_ALPHABET) for _ in range(rng.randint(1, 3)))
    return bytes(out)


class DamagingProxy:
    """A proxy to a real server that damages what the server says (never what the client
    says): with probability ``rate``, a piece it forwards is :func:`damaged` (bytes replaced,
    deleted or inserted, the new ones from IMAP's syntax: parentheses, quotes, braces, digits,
    CR, LF, NIL...).
    A server that lies in every way a byte can, at every point of the protocol. Pieces are at
    most ``piece`` bytes, so damage lands anywhere in a response. ``damage = False`` turns it
    off; ``sessions`` counts the connections proxied. Seeded: the same seed damages the same
    way, though where the pieces are cut depends on timing."""

    def __init__(self, upstream: int, *, seed: int, rate: float, piece: int = 300) -> None:
        self.upstream = upstream
        self.port = 0
        self.rate = rate
        self.piece = piece
        self.damage = True
        self.sessions = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(seed)

    def _damaged(self, data: bytes) -> bytes:
        if not self.damage or self._rng.random() > self.rate:
            return data
        return damaged(self._rng, data)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        register(self.tasks)
        self.sessions += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, damaging: bool
        ) -> None:
            try:
                while data := await source.read(self.piece if damaging else 65536):
                    sink.write(self._damaged(data) if damaging else data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        except asyncio.CancelledError:
            return


@contextmanager
def damaging_proxy(upstream: int, *, seed: int, rate: float) -> Iterator[DamagingProxy]:
    proxy = DamagingProxy(upstream, seed=seed, rate=rate)
    with threaded_server(proxy.handle, proxy.tasks) as port:
        proxy.port = port
        yield proxy
