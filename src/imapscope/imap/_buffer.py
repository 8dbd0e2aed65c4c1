"""Framing: bytes in, complete IMAP lines (with their literals) out.

Theory of operation
-------------------
An IMAP response or command is one line, except that a line ending in a literal marker
(``{N}``, ``{N+}`` or ``{N-}``, then CRLF) is followed by exactly N bytes of literal data and then
the rest of the line, which may hold further literals. The framer turns a byte stream into
:class:`Frame` objects: ``text`` is the line with every marker kept and the literal data taken
out, and ``literals`` are the data, in order. Parsers walk ``text`` and, at each marker, take the
next literal; they never scan literal bytes for syntax, and ordinary lines need no copying beyond
one slice.

Large literals (over ``stream_threshold``) are written into a buffer of their own as data arrives,
so a 50 MB BODY[] is held once, not once in the receive buffer and again in the event.

Limits are named and checked as data arrives (RFC 9051 sets none; real servers do: Dovecot
rejects command lines over 64 KiB), so a peer cannot make us buffer without bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imapscope.imap._errors import LimitExceededError

#: Longest line (excluding literal data) accepted from a peer. Generous on purpose: a SEARCH of a
#: mailbox with a million messages is one ~7 MB line (bench/parse_micro.py), and a FETCH line with
#: a large ENVELOPE or BODYSTRUCTURE can run to tens of KiB. Servers limit their own input far
#: lower (Dovecot: 64 KiB command lines).
DEFAULT_MAX_LINE = 16 * 1024 * 1024
#: Largest literal accepted from a peer; a BODY[] of a big message is a literal.
DEFAULT_MAX_LITERAL = 256 * 1024 * 1024
#: Most literal bytes one frame (one response or command line with all its literals) may carry: a
#: FETCH of several BODY[] items is one frame, so a per-literal limit alone lets a peer send
#: several maximum-size literals in one response.
DEFAULT_MAX_FRAME_LITERALS = 256 * 1024 * 1024
#: Literals larger than this are collected in a buffer of their own as they arrive.
DEFAULT_STREAM_THRESHOLD = 64 * 1024

_LITERAL_MARKER = re.compile(rb"\{(\d{1,20})([+-]?)\}\r\n\Z")
_COMPACT_AT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete line: its text (literal markers kept, data taken out) and the literals."""

    text: bytes
    literals: tuple[bytes | bytearray, ...] = ()


@dataclass(frozen=True, slots=True)
class LiteralAnnounced:
    """A line ended with a literal marker; returned by :meth:`ReceiveBuffer.next_frame` before the
    literal data when ``announce_literals`` is set (servers use it to send the ``+`` continuation
    for synchronizing literals)."""

    size: int
    synchronizing: bool


@dataclass(frozen=True, slots=True)
class LiteralRefused:
    """A line announced a literal over the limits; returned instead of raising when
    ``announce_literals`` is set (a server must answer the command, not drop the connection).
    ``line`` is the line up to the marker; the buffer has dropped it and, for a synchronizing
    literal (whose data the client will not send), goes on with the next line."""

    size: int
    synchronizing: bool
    line: bytes
    reason: str


class ReceiveBuffer:
    """Accumulates bytes and cuts them into frames; see the module docstring."""

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_frame_literals: int = DEFAULT_MAX_FRAME_LITERALS,
        stream_threshold: int = DEFAULT_STREAM_THRESHOLD,
        announce_literals: bool = False,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_frame_literals = max_frame_literals
        self._frame_literals = 0  # literal bytes announced in the frame being read
        self.stream_threshold = stream_threshold
        self.announce_literals = announce_literals
        self._data = bytearray()
        self._pos = 0
        self._parts: list[bytes] = []
        self._literals: list[bytes | bytearray] = []
        self._line_length = 0
        self._literal_needed: int | None = None
        self._big: bytearray | None = None  # a large literal being collected
        self.eof = False

    def feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
            return
        big = self._big
        if big is not None and self._literal_needed is not None and self._pos == len(self._data):
            # Straight into the large literal: the receive buffer never holds its bytes.
            take = self._literal_needed - len(big)
            big += data[:take]
            data = data[take:]
            if not data:
                return
        self._data += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a returned frame."""
        return len(self._data) - self._pos + sum(len(p) for p in self._parts)

    def next_frame(self) -> Frame | LiteralAnnounced | LiteralRefused | None:
        """The next complete frame, a literal announcement, or None when more data is needed."""
        data = self._data
        while True:
            needed = self._literal_needed
            if needed is not None:
                big = self._big
                if big is not None:
                    take = min(needed - len(big), len(data) - self._pos)
                    big += data[self._pos : self._pos + take]
                    self._pos += take
                    if len(big) < needed:
                        self._compact(force=True)
                        return None
                    self._literals.append(big)
                    self._big = None
                else:
                    end = self._pos + needed
                    if len(data) < end:
                        return None
                    self._literals.append(bytes(data[self._pos : end]))
                    self._pos = end
                self._literal_needed = None
            end = data.find(b"\r\n", self._pos)
            if end < 0:
                if self._line_length + len(data) - self._pos > self.max_line:
                    raise LimitExceededError(
                        f"line longer than {self.max_line} bytes without CRLF",
                        hint="the peer is not speaking IMAP, or raise max_line",
                    )
                return None
            end += 2
            segment = bytes(data[self._pos : end])
            self._pos = end
            self._line_length += len(segment)
            if self._line_length > self.max_line:
                raise LimitExceededError(
                    f"line longer than {self.max_line} bytes", hint="raise max_line if legitimate"
                )
            if segment[-3:-2] == b"}" and (marker := _LITERAL_MARKER.search(segment)):
                size = int(marker.group(1))
                # Checked when announced, before a byte of the data is buffered.
                reason = ""
                if size > self.max_literal:
                    reason = f"literal of {size} bytes exceeds the limit of {self.max_literal}"
                elif self._frame_literals + size > self.max_frame_literals:
                    reason = (f"literals of one line total {self._frame_literals + size} bytes, "
                              f"over the limit of {self.max_frame_literals}")  # fmt: skip
                if reason and self.announce_literals:
                    line = b"".join(self._parts) + segment
                    self._parts, self._literals = [], []
                    self._line_length = self._frame_literals = 0
                    return LiteralRefused(size, marker.group(2) != b"+", line, reason)
                if reason:
                    raise LimitExceededError(reason, hint="raise the buffer's limits to accept it")
                self._frame_literals += size
                self._parts.append(segment)
                self._literal_needed = size
                if size > self.stream_threshold:
                    self._big = bytearray()
                if self.announce_literals:
                    return LiteralAnnounced(size, marker.group(2) != b"+")
                continue
            if self._parts:
                self._parts.append(segment)
                frame = Frame(b"".join(self._parts), tuple(self._literals))
                self._parts = []
                self._literals = []
            else:
                frame = Frame(segment)
            self._line_length = 0
            self._frame_literals = 0
            self._compact()
            return frame

    def _compact(self, *, force: bool = False) -> None:
        if self._pos > _COMPACT_AT or (force and self._pos):
            del self._data[: self._pos]
            self._pos = 0
        elif self._pos == len(self._data) and self._pos:
            self._data.clear()
            self._pos = 0
