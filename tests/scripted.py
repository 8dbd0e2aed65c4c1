"""Small scripted servers for failures no real server in the rig can produce on demand: provider
wording (Gmail, Microsoft), dropped IDLE, a slow server, a TLS-1.1-only port, a DNS zone.

The IMAP one runs on the codec's server role (so what it writes is real IMAP), in a thread with
its own event loop, on a free loopback port. By default it behaves like a small healthy server;
``replies`` overrides any verb with a function returning the responses to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from imapscope.imap import (
    NEED_DATA,
    Bye,
    Capability,
    CommandReceived,
    ContinuationRequest,
    Exists,
    Greeting,
    IdleDone,
    ListResponse,
    NamespaceResponse,
    Response,
    ResponseCode,
    SaslResponse,
    ServerConnection,
    TaggedResponse,
    UntaggedStatus,
)

CAPABILITIES = ("IMAP4rev1", "STARTTLS", "AUTH=PLAIN", "ID", "NAMESPACE", "IDLE")
Reply = Callable[[str, object], list[Response] | None]  # (tag, command) -> responses; None: drop


def ok(tag: str, text: str = "done", code: ResponseCode | None = None) -> TaggedResponse:
    return TaggedResponse(tag, "OK", code, text)


def no(tag: str, text: str, code: ResponseCode | None = None) -> TaggedResponse:
    return TaggedResponse(tag, "NO", code, text)


@dataclass
class ScriptedImap:
    greeting: Greeting = field(
        default_factory=lambda: Greeting("OK", ResponseCode("CAPABILITY", CAPABILITIES), "ready")
    )
    capabilities: tuple[str, ...] = CAPABILITIES
    replies: dict[str, Reply] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # for STARTTLS
    implicit_tls: bool = False
    delay: dict[str, float] = field(default_factory=dict)
    port: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def default(self, verb: str, tag: str) -> list[Response]:
        if verb == "CAPABILITY":
            return [Capability(self.capabilities), ok(tag)]
        if verb == "LOGOUT":
            return [Bye(None, "bye"), ok(tag)]
        if verb == "NAMESPACE":
            return [NamespaceResponse((("", "/"),), (), ()), ok(tag)]
        if verb == "LIST":
            return [ListResponse("LIST", ("\\HasNoChildren",), "/", "INBOX", b"INBOX"), ok(tag)]
        if verb in ("SELECT", "EXAMINE"):
            return [Exists(0), UntaggedStatus("OK", ResponseCode("UIDVALIDITY", 1), "ok"),
                    ok(tag, "selected", ResponseCode("READ-ONLY"))]  # fmt: skip
        return [ok(tag)]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        register(self.tasks)
        conn = ServerConnection()
        conn.send(self.greeting)
        writer.write(conn.data_to_send())
        idle_tag = None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                conn.receive_data(data)
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, IdleDone):
                        replies = self.replies.get("DONE", lambda tag, c: [ok(tag)])(
                            event.tag, None
                        )
                        idle_tag = None
                    elif isinstance(event, SaslResponse):
                        replies = self.replies.get("SASL", lambda tag, c: [ok(tag, "Logged in")])(
                            event.tag, event.data
                        )
                    elif isinstance(event, CommandReceived):
                        verb = event.command.verb().split()[-1]
                        if verb in self.delay:
                            await asyncio.sleep(self.delay[verb])
                        reply = self.replies.get(verb)
                        if reply is not None:
                            replies = reply(event.tag, event.command)
                        elif verb == "IDLE":
                            replies = [ContinuationRequest("idling")]
                            idle_tag = event.tag
                        elif verb == "AUTHENTICATE" and not getattr(
                            event.command, "initial_response", None
                        ):
                            replies = [ContinuationRequest("")]
                        else:
                            replies = self.default(verb, event.tag)
                        if verb == "STARTTLS" and replies and self.tls is not None:
                            for response in replies:
                                conn.send(response)
                            writer.write(conn.data_to_send())
                            await writer.drain()
                            await writer.start_tls(self.tls)
                            conn.tls_established()
                            continue
                    else:
                        replies = [TaggedResponse(event.tag, "BAD", None, event.message)]
                    if replies is None:  # drop the connection
                        writer.close()
                        return
                    for response in replies:
                        conn.send(response)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            return
        finally:
            del idle_tag
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextmanager
def threaded_server(
    handle: Handler, tasks: set[asyncio.Task[None]], ssl_context: ssl.SSLContext | None = None
) -> Iterator[int]:
    """Serve ``handle`` on a free loopback port, in a thread with its own event loop, until the
    block ends; then cancel the handlers still running (``tasks``, which they register)."""
    loop = asyncio.new_event_loop()
    holder: dict[str, asyncio.Server] = {}

    async def start() -> int:
        holder["server"] = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
        return int(holder["server"].sockets[0].getsockname()[1])

    async def stop() -> None:
        holder["server"].close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await holder["server"].wait_closed()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def register(tasks: set[asyncio.Task[None]]) -> None:
    """Called first by a handler: lets threaded_server cancel it at shutdown."""
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(tasks.discard)  # type: ignore[arg-type]


@contextmanager
def serve(server: ScriptedImap) -> Iterator[ScriptedImap]:
    """Run ``server`` on a free loopback port in a thread until the block ends."""
    context = server.tls if server.implicit_tls else None
    with threaded_server(server.handle, server.tasks, context) as port:
        server.port = port
        yield server


@contextmanager
def raw_listener(banner: bytes | None, *, backlog: int = 8) -> Iterator[int]:
    """A TCP port that sends ``banner`` (or nothing) to every connection and then waits."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(client)
            if banner is not None:
                client.sendall(banner)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for client in held:
            client.close()
        sock.close()


