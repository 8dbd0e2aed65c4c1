"""Typed commands and their serialization (client role).

RFC 9051 section 9::

    command         = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
    astring         = 1*ASTRING-CHAR / string
    string          = quoted / literal
    mailbox         = "INBOX" / astring

Arguments are encoded the cheapest way that is correct: an atom when every character may stand in
one, a quoted string when it only lacks CR/LF/NUL, a literal otherwise (or when forced, as for
message bodies). Literals are synchronizing (``{N}``: wait for ``+`` before the data) unless the
server advertised LITERAL+ (any size) or LITERAL- (up to 4096 bytes), when ``{N+}`` goes at once.

:func:`encode` returns the command as *segments*: the bytes to send, and where a synchronizing
literal must wait for the server's continuation request before the next segment.

Every argument that reaches the wire is checked here: CR, LF and NUL can never be smuggled into a
command line through a mailbox name, a flag or a search string (RFC 9051 section 11.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal

from imapscope.imap import _mutf7
from imapscope.imap._errors import LocalProtocolError
from imapscope.imap._sequence import validate

# ASTRING-CHAR = ATOM-CHAR / resp-specials; ATOM-CHAR excludes ( ) { SP CTL % * " \ ]
# "[" is an ATOM-CHAR, but strings holding one are quoted anyway: servers' own parsers treat it
# as the start of a section.
_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\[]+\Z')  # atoms are 7-bit, always
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+\Z')
_FLAG = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+\Z')
_UNQUOTABLE = re.compile(rb"[\x00\r\n]")
LITERAL_MINUS_MAX = 4096


class Arg:
    """An argument ready for the wire."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AtomArg(Arg):
    text: bytes


@dataclass(frozen=True, slots=True)
class StringArg(Arg):
    """astring: atom, quoted or literal, whichever fits; ``force_literal`` for message data."""

    data: bytes = field(repr=False)
    force_literal: bool = False
    allow_atom: bool = True
    binary: bool = False  # literal8 (~{N}) for APPEND of binary data
    secret: bool = False  # shown as <redacted> in the log copy of the command


@dataclass(frozen=True, slots=True)
class ListArg(Arg):
    items: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class RawArg(Arg):
    """Pre-built syntax (e.g. SEARCH criteria, FETCH item lists), checked for CR/LF/NUL."""

    text: bytes
    secret: bool = False


def atom(text: str | bytes) -> AtomArg:
    data = text.encode() if isinstance(text, str) else text
    if not _ATOM.match(data):
        raise LocalProtocolError(f"not an IMAP atom: {data!r}")
    return AtomArg(data)


def flag(text: str) -> AtomArg:
    data = text.encode()
    if not _FLAG.match(data):
        raise LocalProtocolError(f"not a flag or keyword: {text!r}")
    return AtomArg(data)


def mailbox(name: str, *, utf8: bool = False) -> StringArg:
    """A mailbox name: modified UTF-7 unless UTF8=ACCEPT is enabled; INBOX is case-insensitive."""
    if name.upper() == "INBOX":
        return StringArg(b"INBOX")
    return StringArg(name.encode() if utf8 else _mutf7.encode(name))


def raw(text: str | bytes, *, secret: bool = False) -> RawArg:
    data = text.encode() if isinstance(text, str) else text
    if _UNQUOTABLE.search(data):
        shown = "a secret" if secret else repr(data)
        raise LocalProtocolError(
            f"CR, LF or NUL in {shown}", hint="pass such data as a string argument (a literal)"
        )
    return RawArg(data, secret)


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


LiteralMode = Literal["sync", "plus", "minus"]


