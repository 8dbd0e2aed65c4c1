"""The server role: command lines in, typed commands out; responses in, bytes out. No IO.

Theory of operation
-------------------
The sandbox server drives a :class:`ServerConnection` the way a client drives a
``ClientConnection``: ``receive_data``, ``next_event`` until :data:`NEED_DATA`, ``send`` for each
response, ``data_to_send`` to write. Events are :class:`CommandReceived` (a typed command from
:mod:`._commands`, the same classes the client sends, so ``parse(encode(c)) == c``),
:class:`IdleDone`, :class:`SaslResponse` during AUTHENTICATE, and :class:`BadCommand` for a line
that is not a valid command in the current state (answer it with ``tag BAD``; the connection goes
on).

The connection answers synchronizing literals with ``+`` by itself, so a client's ``{N}`` never
stalls. It follows the state table of :mod:`._state` from the tagged responses the server sends,
which assumes what every server does: handle one command fully (send its tagged response) before
asking for the next event. After a tagged OK to STARTTLS it drops anything the client pipelined
in plaintext (the CVE-2011-0411 class of injection) and waits for :meth:`tls_established`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from imapscope.imap import _mutf7
from imapscope.imap import _sequence as sequence
from imapscope.imap._buffer import Frame, LiteralAnnounced, LiteralRefused, ReceiveBuffer
from imapscope.imap._commands import (
    Append,
    Authenticate,
    Capability,
    CatenatePart,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    GetAcl,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    MailboxCommand,
    Move,
    MyRights,
    Namespace,
    Noop,
    Rename,
    Search,
    Select,
    Sort,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    Unselect,
    Unsubscribe,
)
from imapscope.imap._connection import NEED_DATA, _Sentinel
from imapscope.imap._errors import (
    LimitExceededError,
    LocalProtocolError,
    MailboxNameError,
    ProtocolError,
    RemoteProtocolError,
)
from imapscope.imap._events import Response, TaggedResponse, parse_internaldate
from imapscope.imap._serialize import serialize_response, valid_tag
from imapscope.imap._state import ALLOWED, ON_NO, ON_OK, State
from imapscope.imap._values import Scanner, Value, as_int, as_list, as_text

#: Longest command line a server accepts (excluding literals), as Dovecot does (RFC 7162 3.2.1
#: asks servers to accept at least 8192 octets).
SERVER_MAX_LINE = 64 * 1024
#: Largest literal a server accepts: a message for APPEND.
SERVER_MAX_LITERAL = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CommandReceived:
    tag: str
    command: Command


@dataclass(frozen=True, slots=True)
class IdleDone:
    tag: str


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """A client line during AUTHENTICATE: decoded bytes, or None when the client cancelled."""

    tag: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class BadCommand:
    """Not a valid command here: answer ``tag BAD message`` (tag is ``*`` if there was none).
    ``status`` is NO for a well-formed command with an unusable argument (a mailbox name that
    is not valid modified UTF-7: Dovecot answers NO there, not BAD)."""

    tag: str
    message: str
    status: Literal["BAD", "NO"] = "BAD"


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A command over the connection's limits. ``fatal``: the connection cannot go on (a
    non-synchronizing literal's data is on its way, or a line never ended): answer ``tag BAD``,
    ``* BYE`` and close. Otherwise (a synchronizing literal, not yet sent): answer
    ``tag NO [TOOBIG]`` and go on (RFC 7889 §4, RFC 7888 §4)."""

    tag: str
    message: str
    fatal: bool


ServerEvent = CommandReceived | IdleDone | SaslResponse | BadCommand | TooLarge


# --- parsing commands -------------------------------------------------------------------------


def _bytes(item: Value) -> bytes:
    """An astring argument. ``NIL`` is an atom there like any other (``LIST "" NIL`` is a
    pattern named NIL; Dovecot answers it OK), not the absence of a value."""
    if item is None:
        return b"NIL"
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    raise RemoteProtocolError(f"expected a string, got {item!r}")


