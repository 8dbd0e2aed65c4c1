"""An IMAP connection over asyncio: the codec's ClientConnection plus a TCP/TLS stream.

The only place that touches sockets and TLS. Every step is traced (see :mod:`._trace`); every
line on the wire is kept, redacted by the codec where it is produced, in :attr:`transcript`.
Foreign exceptions are translated here into :class:`NetError` subclasses that say which phase
failed, so the probe can name the layer.

Every wait has a *total* deadline (:attr:`ImapConnection.timeout` unless a command says
otherwise), not a per-read timeout: a server that trickles a byte a second, or sends an untagged
BYE every half second and never the tagged reply, is cut off when the deadline passes. Every wait
also has a byte budget: a server cannot make a step hold more than ``byte_budget`` bytes
(literals are refused when announced, before their data is read).

The account's own secrets are masked in the bytes *received*, before the codec or the transcript
sees them (:class:`SecretMask`), so a server that repeats the password in its reply cannot put it
into any event, evidence, report or log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Literal

from imapscope.imap import (
    NEED_DATA,
    Bye,
    ClientConnection,
    Command,
    Greeting,
    LimitExceededError,
    Mechanism,
    ProtocolError,
    Response,
    StartTLS,
    TaggedResponse,
)
from imapscope.net._stream import close_stream, open_stream
from imapscope.net._tls import TlsInfo, tls_info
from imapscope.net._trace import Tracer, ignore, span

Security = Literal["tls", "starttls", "plain"]


class NetError(Exception):
    """A network-level failure; ``phase`` says where (tcp, tls, greeting, read, ...)."""

    def __init__(self, phase: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.cause = cause


class NetTimeoutError(NetError):
    """A phase did not finish within its timeout; ``received``: bytes that came meanwhile (a
    server that trickles is not a silent one)."""

    def __init__(
        self, phase: str, message: str, cause: BaseException | None = None, received: int = 0
    ) -> None:
        super().__init__(phase, message, cause)
        self.received = received


class BudgetExceededError(NetError):
    """The server sent (or announced) more bytes for one step than its budget allows."""


class ConnectionClosedError(NetError):
    """The peer closed the connection."""


@dataclass(frozen=True, slots=True)
class WireLine:
    """One line of the transcript: direction ("C" sent, "S" received), time, redacted text."""

    direction: str
    at_ms: float
    text: str


@dataclass(slots=True)
class Result:
    """A command's tagged completion and the untagged responses that came with it."""

    tagged: TaggedResponse
    untagged: list[Response] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tagged.status == "OK"


READ_SIZE = 64 * 1024
#: Seconds a close waits for the transport to finish closing.
CLOSE_TIMEOUT = 0.5
#: Bytes one step (a greeting, one command's whole response) may bring by default. Generous for
#: what a check or a metadata sync reads; a live body fetch sets its own.
DEFAULT_STEP_BUDGET = 64 * 1024 * 1024


