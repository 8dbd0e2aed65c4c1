"""Serializing responses (server role): every event type of :mod:`._events` back to bytes.

The inverse of :mod:`._responses`: for every response ``r`` the codec can produce,
``parse_response(frame_of(serialize_response(r))) == r`` (tested as a property). Strings are sent
the cheapest correct way (atom where the grammar allows one, else quoted, else a literal, which a
server sends without waiting). ENVELOPE and BODYSTRUCTURE are built from their typed objects, so
the sandbox never writes IMAP syntax by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.header import Header

from imapscope.imap import _mutf7
from imapscope.imap._errors import LocalProtocolError
from imapscope.imap._events import (
    Acl,
    Address,
    AppendUid,
    BodyPart,
    BodyStructure,
    Bye,
    Capability,
    ContinuationRequest,
    Enabled,
    Envelope,
    ESearch,
    Exists,
    Expunge,
    Fetch,
    Flags,
    Greeting,
    IdResponse,
    ListResponse,
    Multipart,
    MyRights,
    Namespace,
    NamespaceEntry,
    Quota,
    QuotaRoot,
    Recent,
    Response,
    ResponseCode,
    Search,
    StatusResponse,
    TaggedResponse,
    UnknownResponse,
    UntaggedStatus,
    Vanished,
)
from imapscope.imap._values import Literal8, RawValue, Value

_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\[\]]+\Z')  # 8-bit is never an atom
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_QUOTABLE_UTF8 = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\xff]{1,1000}\Z")
_LITERAL_MARKER = re.compile(rb"~?\{(\d+)[+-]?\}\r\n")
# tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051)
_TAG = re.compile(rb'[^\x00-\x20\x7f(){%*"\\+]+\Z')


def valid_tag(tag: bytes) -> bool:
    """RFC 9051 ``tag``: ASCII, not empty, no space, control, ``( ) { % * " \\`` or ``+``."""
    return tag.isascii() and _TAG.match(tag) is not None


def string(data: bytes | bytearray | str | None) -> bytes:
    """nstring: NIL, a quoted string, or a literal."""
    if data is None:
        return b"NIL"
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) < 1024 and _QUOTABLE.match(raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    if b"\0" in raw:  # NUL is only allowed in a literal8 (RFC 3516, BINARY)
        return b"~{%d}\r\n" % len(raw) + raw
    return b"{%d}\r\n" % len(raw) + raw


def literal(data: bytes | bytearray | None) -> bytes:
    """Message data as a literal, as Dovecot sends body sections whatever their content; a
    literal8 (``~{N}``, RFC 3516) for :class:`Literal8` data (BINARY data decoded from a
    transfer encoding) and for data with a NUL, which only a literal8 may carry."""
    if data is None:
        return b"NIL"
    raw = bytes(data)
    eight = isinstance(data, Literal8) or b"\0" in raw
    return (b"~{%d}\r\n" if eight else b"{%d}\r\n") % len(raw) + raw


def astring(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw and raw.upper() != b"NIL" and _ATOM.match(raw) else string(raw)


def mailbox(name: str, utf8: bool = False) -> bytes:
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = name.encode() if utf8 else _mutf7.encode(name)
    if utf8 and not raw.isascii() and _QUOTABLE_UTF8.match(raw):  # RFC 9051 / 6855: quoted
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return astring(raw)


def value(item: Value) -> bytes:
    """A parsed value back to syntax: atoms as atoms, strings as strings, lists as lists."""
    if item is None:
        return b"NIL"
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytes | bytearray):
        return string(item)
    return b"(" + b" ".join(value(v) for v in item) + b")"


def raw_value(raw: RawValue) -> bytes:
    """A raw span with its literals put back in place."""
    if not raw.literals:
        return raw.text
    out, pos = [], 0
    literals = iter(raw.literals)
    for marker in _LITERAL_MARKER.finditer(raw.text):
        out.append(raw.text[pos : marker.end()])
        out.append(bytes(next(literals)))
        pos = marker.end()
    out.append(raw.text[pos:])
    return b"".join(out)


def to_raw(wire: bytes) -> RawValue:
    """Wire syntax (literals inline) to a :class:`RawValue` (literals apart), as the parser
    keeps values. ``{N}`` then CRLF can only be a literal marker: quoted strings hold no CRLF."""
    text, literals, pos = [], [], 0
    while (marker := _LITERAL_MARKER.search(wire, pos)) is not None:
        text.append(wire[pos : marker.end()])
        size = int(marker.group(1))
        literals.append(wire[marker.end() : marker.end() + size])
        pos = marker.end() + size
    text.append(wire[pos:])
    return RawValue(b"".join(text), tuple(literals))


def _list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def _flags(flags: Iterable[str]) -> bytes:
    return _list(f.encode() for f in flags)


def _number(number: int) -> bytes:
    if number < 0:
        raise LocalProtocolError(f"IMAP numbers are never negative: {number}")
    return str(number).encode()


# --- response codes ---------------------------------------------------------------------------


def code(response_code: ResponseCode) -> bytes:
    name = response_code.name.encode()
    argument = response_code.value
    if argument is None:
        return b"[" + name + b"]"
    if isinstance(argument, int):
        return b"[" + name + b" " + _number(argument) + b"]"
    if isinstance(argument, tuple):
        if response_code.name == "CAPABILITY":
            return b"[" + name + b" " + b" ".join(a.encode() for a in argument) + b"]"
        return b"[" + name + b" " + _list(a.encode() for a in argument) + b"]"
    if isinstance(argument, str):
        return b"[" + name + b" " + argument.encode() + b"]"
    if isinstance(argument, AppendUid):
        return b"[APPENDUID %d %s]" % (argument.uidvalidity, argument.uids.encode())
    return b"[COPYUID %d %s %s]" % (
        argument.uidvalidity,
        argument.source.encode(),
        argument.destination.encode(),
    )


#: A line that ends in {N} announces a literal, whatever the grammar says comes there.
_ENDS_LIKE_LITERAL = re.compile(rb"\{\d+[+-]?\}\Z")


def _resp_text(response_code: ResponseCode | None, text: str) -> bytes:
    said = text.encode()
    if b"\r" in said or b"\n" in said:
        raise LocalProtocolError("response text cannot contain CR or LF")
    if _ENDS_LIKE_LITERAL.search(said):
        # Text ending in "{0}" (a mailbox name echoed at the end, say) would make the peer wait
        # for a literal and swallow the next line: a trailing space keeps it text.
        said += b" "
    if response_code is None:
        return said
    return code(response_code) + (b" " + said if said else b"")


# --- envelope and body structure --------------------------------------------------------------


def _address_name(name: str | None) -> bytes:
    if name is None:
        return b"NIL"
    if name.isascii():
        return string(name)
    return string(Header(name, "utf-8").encode(linesep="\r\n", maxlinelen=10_000))


def _addresses(addresses: tuple[Address, ...]) -> bytes:
    if not addresses:
        return b"NIL"
    return (
        b"("
        + b"".join(
            _list(
                [
                    _address_name(a.name),
                    string(a.adl),
                    string(a.mailbox),
                    string(a.host),
                ]
            )
            for a in addresses
        )
        + b")"
    )


def envelope(env: Envelope) -> bytes:
    return _list(
        [
            string(env.date),
            _address_name(env.subject),
            _addresses(env.from_),
            _addresses(env.sender),
            _addresses(env.reply_to),
            _addresses(env.to),
            _addresses(env.cc),
            _addresses(env.bcc),
            string(env.in_reply_to),
            string(env.message_id),
        ]
    )


def _params(params: Mapping[str, str]) -> bytes:
    if not params:
        return b"NIL"
    return _list(b" ".join([string(k), string(v)]) for k, v in params.items())


def _disposition(disp: tuple[str, dict[str, str]] | None) -> bytes:
    if disp is None:
        return b"NIL"
    return _list([string(disp[0]), _params(disp[1])])


def _language(language: tuple[str, ...] | None) -> bytes:
    if language is None:
        return b"NIL"
    return _list(string(lang) for lang in language)


def body(structure: BodyStructure, extensions: bool = True) -> bytes:
    """BODYSTRUCTURE (``extensions``) or BODY (without extension data)."""
    if isinstance(structure, Multipart):
        parts = b"".join(body(p, extensions) for p in structure.parts)
        fields = [parts + b" " + string(structure.subtype)]
        if extensions:
            fields += [
                _params(structure.params),
                _disposition(structure.disposition),
                _language(structure.language),
                string(structure.location),
            ]
            fields += [value(v) for v in structure.extension]
        return _list(fields)
    part: BodyPart = structure
    fields = [
        string(part.type),
        string(part.subtype),
        _params(part.params),
        string(part.id),
        string(part.description),
        string(part.encoding),
        _number(part.size),
    ]
    if part.envelope is not None and part.body is not None:
        fields += [envelope(part.envelope), body(part.body, extensions), _number(part.lines or 0)]
    elif part.lines is not None:
        fields.append(_number(part.lines))
    if extensions:
        fields += [
            string(part.md5),
            _disposition(part.disposition),
            _language(part.language),
            string(part.location),
        ]
        fields += [value(v) for v in part.extension]
    return _list(fields)


# --- FETCH ------------------------------------------------------------------------------------


def fetch(response: Fetch) -> bytes:
    items: list[bytes] = []
    if response.uid is not None:
        items.append(b"UID " + _number(response.uid))
    if response.flags is not None:
        items.append(b"FLAGS " + _flags(response.flags))
    if response.size is not None:
        items.append(b"RFC822.SIZE " + _number(response.size))
    if response.internaldate_raw is not None:
        items.append(b'INTERNALDATE "' + response.internaldate_raw.encode() + b'"')
    if response.modseq is not None:
        items.append(b"MODSEQ (" + _number(response.modseq) + b")")
    for name, raw in response.items.items():
        items.append(name.encode() + b" " + raw_value(raw))
    for name, data in response.sections.items():
        body = "[" in name or name.startswith("RFC822")
        items.append(name.encode() + b" " + (literal(data) if body else string(data)))
    return b"* %d FETCH (" % response.seq + b" ".join(items) + b")\r\n"


# --- everything -------------------------------------------------------------------------------


def _namespace_group(entries: tuple[NamespaceEntry, ...]) -> bytes:
    if not entries:
        return b"NIL"
    return b"(" + b"".join(_list([string(p), string(d)]) for p, d in entries) + b")"


def serialize_response(response: Response, *, utf8: bool = False) -> bytes:
    """One response, CRLF included."""
    if isinstance(response, Fetch):
        return fetch(response)
    if isinstance(response, TaggedResponse):
        if not valid_tag(response.tag.encode()):
            raise LocalProtocolError(f"not a valid tag: {response.tag!r}")
        line = response.tag.encode() + b" " + response.status.encode()
        return line + b" " + _resp_text(response.code, response.text) + b"\r\n"
    if isinstance(response, ContinuationRequest):
        return b"+ " + response.text.encode() + b"\r\n"
    if isinstance(response, Greeting | UntaggedStatus):
        return (
            b"* "
            + response.status.encode()
            + b" "
            + _resp_text(response.code, response.text)
            + b"\r\n"
        )
    if isinstance(response, Bye):
        return b"* BYE " + _resp_text(response.code, response.text) + b"\r\n"
    if isinstance(response, Exists):
        return b"* %d EXISTS\r\n" % response.count
    if isinstance(response, Recent):
        return b"* %d RECENT\r\n" % response.count
    if isinstance(response, Expunge):
        return b"* %d EXPUNGE\r\n" % response.seq
    body_bytes = _untagged_body(response, utf8)
    return b"* " + body_bytes + b"\r\n"


def _untagged_body(response: Response, utf8: bool) -> bytes:
    if isinstance(response, Capability):
        return b"CAPABILITY " + " ".join(response.capabilities).encode()
    if isinstance(response, Enabled):
        return b" ".join([b"ENABLED", *(c.encode() for c in response.capabilities)])
    if isinstance(response, Flags):
        return b"FLAGS " + _flags(response.flags)
    if isinstance(response, ListResponse):
        delimiter = string(response.delimiter)
        name = astring(response.raw_name) if response.raw_name else mailbox(response.name, utf8)
        extended = [value(v) for v in response.extended]
        return b" ".join(
            [response.kind.encode(), _flags(response.attributes), delimiter, name, *extended]
        )
    if isinstance(response, StatusResponse):
        pairs = b" ".join(b"%s %d" % (k.encode(), v) for k, v in response.items.items())
        return b"STATUS " + mailbox(response.mailbox, utf8) + b" (" + pairs + b")"
    if isinstance(response, Search):
        line = b" ".join([b"SEARCH", *(_number(n) for n in response.ids)])
        if response.modseq is not None:
            line += b" (MODSEQ %d)" % response.modseq
        return line
    if isinstance(response, ESearch):
        parts = [b"ESEARCH"]
        if response.tag is not None:
            parts.append(b"(TAG " + string(response.tag) + b")")
        if response.uid:
            parts.append(b"UID")
        for key, item in response.items.items():
            parts += [key.encode(), str(item).encode()]
        return b" ".join(parts)
    if isinstance(response, Namespace):
        groups = (response.personal, response.other_users, response.shared)
        return b"NAMESPACE " + b" ".join(_namespace_group(g) for g in groups)
    if isinstance(response, IdResponse):
        if response.params is None:
            return b"ID NIL"
        return b"ID " + _list(string(k) + b" " + string(v) for k, v in response.params.items())
    if isinstance(response, Quota):
        resources = b" ".join(
            b"%s %d %d" % (r.name.encode(), r.usage, r.limit) for r in response.resources
        )
        return b"QUOTA " + astring(response.root) + b" (" + resources + b")"
    if isinstance(response, QuotaRoot):
        roots = [astring(r) for r in response.roots]
        return b" ".join([b"QUOTAROOT", mailbox(response.mailbox, utf8), *roots])
    if isinstance(response, Acl):
        entries = [astring(i) + b" " + astring(r) for i, r in response.entries]
        return b" ".join([b"ACL", mailbox(response.mailbox, utf8), *entries])
    if isinstance(response, MyRights):
        return b"MYRIGHTS " + mailbox(response.mailbox, utf8) + b" " + astring(response.rights)
    if isinstance(response, Vanished):
        return b"VANISHED " + (b"(EARLIER) " if response.earlier else b"") + response.uids.encode()
    if isinstance(response, UnknownResponse):
        return response.name.encode() + (b" " + response.text if response.text else b"")
    raise LocalProtocolError(f"cannot serialize {type(response).__name__}")