def _mailbox(item: Value, utf8: bool) -> str:
    raw = _bytes(item)
    if raw.upper() == b"INBOX":
        return "INBOX"
    return raw.decode("utf-8", "replace") if utf8 else _mutf7.decode(raw)


def _syntax(item: Value, strings: list[str]) -> str:
    """Search criteria back to text, with each string replaced by a ``?`` placeholder."""
    if isinstance(item, list):
        return "(" + " ".join(_syntax(v, strings) for v in item) + ")"
    if isinstance(item, bytes | bytearray):
        strings.append(bytes(item).decode("utf-8", "replace"))
        return "?"
    if item is None:
        return "NIL"
    return item


def _arity(values: list[Value], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(values) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise RemoteProtocolError(f"expected {expected} arguments, got {len(values)}")


def parse_command(frame: Frame, *, utf8: bool = False) -> tuple[str, Command]:
    """``tag SP command CRLF`` to (tag, typed command); RemoteProtocolError if malformed."""
    text = frame.text
    tag, _, rest = text.partition(b" ")
    if not rest or not valid_tag(tag):  # a tag no response could carry back
        raise RemoteProtocolError(f"not a tagged command: {text[:60]!r}")
    verb_bytes, _, _ = rest.partition(b" ")
    verb = verb_bytes.rstrip(b"\r\n").decode("ascii", "replace").upper()
    uid = verb == "UID"
    start = len(tag) + 1 + len(verb_bytes) + 1
    if uid:
        sub, _, _ = text[start:].partition(b" ")
        verb = sub.rstrip(b"\r\n").decode("ascii", "replace").upper()
        start += len(sub) + 1
    scanner = Scanner(text, min(start, len(text) - 2), frame.literals)
    values = scanner.values_to_end() if start < len(text) - 1 else []
    if verb == "APPEND" and not uid:  # needs to tell literals from quoted strings
        return tag.decode("ascii"), _append(values, utf8, frame.literals)
    return tag.decode("ascii"), _build(verb, uid, values, utf8)


_UID_VERBS = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"})


def _build(verb: str, uid: bool, values: list[Value], utf8: bool) -> Command:
    simple: dict[str, type[Command]] = {
        "CAPABILITY": Capability, "NOOP": Noop, "LOGOUT": Logout, "STARTTLS": StartTLS,
        "NAMESPACE": Namespace, "CHECK": Check, "CLOSE": Close, "UNSELECT": Unselect,
        "IDLE": Idle,
    }  # fmt: skip
    if uid and verb not in (
        "FETCH",
        "SEARCH",
        "STORE",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "SORT",
        "THREAD",
    ):
        raise RemoteProtocolError(f"UID {verb} is not a command")
    if verb in simple:
        _arity(values, 0)
        return simple[verb]()
    one_mailbox: dict[str, type[MailboxCommand]] = {
        "DELETE": Delete, "SUBSCRIBE": Subscribe, "UNSUBSCRIBE": Unsubscribe,
        "GETQUOTAROOT": GetQuotaRoot, "GETACL": GetAcl, "MYRIGHTS": MyRights,
    }  # fmt: skip
    if verb in one_mailbox:
        _arity(values, 1)
        return one_mailbox[verb](_mailbox(values[0], utf8))
    if verb == "GETQUOTA":
        _arity(values, 1)
        return GetQuota(as_text(values[0]))
    if verb == "LOGIN":
        _arity(values, 2)
        return Login(as_text(values[0]), as_text(values[1]))
    if verb == "AUTHENTICATE":
        _arity(values, 1, 2)
        initial = as_text(values[1]) if len(values) == 2 else None
        return Authenticate(as_text(values[0]).upper(), initial)
    if verb == "ENABLE":
        return Enable(tuple(as_text(v).upper() for v in values))
    if verb == "ID":
        _arity(values, 1)
        if values[0] is None:
            return Id(None)
        pairs = as_list(values[0])
        if len(pairs) % 2:
            raise RemoteProtocolError("ID parameters come in name/value pairs")
        return Id({as_text(k): as_text(v) for k, v in zip(pairs[::2], pairs[1::2], strict=True)})
    if verb in ("SELECT", "EXAMINE"):
        _arity(values, 1, 2)
        condstore, qresync = False, None
        for param_index, param in enumerate(as_list(values[1]) if len(values) == 2 else []):
            if isinstance(param, str) and param.upper() == "CONDSTORE":
                condstore = True
            elif isinstance(param, str) and param.upper() == "QRESYNC":
                following = as_list(values[1])[param_index + 1 :]
                known = as_list(following[0]) if following else []
                if len(known) < 2:
                    raise RemoteProtocolError("QRESYNC needs (uidvalidity modseq ...)")
                qresync = (as_int(known[0]), as_int(known[1]))
        return Select(_mailbox(values[0], utf8), verb == "EXAMINE", condstore, qresync)
    if verb == "CREATE":
        _arity(values, 1, 2)
        special = None
        if len(values) == 2:
            option = as_list(values[1])
            if len(option) == 2 and as_text(option[0]).upper() == "USE":
                special = as_text(as_list(option[1])[0])
        return Create(_mailbox(values[0], utf8), special)
    if verb == "RENAME":
        _arity(values, 2)
        return Rename(_mailbox(values[0], utf8), _mailbox(values[1], utf8))
    if verb in ("LIST", "LSUB"):
        select: tuple[str, ...] = ()
        if values and isinstance(values[0], list):
            select = tuple(as_text(v).upper() for v in as_list(values.pop(0)))
        returns: tuple[str, ...] = ()
        if len(values) == 4 and as_text(values[2]).upper() == "RETURN":
            returns = _return_options(as_list(values[3]))
            values = values[:2]
        _arity(values, 2)
        decode = (lambda b: b.decode("utf-8", "replace")) if utf8 else _mutf7.decode
        reference = decode(_bytes(values[0]))
        if isinstance(values[1], list) and verb == "LIST":  # several patterns (RFC 5258)
            patterns = [decode(_bytes(p)) for p in values[1]]
            if not patterns:
                raise RemoteProtocolError("LIST needs at least one pattern")
            return List(reference, patterns[0], select, returns, False, tuple(patterns[1:]))
        return List(reference, decode(_bytes(values[1])), select, returns, verb == "LSUB")
    if verb == "STATUS":
        _arity(values, 2)
        return Status(
            _mailbox(values[0], utf8), tuple(as_text(v).upper() for v in as_list(values[1]))
        )
    if verb == "EXPUNGE":
        if uid:
            _arity(values, 1)
            return Expunge(sequence.validate(as_text(values[0])))
        _arity(values, 0)
        return Expunge()
    if verb == "SEARCH":
        return _search(values, uid)
    if verb in ("SORT", "THREAD"):
        return _sort_or_thread(verb, values, uid)
    if verb == "FETCH":
        _arity(values, 2, 3)
        changed_since, vanished = None, False
        if len(values) == 3:
            modifiers = as_list(values[2])
            for index, modifier in enumerate(modifiers):
                word = as_text(modifier).upper()
                if word == "CHANGEDSINCE":
                    if index + 1 >= len(modifiers):
                        raise RemoteProtocolError("CHANGEDSINCE needs a mod-sequence")
                    changed_since = as_int(modifiers[index + 1])
                elif word == "VANISHED":
                    vanished = True
        items = _fetch_items(values[1])
        return Fetch(sequence.validate(as_text(values[0])), items, uid, changed_since, vanished)
    if verb == "STORE":
        _arity(values, 3, 4)
        unchanged_since = None
        if len(values) == 4:
            modifier = as_list(values.pop(1))
            if len(modifier) != 2 or as_text(modifier[0]).upper() != "UNCHANGEDSINCE":
                raise RemoteProtocolError("STORE's modifier is (UNCHANGEDSINCE mod-sequence)")
            unchanged_since = as_int(modifier[1])
        item = as_text(values[1]).upper()
        action = item[0] if item[0] in "+-" else ""
        if item.lstrip("+-") not in ("FLAGS", "FLAGS.SILENT"):
            raise RemoteProtocolError(f"STORE cannot change {item}")
        flags_value = values[2]
        store_flags = (
            tuple(as_text(f) for f in as_list(flags_value))
            if isinstance(flags_value, list)
            else ()  # NIL: no flags (the parser reads it as an empty list)
            if flags_value is None
            else (as_text(flags_value),)
        )
        return Store(
            sequence.validate(as_text(values[0])),
            store_flags,
            action,  # type: ignore[arg-type]
            item.endswith(".SILENT"),
            uid,
            unchanged_since,
        )
    if verb in ("COPY", "MOVE"):
        _arity(values, 2)
        command_class = Copy if verb == "COPY" else Move
        return command_class(sequence.validate(as_text(values[0])), _mailbox(values[1], utf8), uid)
    raise RemoteProtocolError(f"unknown command {verb}")


def _return_options(items: list[Value]) -> tuple[str, ...]:
    """LIST RETURN options as the client wrote them: an option followed by its parenthesized
    argument stays one string, e.g. "STATUS (MESSAGES UNSEEN)" (RFC 5819)."""
    options: list[str] = []
    for item in items:
        if isinstance(item, list) and options:
            options[-1] += " " + _fetch_items(item)
        else:
            options.append(as_text(item))
    return tuple(options)


def _fetch_items(item: Value) -> str:
    if isinstance(item, list):
        return "(" + " ".join(_fetch_items(v) for v in item) + ")"
    return as_text(item)


def _search(values: list[Value], uid: bool) -> Search:
    returns = None
    if len(values) >= 2 and _text_or_none(values[0]) == "RETURN":
        returns = tuple(as_text(v).upper() for v in as_list(values[1]))
        values = values[2:]
    charset = None
    if len(values) >= 2 and _text_or_none(values[0]) == "CHARSET":
        charset = as_text(values[1])
        values = values[2:]
    if not values:
        raise RemoteProtocolError("SEARCH needs criteria")
    strings: list[str] = []
    criteria = " ".join(_syntax(v, strings) for v in values)
    return Search(criteria, tuple(strings), charset, returns, uid)


def _append(values: list[Value], utf8: bool, literals: Sequence[bytes | bytearray]) -> Append:
    """APPEND mailbox, then one or more messages (MULTIAPPEND, RFC 3502), each with optional
    flags and date, as a literal or as CATENATE (parts) (RFC 4469)."""
    if len(values) < 2:
        raise RemoteProtocolError("APPEND needs a mailbox and a message")
    name = _mailbox(values[0], utf8)
    sent_as_literal = {id(literal) for literal in literals}
    messages: list[Append] = []
    flags: tuple[str, ...] = ()
    date = None
    rest = values[1:]
    while rest:
        item = rest.pop(0)
        if isinstance(item, list):
            flags = tuple(as_text(f) for f in item)
        elif isinstance(item, bytes | bytearray) and id(item) in sent_as_literal:
            messages.append(Append(name, bytes(item), flags, date))
            flags, date = (), None
        elif isinstance(item, str) and item.upper() == "CATENATE":
            listed = rest.pop(0) if rest else None
            if not isinstance(listed, list) or not listed:
                raise RemoteProtocolError("CATENATE needs a list of TEXT and URL parts")
            parts = _catenate(listed, sent_as_literal)
            messages.append(Append(name, b"", flags, date, parts))
            flags, date = (), None
        elif isinstance(item, bytes | bytearray) and date is None and rest:  # date-time
            date = parse_internaldate(bytes(item).decode("ascii", "replace"))
        else:
            raise RemoteProtocolError(f"APPEND: unexpected {as_text(item)[:40]!r}")
    if not messages or flags or date is not None:
        raise RemoteProtocolError("APPEND needs the message as a literal")
    first, *more = messages
    return Append(first.mailbox, first.message, first.flags, first.date, first.catenate,
                  tuple(more))  # fmt: skip


def _catenate(items: list[Value], sent_as_literal: set[int]) -> tuple[CatenatePart, ...]:
    if len(items) % 2:
        raise RemoteProtocolError("CATENATE parts come in pairs: TEXT literal or URL url")
    parts: list[CatenatePart] = []
    for kind_value, data in zip(items[::2], items[1::2], strict=True):
        kind = as_text(kind_value).upper()
        if kind == "TEXT" and isinstance(data, bytes | bytearray) and id(data) in sent_as_literal:
            parts.append(("TEXT", bytes(data)))
        elif kind == "URL" and data is not None and not isinstance(data, list):
            parts.append(("URL", data.encode() if isinstance(data, str) else bytes(data)))
        else:
            wanted = "a literal" if kind == "TEXT" else "a URL"
            raise RemoteProtocolError(f"CATENATE: {kind} needs {wanted}")
    return tuple(parts)


def _sort_or_thread(verb: str, values: list[Value], uid: bool) -> Sort | Thread:
    """SORT (keys) charset criteria, THREAD algorithm charset criteria (RFC 5256)."""
    if len(values) < 3:
        first = "(keys)" if verb == "SORT" else "an algorithm"
        raise RemoteProtocolError(f"{verb} needs {first}, a charset and criteria")
    strings: list[str] = []
    criteria = " ".join(_syntax(v, strings) for v in values[2:])
    charset = as_text(values[1]).upper()
    if verb == "SORT":
        if not isinstance(values[0], list) or not values[0]:
            raise RemoteProtocolError("SORT needs a parenthesized list of sort keys")
        keys = tuple(as_text(k).upper() for k in values[0])
        return Sort(keys, criteria, tuple(strings), charset, uid)
    return Thread(as_text(values[0]).upper(), criteria, tuple(strings), charset, uid)


def _text_or_none(item: Value) -> str | None:
    return item.upper() if isinstance(item, str) else None


# --- the connection ---------------------------------------------------------------------------


def _tag_of(line: bytes) -> str:
    """The tag to answer a command that did not parse with: its own when a response can carry
    it, else ``*``."""
    tag = line.partition(b" ")[0][:64]
    return tag.decode("ascii") if valid_tag(tag) else "*"


_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f]")