REDACTED = b"<redacted>"


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes to send; ``wait`` means: then wait for ``+`` before the next segment. ``log`` is the
    same segment with secrets replaced by ``<redacted>``: the only form any log may show."""

    data: bytes = field(repr=False)
    wait: bool = False
    log: bytes = b""


class _Writer:
    """Builds the wire bytes and their redacted log copy side by side."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.log: list[bytes] = []
        self.segments: list[Segment] = []

    def add(self, data: bytes, log: bytes | None = None) -> None:
        self.parts.append(data)
        self.log.append(data if log is None else log)

    def cut(self, *, wait: bool) -> None:
        self.segments.append(Segment(b"".join(self.parts), wait, b"".join(self.log)))
        self.parts.clear()
        self.log.clear()


def _emit(arg: Arg, out: _Writer, literal_mode: LiteralMode) -> None:
    if isinstance(arg, AtomArg):
        out.add(arg.text)
    elif isinstance(arg, RawArg):
        out.add(arg.text, REDACTED if arg.secret else None)
    elif isinstance(arg, StringArg):
        data = arg.data
        shown = REDACTED if arg.secret else None
        # A string spelled NIL must be quoted: the bare atom NIL means "no value".
        if (
            not arg.force_literal
            and arg.allow_atom
            and _ASTRING.match(data)
            and data.upper() != b"NIL"
        ):
            out.add(data, shown)
        elif (
            not arg.force_literal
            and data.isascii()  # quoted strings are 7-bit in IMAP4rev1; 8-bit needs a literal
            and not _UNQUOTABLE.search(data)
            and len(data) < 1024
        ):
            out.add(_quote(data), shown)
        else:
            plus = literal_mode == "plus" or (
                literal_mode == "minus" and len(data) <= LITERAL_MINUS_MAX
            )
            prefix = b"~" if arg.binary else b""
            marker = prefix + b"{%d%s}\r\n" % (len(data), b"+" if plus else b"")
            # The log shows the marker (a secret's length is no secret worth a broken transcript).
            out.add(marker)
            if not plus:
                out.cut(wait=True)
            out.add(data, shown if shown is not None else b"<%d bytes>" % len(data))
    elif isinstance(arg, ListArg):
        out.add(b"(")
        for index, item in enumerate(arg.items):
            if index:
                out.add(b" ")
            _emit(item, out, literal_mode)
        out.add(b")")
    else:  # pragma: no cover - every Arg subclass is handled above
        raise TypeError(arg)


def encode(
    tag: str, command: Command, *, literal_mode: LiteralMode = "sync", utf8: bool = False
) -> list[Segment]:
    """Serialize ``command`` with ``tag`` into segments (see the module docstring)."""
    out = _Writer()
    out.add(tag.encode("ascii") + b" " + command.verb().encode("ascii"))
    for arg in command.args(utf8=utf8):
        out.add(b" ")
        _emit(arg, out, literal_mode)
    out.add(b"\r\n")
    out.cut(wait=False)
    return out.segments


# --- the commands -----------------------------------------------------------------------------


class Command:
    """Base of all commands. ``name`` is the IMAP verb; ``uid`` commands get the UID prefix."""

    name: ClassVar[str]
    uid_capable: ClassVar[bool] = False

    def verb(self) -> str:
        if self.uid_capable and getattr(self, "uid", False):
            return f"UID {self.name}"
        return self.name

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return []