@contextmanager
def full_listener() -> Iterator[int]:
    """A port whose accept queue is full and never drained: new connections time out, as behind
    a firewall that drops packets (Linux drops the SYN when the queue is full)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        yield port
    finally:
        filler.close()
        sock.close()


@dataclass
class DnsZone:
    """Answers A/AAAA/SRV/MX/TXT from ``records``; names in ``nxdomain`` do not exist; names in
    ``servfail`` fail."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    nxdomain: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    port: int = 0

    def answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.nxdomain or not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            values = self.records.get((name, rdtype), [])
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values)
                )
        response.flags |= dns.flags.AA
        return response.to_wire()


@contextmanager
def dns_server(zone: DnsZone) -> Iterator[DnsZone]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    zone.port = sock.getsockname()[1]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(zone.answer(data), peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield zone
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@dataclass
class TunnelProxy:
    """A SOCKS5 (no authentication) and HTTP CONNECT proxy in one: the first byte decides.
    ``tunnels`` records every destination it connected to."""

    port: int = 0
    tunnels: list[tuple[str, int]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        register(self.tasks)
        try:
            first = await reader.readexactly(1)
            if first == b"\x05":
                host, port = await self._socks5(first, reader, writer)
            else:
                host, port = await self._http(first, reader, writer)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            self.tunnels.append((host, port))
            if first == b"\x05":
                writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
            else:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, OSError):
            return
        finally:
            writer.close()

    async def _socks5(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, int]:
        methods = await reader.readexactly((await reader.readexactly(1))[0])
        assert 0 in methods
        writer.write(b"\x05\x00")
        _, command, _, kind = await reader.readexactly(4)
        assert command == 1  # CONNECT
        if kind == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        port = int.from_bytes(await reader.readexactly(2), "big")
        return host, port

    async def _http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, int]:
        request = first + await reader.readuntil(b"\r\n\r\n")
        target = request.split(b" ")[1].decode()
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()


@contextmanager
def tunnel_proxy() -> Iterator[TunnelProxy]:
    proxy = TunnelProxy()
    with threaded_server(proxy.handle, proxy.tasks) as port:
        proxy.port = port
        yield proxy


@contextmanager
def running(server: object) -> Iterator[object]:
    """Start a SandboxServer (anything with async start/stop) in a thread with its own event
    loop, until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def sandbox_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``imapscope sandbox ARGS`` as a real process; return it and its start-up banner
    (everything up to the "Ctrl-C" line, which holds the ports, CA file and admin address)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "sandbox", *args],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return proc, "".join(lines)
