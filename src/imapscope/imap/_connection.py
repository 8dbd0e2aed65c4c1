"""The client connection: bytes in, typed events out; commands in, bytes out. No IO.

Theory of operation
-------------------
The IO layer does four things in a loop: ``receive_data(bytes)`` with what the socket gave (``b""``
at EOF), ``next_event()`` until it returns :data:`NEED_DATA`, ``data_to_send()`` to write what the
connection queued, and ``send(command)`` whenever it wants something done.

``send`` queues the command's segments and returns its tag. Several commands may be in flight
(pipelining); each tagged completion carries its tag, and :meth:`command_for` says which command
it completes. A synchronizing literal stops the queue until the server's ``+``; the connection
consumes that continuation itself and releases the next segment, so callers never see it. The
same goes for SASL challenges during :meth:`authenticate`, answered by the mechanism generator.

The connection keeps the IMAP state (:mod:`._state`) and refuses commands the state does not
allow, tracks capabilities (greeting, CAPABILITY responses and codes; forgotten after STARTTLS, as
RFC 9051 6.2.1 requires), and picks LITERAL+/LITERAL- when offered.

Logging is a callback, ``log(direction, line)`` with direction "C" (sent) or "S" (received): the
sent lines have every secret replaced by ``<redacted>``, produced together with the real bytes, so
no consumer ever sees a secret. Without a callback nothing is kept: a 100,000-message FETCH must
not be held twice.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from imapscope.imap._buffer import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_LITERAL,
    Frame,
    ReceiveBuffer,
)
from imapscope.imap._commands import (
    REDACTED,
    Authenticate,
    Command,
    LiteralMode,
    Segment,
    encode,
)
from imapscope.imap._errors import LocalProtocolError, RemoteProtocolError
from imapscope.imap._events import (
    Bye,
    Capability,
    ContinuationRequest,
    Enabled,
    Greeting,
    Response,
    ResponseCode,
    TaggedResponse,
    UntaggedStatus,
)
from imapscope.imap._events import (
    Fetch as FetchResponse,
)
from imapscope.imap._responses import parse_response
from imapscope.imap._sasl import Exchange, Mechanism
from imapscope.imap._serialize import raw_value
from imapscope.imap._state import ALLOWED, ON_NO, ON_OK, State, first_word
from imapscope.imap._values import RawValue


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _Sentinel.NEED_DATA
"""Returned by ``next_event`` when it needs more bytes."""


@dataclass(slots=True)
class _InFlight:
    command: Command
    verb: str
    sasl: Exchange | None = None
    sasl_initial: bytes | None = None  # to send on the first "+" when SASL-IR was not used


#: Received lines longer than this (literals included) are logged shortened.
LOG_LINE_LIMIT = 4096


def _as_logged(frame: Frame) -> bytes:
    """The line as it was on the wire (literal data in place), shortened when long."""
    if not frame.literals and len(frame.text) <= LOG_LINE_LIMIT:
        return frame.text  # nearly every line
    size = len(frame.text) + sum(len(literal) for literal in frame.literals)
    if size <= LOG_LINE_LIMIT:
        return raw_value(RawValue(frame.text, frame.literals))
    return frame.text[:200] + b"... <%d bytes>\r\n" % size


_SEEN_CAPABILITIES: dict[frozenset[str], frozenset[str]] = {}


def _shared(capabilities: frozenset[str]) -> frozenset[str]:
    """One object per distinct capability set: a thousand connections to one server share it
    (each set is dozens of strings) instead of keeping a copy each. Bounded: a server that
    varies its list endlessly gets copies past the first 256 sets."""
    found = _SEEN_CAPABILITIES.get(capabilities)
    if found is not None:
        return found
    if len(_SEEN_CAPABILITIES) < 256:
        _SEEN_CAPABILITIES[capabilities] = capabilities
    return capabilities


class ClientConnection:
    """One IMAP client connection (see the module docstring)."""

    def __init__(
        self,
        *,
        tag_prefix: str = "A",
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_frame_literals: int | None = None,
        log: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._log = log
        self._buffer = ReceiveBuffer(
            max_line=max_line, max_literal=max_literal,
            max_frame_literals=max_literal if max_frame_literals is None else max_frame_literals,
        )  # fmt: skip
        self._tag_prefix = tag_prefix
        self._counter = 0
        self._out = bytearray()
        self._queue: deque[tuple[str, Segment]] = deque()  # (tag, segment)
        self._blocked: str | None = None  # tag whose literal waits for "+"
        self._in_flight: dict[str, _InFlight] = {}
        self._completed: dict[str, Command] = {}
        self._idle_tag: str | None = None
        self._idling = False
        self.greeted = False
        self.state = State.NOT_AUTHENTICATED
        self._send_state = State.NOT_AUTHENTICATED  # state if everything in flight succeeds
        self.capabilities: frozenset[str] = frozenset()
        self.enabled: frozenset[str] = frozenset()
        self.starttls_pending = False

    # -- properties ---------------------------------------------------------------------------

    @property
    def literal_mode(self) -> LiteralMode:
        if "LITERAL+" in self.capabilities:
            return "plus"
        if "LITERAL-" in self.capabilities:
            return "minus"
        return "sync"

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled

    @property
    def in_flight(self) -> tuple[str, ...]:
        return tuple(self._in_flight)

    def command_for(self, tag: str) -> Command | None:
        """The command a tag belongs (or belonged) to."""
        flight = self._in_flight.get(tag)
        return flight.command if flight else self._completed.get(tag)

    # -- sending ------------------------------------------------------------------------------

    def _next_tag(self) -> str:
        self._counter += 1
        return f"{self._tag_prefix}{self._counter:04d}"

    def send(self, command: Command) -> str:
        """Queue ``command``; return its tag."""
        if self._idling or self._idle_tag is not None:
            raise LocalProtocolError(
                f"cannot send {command.verb()} while IDLE is active", hint="call done() first"
            )
        if self.starttls_pending:
            raise LocalProtocolError(
                "cannot send commands until the TLS handshake after STARTTLS",
                hint="upgrade the transport, then call tls_established()",
            )
        if isinstance(command, Authenticate):
            raise LocalProtocolError("use authenticate() for AUTHENTICATE")
        verb = command.verb()
        self._check_state(verb)
        tag = self._next_tag()
        # "UID FETCH" moves state like FETCH; the tables key on the verb after UID.
        flight = _InFlight(command, verb.split()[-1] if verb.startswith("UID ") else verb)
        self._in_flight[tag] = flight
        self._enqueue(tag, encode(tag, command, literal_mode=self.literal_mode, utf8=self.utf8))
        self._after_send(tag, flight)
        return tag

    def _check_state(self, verb: str) -> None:
        allowed = ALLOWED.get(first_word(verb))
        if allowed is not None and self._send_state not in allowed:
            raise LocalProtocolError(
                f"{verb} is not allowed in the {self._send_state.value} state",
                hint=f"{verb} needs: {', '.join(sorted(s.value for s in allowed))}",
            )

    def authenticate(self, mechanism: Mechanism) -> str:
        """Queue AUTHENTICATE; challenges are answered by the mechanism. Returns the tag."""
        self._check_state("AUTHENTICATE")
        exchange = mechanism.exchange()
        first = next(exchange)
        initial: str | None = None
        pending_initial: bytes | None = None
        if mechanism.has_initial_response:
            if "SASL-IR" in self.capabilities:
                initial = base64.b64encode(first).decode() if first else "="
            else:
                pending_initial = first
        command = Authenticate(mechanism.name.upper(), initial)
        tag = self._next_tag()
        flight = _InFlight(command, "AUTHENTICATE", exchange, pending_initial)
        self._in_flight[tag] = flight
        self._enqueue(tag, encode(tag, command, literal_mode=self.literal_mode))
        self._after_send(tag, flight)
        return tag

    def done(self) -> None:
        """End IDLE (sends the DONE line)."""
        if self._idle_tag is None:
            raise LocalProtocolError("done() without IDLE", hint="send(Idle()) first")
        self._enqueue("", [Segment(b"DONE\r\n", log=b"DONE\r\n")])
        self._idling = False
        self._idle_tag = None

    def tls_established(self) -> None:
        """The IO layer finished the TLS handshake that STARTTLS asked for."""
        if not self.starttls_pending:
            raise LocalProtocolError("tls_established() without a successful STARTTLS")
        self.starttls_pending = False

    def _after_send(self, tag: str, flight: _InFlight) -> None:
        if flight.verb == "IDLE":
            self._idle_tag = tag
        target = ON_OK.get(flight.verb)
        if target is not None:
            self._send_state = target

    def _enqueue(self, tag: str, segments: list[Segment]) -> None:
        self._queue.extend((tag, segment) for segment in segments)
        self._pump()

    def _pump(self) -> None:
        while self._queue and self._blocked is None:
            tag, segment = self._queue.popleft()
            self._out += segment.data
            if self._log is not None:
                self._log("C", segment.log)
            if segment.wait:
                self._blocked = tag

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (and forget them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def _send_line(self, data: bytes, log: bytes) -> None:
        self._out += data
        if self._log is not None:
            self._log("C", log)

    # -- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the peer closed the connection."""
        self._buffer.feed(data)

    def next_event(self) -> Response | _Sentinel:
        """The next response, or NEED_DATA."""
        while True:
            frame = self._buffer.next_frame()
            if frame is None:
                if self._buffer.eof:
                    if self._buffer.pending:
                        raise RemoteProtocolError(
                            "connection closed in the middle of a response",
                            hint="the server dropped the connection; retry",
                        )
                    unanswered = [f.verb for f in self._in_flight.values() if f.verb != "LOGOUT"]
                    if unanswered:
                        # Even after BYE: a command that never completed must not look done.
                        raise RemoteProtocolError(
                            f"connection closed before the server completed {unanswered[0]}",
                            hint="the server dropped the connection; see its last words",
                        )
                    if self.state is not State.LOGOUT:
                        raise RemoteProtocolError(
                            "connection closed without BYE",
                            hint="the server or a middlebox dropped the connection",
                        )
                return NEED_DATA
            assert isinstance(frame, Frame)
            event = self._handle(frame)
            if event is not None:
                return event

    def _handle(self, frame: Frame) -> Response | None:
        if self._log is not None:
            self._log("S", _as_logged(frame))
        if not self.greeted:
            greeting = parse_response(frame, greeting=True)
            assert isinstance(greeting, Greeting)
            self.greeted = True
            if greeting.status == "PREAUTH":
                self.state = self._send_state = State.AUTHENTICATED
            elif greeting.status == "BYE":
                self.state = self._send_state = State.LOGOUT
            self._note_code(greeting.code)
            return greeting
        event = parse_response(frame, utf8=self.utf8)
        if type(event) is FetchResponse:  # the hot path: nothing to track
            return event
        if isinstance(event, ContinuationRequest):
            return self._continuation(event)
        if isinstance(event, TaggedResponse):
            self._complete(event)
        elif isinstance(event, Capability):
            self.capabilities = _shared(frozenset(c.upper() for c in event.capabilities))
        elif isinstance(event, Enabled):
            self.enabled |= {c.upper() for c in event.capabilities}
        elif isinstance(event, UntaggedStatus):
            self._note_code(event.code)
        elif isinstance(event, Bye):
            self.state = self._send_state = State.LOGOUT
        return event

    def _note_code(self, code: ResponseCode | None) -> None:
        if code is not None and code.name == "CAPABILITY" and isinstance(code.value, tuple):
            self.capabilities = _shared(frozenset(str(c).upper() for c in code.value))

    def _continuation(self, event: ContinuationRequest) -> Response | None:
        if self._blocked is not None:
            self._blocked = None
            self._pump()
            return None
        for flight in self._in_flight.values():
            if flight.sasl is not None:
                self._answer_sasl(flight, event)
                return None
        if self._idle_tag is not None:
            self._idling = True
        return event

    def _answer_sasl(self, flight: _InFlight, event: ContinuationRequest) -> None:
        assert flight.sasl is not None
        if flight.sasl_initial is not None:
            response, flight.sasl_initial = flight.sasl_initial, None
        else:
            try:
                response = flight.sasl.send(event.data)
            except StopIteration:
                # The mechanism has nothing more to say: cancel (RFC 9051 6.2.2).
                self._send_line(b"*\r\n", b"*\r\n")
                return
        self._send_line(base64.b64encode(response) + b"\r\n", REDACTED + b"\r\n")

    def _complete(self, event: TaggedResponse) -> None:
        flight = self._in_flight.pop(event.tag, None)
        if flight is None:
            raise RemoteProtocolError(
                f"tagged response for unknown tag {event.tag!r}",
                hint="the server answered a command we never sent",
            )
        if self._blocked == event.tag:
            # The server refused the command instead of sending "+" for its literal (allowed by
            # RFC 9051 7.5): the rest of that command must never be sent.
            self._queue = deque(item for item in self._queue if item[0] != event.tag)
            self._blocked = None
            self._pump()
        self._completed[event.tag] = flight.command
        if len(self._completed) > 1000:
            self._completed.pop(next(iter(self._completed)))
        self._note_code(event.code)
        if event.tag == self._idle_tag:
            self._idle_tag = None
            self._idling = False
        if event.status == "OK":
            target = ON_OK.get(flight.verb)
            if target is not None:
                self.state = target
            if flight.verb == "STARTTLS":
                if self._buffer.pending:
                    # Anything after the OK arrived in plaintext and could be injected (the
                    # STARTTLS command-injection class of bugs, CVE-2011-0411 and kin).
                    raise RemoteProtocolError(
                        "data arrived after STARTTLS OK, before the TLS handshake",
                        hint="possible STARTTLS injection by a man in the middle; do not proceed",
                    )
                self.starttls_pending = True
                self.capabilities = frozenset()
            elif flight.verb in ("LOGIN", "AUTHENTICATE") and (
                event.code is None or event.code.name != "CAPABILITY"
            ):
                self.capabilities = frozenset()  # may change after login: ask again
        else:
            target = ON_NO.get(flight.verb)
            if target is not None:
                self.state = target
        if not self._in_flight:
            self._send_state = self.state