@dataclass(frozen=True, slots=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Login(Command):
    """LOGIN. ``repr`` never shows the password."""

    name: ClassVar[str] = "LOGIN"
    user: str
    password: str = field(repr=False)

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [StringArg(self.user.encode()), StringArg(self.password.encode(), secret=True)]


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """AUTHENTICATE with an optional SASL-IR initial response (already base64, or "=")."""

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: str | None = field(default=None, repr=False)

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = [atom(self.mechanism)]
        if self.initial_response is not None:
            found.append(raw(self.initial_response, secret=True))
        return found


@dataclass(frozen=True, slots=True)
class Enable(Command):
    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [atom(c) for c in self.capabilities]


@dataclass(frozen=True, slots=True)
class Id(Command):
    name: ClassVar[str] = "ID"
    params: dict[str, str] | None = None

    def args(self, *, utf8: bool = False) -> list[Arg]:
        if self.params is None:
            return [AtomArg(b"NIL")]
        items: list[Arg] = []
        for key, value in self.params.items():
            items += [
                StringArg(key.encode(), allow_atom=False),
                StringArg(value.encode(), allow_atom=False),
            ]
        return [ListArg(tuple(items))]


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Select(Command):
    """SELECT, or EXAMINE with ``readonly``. CONDSTORE and QRESYNC parameters are optional."""

    name: ClassVar[str] = "SELECT"
    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: tuple[int, int] | None = None  # (uidvalidity, modseq)

    def verb(self) -> str:
        return "EXAMINE" if self.readonly else "SELECT"

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = [mailbox(self.mailbox, utf8=utf8)]
        params: list[Arg] = []
        if self.condstore:
            params.append(AtomArg(b"CONDSTORE"))
        if self.qresync is not None:
            validity, modseq = self.qresync
            params += [AtomArg(b"QRESYNC"), raw(f"({validity} {modseq})")]
        if params:
            found.append(ListArg(tuple(params)))
        return found


@dataclass(frozen=True, slots=True)
class MailboxCommand(Command):
    """A command whose only argument is a mailbox name."""

    mailbox: str

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [mailbox(self.mailbox, utf8=utf8)]


@dataclass(frozen=True, slots=True)
class Create(MailboxCommand):
    name: ClassVar[str] = "CREATE"
    special_use: str | None = None  # RFC 6154 CREATE-SPECIAL-USE, e.g. "\\Archive"

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found = [mailbox(self.mailbox, utf8=utf8)]
        if self.special_use:
            return [*found, raw(b"(USE (%s))" % flag(self.special_use).text)]
        return list(found)


@dataclass(frozen=True, slots=True)
class Delete(MailboxCommand):
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True, slots=True)
class Subscribe(MailboxCommand):
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(MailboxCommand):
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(MailboxCommand):
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    """GETQUOTA of a quota root (RFC 9208), which is not a mailbox name."""

    name: ClassVar[str] = "GETQUOTA"
    root: str

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [StringArg(self.root.encode())]


@dataclass(frozen=True, slots=True)
class GetAcl(MailboxCommand):
    name: ClassVar[str] = "GETACL"