def _said(exc: ProtocolError) -> str:
    """Why a command was refused, as a response's text may carry it: the message without its
    hint, the control characters of the peer's own bytes quoted in it replaced."""
    return _UNSENDABLE.sub("?", str(exc.args[0]) if exc.args else "")[:500]


class ServerConnection:
    """One IMAP server connection (see the module docstring)."""

    def __init__(
        self,
        *,
        max_line: int = SERVER_MAX_LINE,
        max_literal: int = SERVER_MAX_LITERAL,
    ) -> None:
        self._buffer = ReceiveBuffer(
            max_line=max_line, max_literal=max_literal, announce_literals=True
        )
        self._out = bytearray()
        self._pending: dict[str, Command] = {}
        self._idle_tag: str | None = None
        self._sasl_tag: str | None = None
        self.state = State.NOT_AUTHENTICATED
        self.starttls_pending = False
        self.utf8 = False

    def receive_data(self, data: bytes) -> None:
        if self.starttls_pending:
            raise LocalProtocolError("data before the TLS handshake finished")
        self._buffer.feed(data)

    def set_limits(
        self, *, max_line: int, max_literal: int, max_command_literals: int | None = None
    ) -> None:
        """Change the limits on what the client may send (a server allows more once logged in)."""
        self._buffer.max_line = max_line
        self._buffer.max_literal = max_literal
        self._buffer.max_frame_literals = (
            max_literal if max_command_literals is None else max_command_literals
        )

    def next_event(self) -> ServerEvent | _Sentinel:
        while True:
            try:
                frame = self._buffer.next_frame()
            except LimitExceededError as exc:  # a line that never ends within the limit
                return TooLarge("*", _said(exc), fatal=True)
            if frame is None:
                return NEED_DATA
            if isinstance(frame, LiteralAnnounced):
                if frame.synchronizing:
                    self._out += b"+ Ready for literal data\r\n"
                continue
            if isinstance(frame, LiteralRefused):
                return TooLarge(_tag_of(frame.line), frame.reason, fatal=not frame.synchronizing)
            return self._handle(frame)

    def _handle(self, frame: Frame) -> ServerEvent:
        if self._idle_tag is not None:
            if frame.text.upper() != b"DONE\r\n":
                return BadCommand(self._idle_tag, "expected DONE to end IDLE")
            tag, self._idle_tag = self._idle_tag, None
            return IdleDone(tag)
        if self._sasl_tag is not None:
            line = frame.text[:-2]
            if line == b"*":
                return SaslResponse(self._sasl_tag, None)
            try:
                return SaslResponse(self._sasl_tag, base64.b64decode(line, validate=True))
            except (binascii.Error, ValueError):
                return BadCommand(self._sasl_tag, "SASL response is not base64")
        try:
            tag, command = parse_command(frame, utf8=self.utf8)
        except MailboxNameError as exc:
            return BadCommand(_tag_of(frame.text[:-2]), _said(exc), status="NO")
        except ProtocolError as exc:  # whichever check refused it (a command's own, too)
            return BadCommand(_tag_of(frame.text[:-2]), _said(exc))
        verb = command.verb().split()[-1] if command.verb().startswith("UID ") else command.verb()
        allowed = ALLOWED.get("UID" if command.verb().startswith("UID ") else verb)
        if allowed is not None and self.state not in allowed:
            return BadCommand(
                tag, f"{command.verb()} is not allowed in the {self.state.value} state"
            )
        self._pending[tag] = command
        if isinstance(command, Idle):
            self._idle_tag = tag
        elif isinstance(command, Authenticate):
            self._sasl_tag = tag
        return CommandReceived(tag, command)

    def send(self, response: Response) -> None:
        """Queue a response; a tagged one completes its command and may move the state."""
        self._out += serialize_response(response, utf8=self.utf8)
        if not isinstance(response, TaggedResponse):
            return
        command = self._pending.pop(response.tag, None)
        if response.tag == self._sasl_tag:
            self._sasl_tag = None
        if response.tag == self._idle_tag:
            self._idle_tag = None
        if command is None:
            return
        verb = command.verb().split()[-1]
        if response.status == "OK":
            target = ON_OK.get(verb)
            if target is not None:
                self.state = target
            if isinstance(command, StartTLS):
                # Whatever the client pipelined in plaintext must not be executed after TLS.
                self._buffer = ReceiveBuffer(
                    max_line=self._buffer.max_line,
                    max_literal=self._buffer.max_literal,
                    max_frame_literals=self._buffer.max_frame_literals,
                    announce_literals=True,
                )
                self.starttls_pending = True
            if isinstance(command, Enable) and "UTF8=ACCEPT" in command.capabilities:
                self.utf8 = True
        else:
            target = ON_NO.get(verb)
            if target is not None:
                self.state = target

    def preauthenticate(self) -> None:
        """The server greets with PREAUTH: start authenticated."""
        self.state = State.AUTHENTICATED

    def tls_established(self) -> None:
        self.starttls_pending = False

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data
