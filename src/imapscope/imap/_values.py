"""The value grammar shared by responses and commands, and its scanner.

RFC 9051 section 9 (ABNF), the parts every response and command is built from::

    atom            = 1*ATOM-CHAR
    ATOM-CHAR       = <any CHAR except atom-specials>
    atom-specials   = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
    quoted          = DQUOTE *QUOTED-CHAR DQUOTE
    QUOTED-CHAR     = <any TEXT-CHAR except quoted-specials> / "\\" quoted-specials / UTF8-2..4
    literal         = "{" number64 ["+"] "}" CRLF *CHAR8          ; literal8 "~{" for BINARY
    nil             = "NIL"

Parsed values: an atom is a ``str``; a quoted string or literal is ``bytes`` (a large literal may be
a ``bytearray``); NIL is ``None``; a parenthesized list is a ``list``. Keeping atoms and strings
apart matters: ``NIL`` and ``"NIL"`` mean different things.

Responses are parsed leniently where real servers deviate harmlessly: atoms may contain ``*``,
``%`` and ``]`` (flags like ``\\*``, LIST patterns), and may carry a bracketed section with an
optional partial (``BODY[HEADER.FIELDS (FROM)]<0>``), so FETCH item names scan as one atom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imapscope.imap._errors import RemoteProtocolError

Value = None | str | bytes | bytearray | list["Value"]

# One alternative per token; the named group that matched says which.
_TOKEN = re.compile(
    rb"""
     (?P<open>\()
    |(?P<close>\))
    |"(?P<quoted>(?:[^"\\\r\n]|\\["\\])*)"
    |~?\{(?P<literal>\d{1,20})[+-]?\}\r\n
    |(?P<atom>\\\*|\\?(?:\[[^\]\r\n]*\](?:<[\d.]+>)?|[^\x00-\x20\x7f(){"\\])+)
    """,
    re.VERBOSE,
)
QUOTED_ESCAPE = re.compile(rb'\\(["\\])')


def _balanced(depth: int, *, literals: bool = False) -> bytes:
    """A pattern for a parenthesized value nested at most ``depth`` deep, with quoted strings
    (and, with ``literals``, literal markers) as units. Alternatives start with distinct
    characters and are atomic, so the regex never backtracks: one C-level match skips a whole
    ENVELOPE or BODYSTRUCTURE."""
    quoted = rb'"[^"\\\r\n]*+(?:\\["\\][^"\\\r\n]*+)*+"'  # unrolled: runs, not characters
    plain = rb'[^()"{\r\n]++'  # a literal8's "~" too
    if literals:  # a literal's data is not in the frame's text: its marker ends where it was
        quoted += rb"|\{\d{1,20}[+-]?\}\r\n"
    group = rb"\((?>" + quoted + rb"|" + plain + rb")*+\)"
    for _ in range(depth - 1):
        group = rb"\((?>" + quoted + rb"|" + plain + rb"|" + group + rb")*+\)"
    return group


# Deep enough for ENVELOPE (3) and for BODYSTRUCTUREs of a few nested multiparts; deeper values
# take the token-by-token path.
BALANCED_PATTERN = _balanced(8)
_BALANCED = re.compile(_balanced(8, literals=True))

# An ENVELOPE in the shape servers send unless a field needs a literal: NIL and quoted strings,
# address lists of four such fields each, one space apart (RFC 9051 7.5.2). The fields a mail
# index keeps are captured, in this order: date, subject, from, to, message-id. Matched by
# the FETCH parser as it reads the line (no second pass over the value) and by the ENVELOPE
# summary's fast path.
_QUOTED_OR_NIL = rb'(?:NIL|"[^"\\\r\n]*+(?:\\["\\][^"\\\r\n]*+)*+")'
_ADDRESS = rb"\(" + rb" ".join([_QUOTED_OR_NIL] * 4) + rb"\)"
_ADDRESS_LIST = rb"(?:NIL|\((?:" + _ADDRESS + rb")++\))"
_FIELDS = (
    (b"env_date", _QUOTED_OR_NIL),
    (b"env_subject", _QUOTED_OR_NIL),
    (b"env_from", _ADDRESS_LIST),
    (None, _ADDRESS_LIST),  # sender
    (None, _ADDRESS_LIST),  # reply-to
    (b"env_to", _ADDRESS_LIST),
    (None, _ADDRESS_LIST),  # cc
    (None, _ADDRESS_LIST),  # bcc
    (None, _QUOTED_OR_NIL),  # in-reply-to
    (b"env_message_id", _QUOTED_OR_NIL),
)
_CAPTURED = [
    pattern if name is None else b"(?P<%s>%s)" % (name, pattern) for name, pattern in _FIELDS
]
ENVELOPE_PATTERN = rb"\(" + rb" ".join(_CAPTURED) + rb"\)"
#: One address's name, mailbox and host, as matched (quoted or NIL).
ADDRESS_FIELDS = re.compile(rb"\((%s) %s (%s) (%s)\)" % ((_QUOTED_OR_NIL,) * 4))


@dataclass(slots=True)
class Scanner:
    """Walks a frame's text; ``literals`` are taken in order at each literal marker."""

    text: bytes
    pos: int = 0
    literals: tuple[bytes | bytearray, ...] = ()
    literal_index: int = 0

    def error(self, what: str) -> RemoteProtocolError:
        snippet = self.text[max(0, self.pos - 20) : self.pos + 20]
        return RemoteProtocolError(
            f"{what} at offset {self.pos} near {snippet!r}",
            hint="the peer sent bytes that are not valid IMAP syntax",
        )

    def at_end(self) -> bool:
        return self.pos >= len(self.text) or self.text.startswith(b"\r\n", self.pos)

    def skip_space(self) -> bool:
        if self.text[self.pos : self.pos + 1] == b" ":
            self.pos += 1
            return True
        return False

    def expect(self, literal: bytes) -> None:
        if not self.text.startswith(literal, self.pos):
            raise self.error(f"expected {literal!r}")
        self.pos += len(literal)

    def rest(self) -> bytes:
        """Everything up to the line's CRLF (resp-text)."""
        end = self.text.find(b"\r\n", self.pos)
        end = len(self.text) if end < 0 else end
        chunk = self.text[self.pos : end]
        self.pos = end
        return chunk

    def take_literal(self) -> bytes | bytearray:
        try:
            data = self.literals[self.literal_index]
        except IndexError:
            raise self.error("literal marker without literal data") from None
        self.literal_index += 1
        return data

    def value(self) -> Value:
        """One value: atom, string, NIL or (nested) list."""
        stack: list[list[Value]] = []
        text = self.text
        while True:
            match = _TOKEN.match(text, self.pos)
            if match is None:
                raise self.error("expected a value")
            self.pos = match.end()
            kind = match.lastgroup
            item: Value
            if kind == "open":
                stack.append([])
                continue
            if kind == "close":
                if not stack:
                    raise self.error("unbalanced ')'")
                item = stack.pop()
            elif kind == "quoted":
                raw = match.group("quoted")
                item = QUOTED_ESCAPE.sub(rb"\1", raw) if b"\\" in raw else raw
            elif kind == "literal":
                item = self.take_literal()
            else:
                atom = match.group("atom")
                item = None if atom == b"NIL" else atom.decode("utf-8", "replace")
            if not stack:
                return item
            stack[-1].append(item)
            # Inside a list: a space separates items, ")" closes. RFC 2342's NAMESPACE grammar
            # puts descriptors back to back with no space: "(...)(...)".
            following = text[self.pos : self.pos + 1]
            if following == b" ":
                self.pos += 1
            elif following not in (b")", b"("):
                raise self.error("expected SP or ')' in a list")

    def values_to_end(self) -> list[Value]:
        """Space-separated values up to the end of the line."""
        found: list[Value] = []
        while not self.at_end():
            found.append(self.value())
            if not self.skip_space():
                break
        if not self.at_end():
            raise self.error("expected end of line")
        return found

    def span(self) -> RawValue:
        """Skip one value without building it; return it as a :class:`RawValue`."""
        start, first_literal = self.pos, self.literal_index
        text = self.text
        if text[start : start + 1] == b"(" and (fast := _BALANCED.match(text, start)):
            self.pos = fast.end()
            value = text[start : self.pos]
            # Each CRLF in a frame's text ends a literal's marker: the value holds as many of
            # the frame's literals as it has CRLFs.
            taken = value.count(b"\r\n")
            if taken:
                self.literal_index += taken
                return RawValue(value, self.literals[first_literal : self.literal_index])
            return RawValue(value)
        depth = 0
        while True:
            match = _TOKEN.match(text, self.pos)
            if match is None:
                raise self.error("expected a value")
            self.pos = match.end()
            kind = match.lastgroup
            if kind == "open":
                depth += 1
            elif kind == "close":
                depth -= 1
            elif kind == "literal":
                self.literal_index += 1
            if depth <= 0:
                if depth < 0:
                    raise self.error("unbalanced ')'")
                return RawValue(
                    text[start : self.pos], self.literals[first_literal : self.literal_index]
                )
            if text[self.pos : self.pos + 1] == b" ":
                self.pos += 1


class Literal8(bytes):
    """Bytes a server sends as a literal8 (``~{N}``, RFC 3516): BINARY data it decoded."""


@dataclass(frozen=True, slots=True)
class RawValue:
    """A value kept as its bytes (and literals), parsed only when :meth:`value` is called."""

    text: bytes
    literals: tuple[bytes | bytearray, ...] = ()

    def value(self) -> Value:
        scanner = Scanner(self.text, 0, self.literals)
        return scanner.value()


@dataclass(frozen=True, slots=True, eq=False)
class MatchedEnvelope(RawValue):
    """An ENVELOPE the FETCH parser matched in its common shape (:data:`ENVELOPE_PATTERN`):
    the raw value, and the fields the pattern captures as they were matched (quoted or NIL),
    so the summary need not read the value again."""

    fields: tuple[bytes, ...] = ()


def as_str(value: Value) -> str | None:
    """A string value (atom or string) as text; NIL as None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    raise RemoteProtocolError(f"expected a string, got a list {value!r}")


def as_text(value: Value) -> str:
    """A string value that must be there (not NIL)."""
    text = as_str(value)
    if text is None:
        raise RemoteProtocolError("expected a string, got NIL")
    return text


def as_int(value: Value) -> int:
    text = as_str(value)
    if text is None or not text.isdigit():
        raise RemoteProtocolError(f"expected a number, got {value!r}")
    return int(text)


def as_list(value: Value) -> list[Value]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RemoteProtocolError(f"expected a parenthesized list, got {value!r}")
    return value