@dataclass(frozen=True, slots=True)
class MyRights(MailboxCommand):
    name: ClassVar[str] = "MYRIGHTS"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    name: ClassVar[str] = "RENAME"
    old: str
    new: str

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [mailbox(self.old, utf8=utf8), mailbox(self.new, utf8=utf8)]


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with optional RFC 5258 selection and return options (e.g. ``("SPECIAL-USE",)``)."""

    name: ClassVar[str] = "LIST"
    reference: str = ""
    pattern: str = "*"
    select: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    lsub: bool = False
    more_patterns: tuple[str, ...] = ()  # LIST-EXTENDED: several patterns at once

    def verb(self) -> str:
        return "LSUB" if self.lsub else "LIST"

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.pattern, *self.more_patterns)

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = []
        if self.select:
            found.append(ListArg(tuple(atom(s) for s in self.select)))
        ref = _mutf7.encode(self.reference) if not utf8 else self.reference.encode()
        encoded = [_mutf7.encode(p) if not utf8 else p.encode() for p in self.patterns]
        patterns = [_list_pattern(p) for p in encoded]
        found += [StringArg(ref, allow_atom=bool(ref))]
        found.append(ListArg(tuple(patterns)) if len(patterns) > 1 else patterns[0])
        if self.returns:
            found += [AtomArg(b"RETURN"), ListArg(tuple(raw(r) for r in self.returns))]
        return found


def _list_pattern(pattern: bytes) -> Arg:
    # list-mailbox = 1*list-char / string; list-char adds the wildcards % and * to ATOM-CHAR.
    if pattern and re.fullmatch(rb'[^\x00-\x20\x7f(){"\\]+', pattern):
        return AtomArg(pattern)
    return StringArg(pattern, allow_atom=False)


@dataclass(frozen=True, slots=True)
class Status(Command):
    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...] = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [mailbox(self.mailbox, utf8=utf8), ListArg(tuple(atom(i) for i in self.items))]


def format_internaldate(when: datetime) -> str:
    if when.tzinfo is None:
        raise LocalProtocolError("APPEND date needs a timezone", hint="use an aware datetime")
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return when.strftime("%d-%b-%Y %H:%M:%S ") + f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


#: One CATENATE part (RFC 4469): ("TEXT", literal bytes) or ("URL", an IMAP URL).
CatenatePart = tuple[Literal["TEXT", "URL"], bytes]


@dataclass(frozen=True, slots=True)
class Append(Command):
    """APPEND of one message, or of several at once (MULTIAPPEND, RFC 3502: ``more`` holds the
    others, their ``mailbox`` ignored). A message may be put together from parts with CATENATE
    (RFC 4469): ``catenate`` then replaces ``message``."""

    name: ClassVar[str] = "APPEND"
    mailbox: str
    message: bytes = field(repr=False)
    flags: tuple[str, ...] = ()
    date: datetime | None = None
    catenate: tuple[CatenatePart, ...] | None = field(default=None, repr=False)
    more: tuple[Append, ...] = field(default=(), repr=False)

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = [mailbox(self.mailbox, utf8=utf8)]
        for one in (self, *self.more):
            found += one.message_args()
        return found

    def message_args(self) -> list[Arg]:
        found: list[Arg] = []
        if self.flags:
            found.append(ListArg(tuple(flag(f) for f in self.flags)))
        if self.date is not None:
            found.append(RawArg(_quote(format_internaldate(self.date).encode())))
        if self.catenate is not None:
            parts: list[Arg] = []
            for kind, data in self.catenate:
                parts.append(AtomArg(kind.encode()))
                literal = kind == "TEXT"
                parts.append(StringArg(data, force_literal=literal, binary=b"\x00" in data))
            found += [AtomArg(b"CATENATE"), ListArg(tuple(parts))]
            return found
        found.append(StringArg(self.message, force_literal=True, binary=b"\x00" in self.message))
        return found


@dataclass(frozen=True, slots=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE (RFC 4315) when ``uids`` is given."""

    name: ClassVar[str] = "EXPUNGE"
    uids: str | None = None

    def verb(self) -> str:
        return "EXPUNGE" if self.uids is None else "UID EXPUNGE"

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [] if self.uids is None else [raw(validate(self.uids))]


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH with criteria as IMAP syntax (e.g. ``"UNSEEN SINCE 1-Jan-2024"``); strings in the
    criteria that need quoting or literals go in ``strings`` and replace ``?`` placeholders."""

    name: ClassVar[str] = "SEARCH"
    uid_capable: ClassVar[bool] = True
    criteria: str = "ALL"
    strings: tuple[str, ...] = ()
    charset: str | None = None
    returns: tuple[str, ...] | None = None  # ESEARCH RETURN options
    uid: bool = False

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = []
        if self.returns is not None:
            found += [AtomArg(b"RETURN"), ListArg(tuple(atom(r) for r in self.returns))]
        if self.charset:
            found += [AtomArg(b"CHARSET"), atom(self.charset)]
        return found + _criteria(self.criteria, self.strings)


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT (RFC 5256): ``keys`` like ``("REVERSE", "DATE")``, then search criteria as for
    :class:`Search`."""

    name: ClassVar[str] = "SORT"
    uid_capable: ClassVar[bool] = True
    keys: tuple[str, ...] = ("ARRIVAL",)
    criteria: str = "ALL"
    strings: tuple[str, ...] = ()
    charset: str = "UTF-8"
    uid: bool = False

    def args(self, *, utf8: bool = False) -> list[Arg]:
        keys = ListArg(tuple(atom(k) for k in self.keys))
        return [keys, atom(self.charset), *_criteria(self.criteria, self.strings)]


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD (RFC 5256): ``algorithm`` REFERENCES or ORDEREDSUBJECT, then search criteria."""

    name: ClassVar[str] = "THREAD"
    uid_capable: ClassVar[bool] = True
    algorithm: str = "REFERENCES"
    criteria: str = "ALL"
    strings: tuple[str, ...] = ()
    charset: str = "UTF-8"
    uid: bool = False

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [atom(self.algorithm), atom(self.charset), *_criteria(self.criteria, self.strings)]


_CRITERIA_TOKEN = re.compile(r"\(|\)|\?|[^\s()?]+")


def _criteria(criteria: str, strings: tuple[str, ...]) -> list[Arg]:
    """SEARCH criteria text to arguments: parentheses become lists (so no stray spaces appear
    inside them) and each ``?`` takes the next string, quoted or sent as a literal."""
    if _UNQUOTABLE.search(criteria.encode()):
        raise LocalProtocolError(
            f"CR, LF or NUL in SEARCH criteria {criteria!r}", hint="put text in the strings"
        )
    stack: list[list[Arg]] = [[]]
    remaining = list(strings)
    for piece in _CRITERIA_TOKEN.findall(criteria):
        if piece == "(":
            stack.append([])
        elif piece == ")":
            if len(stack) == 1:
                raise LocalProtocolError(f"unbalanced ')' in SEARCH criteria {criteria!r}")
            group = stack.pop()
            stack[-1].append(ListArg(tuple(group)))
        elif piece == "?":
            if not remaining:
                raise LocalProtocolError("SEARCH: one string per '?' placeholder in the criteria")
            stack[-1].append(StringArg(remaining.pop(0).encode(), allow_atom=False))
        else:
            stack[-1].append(raw(piece))
    if len(stack) != 1:
        raise LocalProtocolError(f"unbalanced '(' in SEARCH criteria {criteria!r}")
    if remaining:
        raise LocalProtocolError("SEARCH: one string per '?' placeholder in the criteria")
    return stack[0]


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH items (e.g. ``"(UID FLAGS ENVELOPE)"`` or a macro like ``"FAST"``)."""

    name: ClassVar[str] = "FETCH"
    uid_capable: ClassVar[bool] = True
    messages: str
    items: str = "(UID FLAGS)"
    uid: bool = False
    changed_since: int | None = None
    vanished: bool = False

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = [raw(validate(self.messages)), raw(self.items)]
        modifiers = []
        if self.changed_since is not None:
            modifiers.append(f"CHANGEDSINCE {self.changed_since}")
        if self.vanished:
            modifiers.append("VANISHED")
        if modifiers:
            found.append(raw("(" + " ".join(modifiers) + ")"))
        return found