class SecretMask:
    """Replaces each secret (and its base64 forms, as SASL carries it) with as many ``*`` in a
    byte stream, keeping lengths so literal framing is unchanged; a secret split across two reads
    is held back until it can be judged."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[bytes] = set()
        for secret in secrets:
            if len(secret) < 4:  # too short to mask without masking ordinary text
                continue
            raw = secret.encode()
            found.add(raw)
            # Inside any base64 blob (SASL PLAIN's "\0user\0secret", XOAUTH2's "auth=Bearer
            # token"), the secret starts at one of three bit alignments; the characters wholly
            # made of its bits are the same whatever surrounds it.
            for shift in range(3):
                encoded = base64.b64encode(b"\0" * shift + raw)
                start, end = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
                if end - start >= 4:
                    found.add(encoded[start:end])
        self.patterns = sorted(found, key=len, reverse=True)
        self._held = b""

    def __call__(self, data: bytes) -> bytes:
        if not self.patterns:
            return data
        data = self._held + data
        for pattern in self.patterns:
            if pattern in data:
                data = data.replace(pattern, b"*" * len(pattern))
        if not data:  # EOF: nothing more can complete a held prefix
            return data
        hold = self._hold(data)
        self._held = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold] if hold else data

    def _hold(self, data: bytes) -> int:
        """How much of the end of ``data`` to hold back: the longest that begins some pattern
        (the next read may complete it). Only where a pattern's first byte occurs can one
        begin (usually nowhere: one search per pattern, not one comparison per length)."""
        hold = 0
        for pattern in self.patterns:
            keep = min(len(pattern) - 1, len(data))
            if keep <= hold:
                continue
            tail = data[len(data) - keep :]
            at = tail.find(pattern[0], 0, keep - hold)  # a start that would hold more
            while at != -1:
                if pattern.startswith(tail[at:]):
                    hold = keep - at
                    break
                at = tail.find(pattern[0], at + 1, keep - hold)
        return hold

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


class ImapConnection:
    """Open with :meth:`open`; then :meth:`greeting`, :meth:`run`, :meth:`starttls`, ..."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        host: str,
        address: str,
        port: int,
        tracer: Tracer,
        timeout: float,
        byte_budget: int = DEFAULT_STEP_BUDGET,
        secrets: Iterable[str] = (),
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host = host
        self.address = address
        self.port = port
        self.timeout = timeout
        self.byte_budget = byte_budget
        self._tracer = tracer
        self._started = time.perf_counter()
        # Each line as it came (direction, perf_counter, bytes): made into a WireLine only when
        # read. A first sync logs 100,000 lines, and a synced account keeps its last 20.
        self._lines: list[tuple[str, float, bytes]] | deque[tuple[str, float, bytes]] = []
        self.codec = ClientConnection(log=self._log, max_literal=byte_budget)
        self._mask = SecretMask(secrets)
        self.tls: TlsInfo | None = None
        self._closed = False
        self._step_bytes = 0  # received since the current step began
        self._step_ends: float | None = None  # the current step's deadline (the loop's time)

    def keep_last(self, lines: int) -> None:
        """From now on keep only the last ``lines`` of the transcript: a connection that lives
        for days (a synced account's) must not keep every line it ever saw. What a failure is
        named from is the last few lines the server sent."""
        self._lines = deque(self._lines, maxlen=lines)

    @property
    def transcript(self) -> list[WireLine]:
        """The lines sent and received so far (the last ones only after :meth:`keep_last`),
        secrets redacted, times in milliseconds since the connection opened."""
        started = self._started
        return [
            WireLine(d, (at - started) * 1000, line.decode("utf-8", "replace").rstrip("\r\n"))
            for d, at, line in self._lines
        ]

    def _log(self, direction: str, line: bytes) -> None:
        self._lines.append((direction, time.perf_counter(), bytes(line)))

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        address: str,
        port: int,
        *,
        security: Security,
        context: ssl.SSLContext | None,
        timeout: float = 10.0,
        tracer: Tracer = ignore,
        source_address: tuple[str, int] | None = None,
        proxy: str | None = None,
        byte_budget: int = DEFAULT_STEP_BUDGET,
        secrets: Iterable[str] = (),
    ) -> ImapConnection:
        """Connect to ``address`` (an IP) for ``host`` (the name TLS verifies), implicit TLS when
        ``security`` is "tls". STARTTLS happens later, through :meth:`starttls`. ``secrets`` are
        masked in whatever the server sends (see :class:`SecretMask`)."""
        with span(tracer, "connect_tcp", host=host, address=address, port=port) as tcp:
            try:
                reader, writer = await open_stream(
                    address, port, timeout=timeout, proxy=proxy, source_address=source_address
                )
            except TimeoutError as exc:
                raise NetTimeoutError(
                    "tcp", f"no TCP answer from {address} port {port} in {timeout:g}s", exc
                ) from exc
            except OSError as exc:
                raise NetError("tcp", f"{address} port {port}: {exc.strerror or exc}", exc) from exc
            sock = writer.get_extra_info("socket")
            if sock is not None:
                tcp.details["local"] = sock.getsockname()[0]
        connection = cls(
            reader, writer, host=host, address=address, port=port, tracer=tracer, timeout=timeout,
            byte_budget=byte_budget, secrets=secrets,
        )  # fmt: skip
        if security == "tls":
            if context is None:
                raise ValueError("implicit TLS needs an SSL context")
            try:
                await connection._start_tls(context)
            except BaseException:
                await connection.close()  # the TCP connection must not outlive a failed handshake
                raise
        return connection

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        with span(self._tracer, "start_tls", host=self.host) as tls:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._writer.start_tls(context, server_hostname=self.host)
            except TimeoutError as exc:
                raise NetTimeoutError(
                    "tls", f"TLS handshake with {self.address} timed out", exc
                ) from exc
            except ssl.SSLCertVerificationError as exc:
                raise CertificateError(exc) from exc
            except (ssl.SSLError, OSError) as exc:
                raise NetError("tls", f"TLS handshake failed: {_ssl_reason(exc)}", exc) from exc
            ssl_object = self._writer.get_extra_info("ssl_object")
            self.tls = tls_info(ssl_object)
            tls.details.update(version=self.tls.version, cipher=self.tls.cipher)

    # -- talking ------------------------------------------------------------------------------

    async def _flush(self, phase: str) -> None:
        """Send what the codec has queued; a dead connection is a NetError like on reading."""
        data = self.codec.data_to_send()
        if data:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ssl.SSLError, OSError) as exc:
                raise NetError(phase, f"connection failed: {_ssl_reason(exc)}", exc) from exc

    async def _fill(self, phase: str, timeout: float) -> None:
        await self._flush(phase)
        ends = self._step_ends
        try:
            if ends is not None and ends <= asyncio.get_running_loop().time() + timeout:
                # The step's deadline comes first: it bounds this read already (one timer
                # fewer per read, where most reads are).
                chunk = await self._reader.read(READ_SIZE)
            else:
                async with asyncio.timeout(timeout):
                    chunk = await self._reader.read(READ_SIZE)
        except TimeoutError as exc:
            raise NetTimeoutError(phase, f"no answer within {timeout:g}s", exc) from exc
        except (ssl.SSLError, OSError) as exc:
            raise NetError(phase, f"connection failed: {_ssl_reason(exc)}", exc) from exc
        self._step_bytes += len(chunk)
        if self._step_bytes > self.byte_budget:
            raise BudgetExceededError(
                phase, f"the server sent over {self.byte_budget} bytes for the {phase} step "
                f"(the step's byte budget)",
            )  # fmt: skip
        if chunk:
            self.codec.receive_data(self._mask(chunk))
            return
        held = self._mask.flush()  # EOF: a held-back prefix was not a secret after all
        if held:
            self.codec.receive_data(held)
        self.codec.receive_data(b"")

    async def next_response(self, phase: str = "read", timeout: float | None = None) -> Response:
        """The next response; ``timeout`` bounds each read (use :meth:`deadline` to bound a
        whole step)."""
        limit = self.timeout if timeout is None else timeout
        while True:
            try:
                event = self.codec.next_event()
            except LimitExceededError as exc:
                raise BudgetExceededError(phase, f"{exc}", exc) from exc
            except ProtocolError as exc:
                if not self.codec.greeted or "closed" in str(exc):
                    raise ConnectionClosedError(phase, str(exc), exc) from exc
                raise
            await self._flush(phase)
            if event is not NEED_DATA:
                assert not isinstance(event, type(NEED_DATA))
                return event
            await self._fill(phase, limit)

    @contextlib.asynccontextmanager
    async def deadline(self, phase: str, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound a whole step: it must complete within ``seconds`` (default :attr:`timeout`)
        and bring at most :attr:`byte_budget` bytes, however the server paces its bytes."""
        limit = self.timeout if seconds is None else seconds
        self._step_bytes = 0
        outer = self._step_ends
        try:
            async with asyncio.timeout(limit) as bound:
                self._step_ends = bound.when()
                yield
        except TimeoutError as exc:
            got = self._step_bytes
            said = f"{got} bytes came meanwhile, without completing it" if got else "nothing came"
            raise NetTimeoutError(
                phase, f"the {phase} step did not complete within {limit:g}s ({said})", exc, got
            ) from exc
        finally:
            self._step_ends = outer

    async def greeting(self, timeout: float | None = None) -> Greeting:
        with span(self._tracer, "greeting") as greeting_span:
            async with self.deadline("greeting", timeout):
                event = await self.next_response("greeting", timeout)
            assert isinstance(event, Greeting)
            greeting_span.details.update(status=event.status, text=event.text)
            return event

    async def wait(self, tag: str, phase: str, deadline: float | None = None) -> Result:
        """The tagged completion of ``tag`` with its untagged responses, within ``deadline``
        seconds in all (default :attr:`timeout`)."""
        async with self.deadline(phase, deadline):
            return await self._wait(tag, phase)

    async def _wait(self, tag: str, phase: str) -> Result:
        result = Result(TaggedResponse(tag, "BAD", None, ""), [])
        while True:
            try:
                event = await self.next_response(phase)
            except ConnectionClosedError:
                if any(isinstance(e, Bye) for e in result.untagged):
                    # The server said BYE and hung up: report that as the command's outcome.
                    result.tagged = TaggedResponse(tag, "NO", None, "connection closed after BYE")
                    return result
                raise
            if isinstance(event, TaggedResponse) and event.tag == tag:
                result.tagged = event
                return result
            result.untagged.append(event)

    async def run(
        self, command: Command, phase: str | None = None, *, deadline: float | None = None
    ) -> Result:
        """Send ``command``, return its completion with the untagged responses."""
        name = phase or command.verb().lower().replace(" ", "_")
        with span(self._tracer, "command", verb=command.verb()) as command_span:
            tag = self.codec.send(command)
            result = await self.wait(tag, name, deadline)
            command_span.details["status"] = result.tagged.status
            return result

    async def run_pipelined(
        self, commands: Iterable[Command], *, depth: int = 2, deadline: float | None = None
    ) -> AsyncIterator[Result]:
        """Run ``commands`` with up to ``depth`` of them sent ahead (RFC 9051 §5.5), and yield
        each one's completion in order, with the untagged responses that came before it: the
        server works on the next command while the caller handles this one's responses.

        Each command must complete within ``deadline`` seconds (default :attr:`timeout`) of
        the previous one's completion, with at most :attr:`byte_budget` bytes. A server may
        answer pipelined commands concurrently: an untagged response that belongs to a later
        command can arrive in an earlier one's result (FETCH responses say their UID: the
        caller keeps what it did not ask for yet, see the sync engine)."""
        waiting: deque[tuple[str, str]] = deque()  # (tag, verb), oldest first
        queued = iter(commands)

        async def send_next() -> None:
            command = next(queued, None)
            if command is not None:
                verb = command.verb()
                waiting.append((self.codec.send(command), verb))
                await self._flush(verb.lower().replace(" ", "_"))

        for _ in range(max(1, depth)):
            await send_next()
        while waiting:
            tag, verb = waiting.popleft()
            with span(self._tracer, "command", verb=verb) as command_span:
                result = await self.wait(tag, verb.lower().replace(" ", "_"), deadline)
                command_span.details["status"] = result.tagged.status
            await send_next()
            yield result

    async def authenticate(self, mechanism: Mechanism) -> Result:
        with span(self._tracer, "authenticate", mechanism=mechanism.name) as auth:
            tag = self.codec.authenticate(mechanism)
            result = await self.wait(tag, "authenticate")
            auth.details["status"] = result.tagged.status
            return result

    async def starttls(self, context: ssl.SSLContext) -> Result:
        """STARTTLS, and the handshake when the server agrees."""
        result = await self.run(StartTLS())
        if result.ok:
            await self._start_tls(context)
            self.codec.tls_established()
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Short: closing is also what a cancelled step does on its way out (shutdown, an
        # abandoned check); a peer that does not read our close is not waited for long.
        await close_stream(self._writer, CLOSE_TIMEOUT)


class CertificateError(NetError):
    """The server's certificate failed verification; ``code`` is OpenSSL's verify code."""

    def __init__(self, cause: ssl.SSLCertVerificationError) -> None:
        super().__init__("tls", cause.verify_message or str(cause), cause)
        self.code = cause.verify_code
        self.verify_message = cause.verify_message or str(cause)


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    return str(exc) or type(exc).__name__


async def read_banner(
    address: str,
    port: int,
    timeout: float,
    source_address: tuple[str, int] | None = None,
    proxy: str | None = None,
) -> bytes | None:
    """The first line a port sends without being asked (None if it says nothing in time)."""
    try:
        reader, writer = await open_stream(
            address, port, timeout=timeout, proxy=proxy, source_address=source_address
        )
    except (TimeoutError, OSError):
        return None
    try:
        async with asyncio.timeout(timeout):
            return await reader.readline()
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        await close_stream(writer)


async def speaks_tls(
    host: str, address: str, port: int, timeout: float, proxy: str | None = None
) -> bool:
    """Whether a TLS handshake (not verified: no credentials follow) succeeds on this port."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await open_stream(
            address, port, timeout=timeout, proxy=proxy, ssl_context=context, server_hostname=host
        )
    except (TimeoutError, OSError, ssl.SSLError):
        return False
    await close_stream(writer)
    return True