@dataclass(frozen=True, slots=True)
class Store(Command):
    name: ClassVar[str] = "STORE"
    uid_capable: ClassVar[bool] = True
    messages: str
    flags: tuple[str, ...]
    action: Literal["+", "-", ""] = "+"
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None

    def args(self, *, utf8: bool = False) -> list[Arg]:
        found: list[Arg] = [raw(validate(self.messages))]
        if self.unchanged_since is not None:
            found.append(raw(f"(UNCHANGEDSINCE {self.unchanged_since})"))
        item = f"{self.action}FLAGS{'.SILENT' if self.silent else ''}"
        found += [atom(item), ListArg(tuple(flag(f) for f in self.flags))]
        return found


@dataclass(frozen=True, slots=True)
class Copy(Command):
    name: ClassVar[str] = "COPY"
    uid_capable: ClassVar[bool] = True
    messages: str
    mailbox: str
    uid: bool = False

    def args(self, *, utf8: bool = False) -> list[Arg]:
        return [raw(validate(self.messages)), mailbox(self.mailbox, utf8=utf8)]


@dataclass(frozen=True, slots=True)
class Move(Copy):
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """IDLE; end it with :meth:`ClientConnection.done` (the untagged DONE line)."""

    name: ClassVar[str] = "IDLE"
