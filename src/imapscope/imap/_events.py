"""Typed events: what the codec hands out for each response (client role).

Every event is a frozen, slotted dataclass. Tagged, untagged and continuation responses are
distinct types. Values the client rarely needs in full (ENVELOPE, BODYSTRUCTURE, INTERNALDATE) are
kept as their raw span and decoded on access, which is what keeps a 100,000-message FETCH at the
server's own speed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.errors import MessageError
from email.header import decode_header, make_header
from typing import Any, Literal

from imapscope.imap._errors import RemoteProtocolError
from imapscope.imap._values import RawValue, Value

Status = Literal["OK", "NO", "BAD"]
GreetingStatus = Literal["OK", "PREAUTH", "BYE"]


# --- response codes (RFC 3501 7.1, RFC 9051 7.1, RFC 5530, RFC 4315, RFC 7162) ---------------


@dataclass(frozen=True, slots=True)
class AppendUid:
    uidvalidity: int
    uids: str  # a uid-set, e.g. "12" or "12:14" (MULTIAPPEND)


@dataclass(frozen=True, slots=True)
class CopyUid:
    uidvalidity: int
    source: str
    destination: str


CodeValue = None | int | str | tuple[str, ...] | AppendUid | CopyUid


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """A bracketed response code. ``value`` depends on ``name`` (see ``CODE_KINDS``); codes we do
    not know keep their argument text as a ``str`` (or None)."""

    name: str
    value: CodeValue = None


# --- completion, status and continuation ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting:
    status: GreetingStatus
    code: ResponseCode | None
    text: str


@dataclass(frozen=True, slots=True)
class TaggedResponse:
    tag: str
    status: Status
    code: ResponseCode | None
    text: str


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """``+ text``: the server is ready for a literal, or sends a SASL challenge (``text`` as is;
    :attr:`data` base64-decodes it for SASL)."""

    text: str

    @property
    def data(self) -> bytes:
        try:
            return base64.b64decode(self.text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RemoteProtocolError(
                f"continuation is not base64: {self.text!r}",
                hint="the server's SASL challenge is malformed",
            ) from exc


@dataclass(frozen=True, slots=True)
class UntaggedStatus:
    """``* OK|NO|BAD [code] text``."""

    status: Status
    code: ResponseCode | None
    text: str


@dataclass(frozen=True, slots=True)
class Bye:
    code: ResponseCode | None
    text: str


# --- untagged data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flags:
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    count: int


@dataclass(frozen=True, slots=True)
class Recent:
    count: int


@dataclass(frozen=True, slots=True)
class Expunge:
    seq: int


@dataclass(frozen=True, slots=True)
class Vanished:
    uids: str  # a uid-set
    earlier: bool


@dataclass(frozen=True, slots=True)
class ListResponse:
    """LIST or LSUB (``kind``). ``name`` is decoded from modified UTF-7 (or UTF-8 once
    UTF8=ACCEPT is enabled); ``raw_name`` is what the server sent, for sending back."""

    kind: Literal["LIST", "LSUB"]
    attributes: tuple[str, ...]
    delimiter: str | None
    name: str
    raw_name: bytes
    extended: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusResponse:
    mailbox: str
    items: dict[str, int]


@dataclass(frozen=True, slots=True)
class Search:
    ids: tuple[int, ...]
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class ESearch:
    tag: str | None
    uid: bool
    items: dict[str, str | int]


NamespaceEntry = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Namespace:
    personal: tuple[NamespaceEntry, ...]
    other_users: tuple[NamespaceEntry, ...]
    shared: tuple[NamespaceEntry, ...]


@dataclass(frozen=True, slots=True)
class Enabled:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdResponse:
    params: dict[str, str | None] | None


@dataclass(frozen=True, slots=True)
class QuotaResource:
    name: str
    usage: int
    limit: int


@dataclass(frozen=True, slots=True)
class Quota:
    root: str
    resources: tuple[QuotaResource, ...]


@dataclass(frozen=True, slots=True)
class QuotaRoot:
    mailbox: str
    roots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Acl:
    mailbox: str
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MyRights:
    mailbox: str
    rights: str


@dataclass(frozen=True, slots=True)
class UnknownResponse:
    """An untagged response we do not know: kept, never fatal."""

    name: str
    text: bytes


# --- FETCH ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    name: str | None  # decoded from RFC 2047
    adl: str | None
    mailbox: str | None
    host: str | None

    @property
    def email(self) -> str | None:
        if self.mailbox is None:
            return None
        return self.mailbox if self.host is None else f"{self.mailbox}@{self.host}"


@dataclass(frozen=True, slots=True)
class Envelope:
    date: str | None
    subject: str | None  # decoded from RFC 2047
    from_: tuple[Address, ...]
    sender: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    in_reply_to: str | None
    message_id: str | None


@dataclass(frozen=True, slots=True)
class BodyPart:
    """A non-multipart body part. ``body`` is set for message/rfc822 (its own structure)."""

    type: str
    subtype: str
    params: dict[str, str]
    id: str | None
    description: str | None
    encoding: str | None
    size: int
    lines: int | None = None
    envelope: Envelope | None = None
    body: BodyStructure | None = None
    md5: str | None = None
    disposition: tuple[str, dict[str, str]] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    extension: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class Multipart:
    subtype: str
    parts: tuple[BodyStructure, ...]
    params: dict[str, str] = field(default_factory=dict)
    disposition: tuple[str, dict[str, str]] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    extension: tuple[Value, ...] = ()


BodyStructure = BodyPart | Multipart

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    )
}


def parse_internaldate(text: str) -> datetime:
    """``"01-Jan-2024 09:02:00 +0000"`` (day may be space-padded) to an aware datetime."""
    # Servers send exactly that shape: its fields read by position (a first sync reads one per
    # message), the time zones kept; anything else, and any error, the general reading.
    if (len(text) == 26 and text[2] == "-" and text[6] == "-" and text[11] == " "
            and text[14] == ":" and text[17] == ":" and text[20] == " "):  # fmt: skip
        try:
            return datetime(
                int(text[7:11]), _MONTHS[text[3:6]], int(text[:2]), int(text[12:14]),
                int(text[15:17]), int(text[18:20]), tzinfo=_zone(text[21:]),
            )  # fmt: skip
        except (ValueError, KeyError, IndexError):
            pass
    try:
        date, clock, zone = text.strip().split(" ")
        day, month, year = date.split("-")
        hour, minute, second = clock.split(":")
        return datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
            tzinfo=_zone(zone),
        )  # fmt: skip
    except (ValueError, KeyError, IndexError) as exc:
        raise RemoteProtocolError(
            f"bad INTERNALDATE {text!r}", hint="expected dd-Mon-yyyy hh:mm:ss +zzzz"
        ) from exc


@functools.lru_cache(maxsize=64)
def _zone(zone: str) -> tzinfo:
    """``+0100`` as a time zone (a mailbox holds a few)."""
    sign = -1 if zone[0] == "-" else 1
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
    return UTC if not offset else timezone(offset)


# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?=" (charset may carry
# an RFC 2231 "*language" suffix).
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")


def decode_words(value: bytes | None) -> str | None:
    """Decode RFC 2047 encoded words (as in ENVELOPE subjects and names); None stays None.

    A first sync decodes one per message, so this is a direct decoder (one regex pass, the
    bytes decoded per word) rather than :mod:`email.header`'s general machinery, which it falls
    back to for anything it does not handle (an unknown charset)."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    previous_word = False
    try:
        for match in _ENCODED_WORD.finditer(text):
            gap = text[pos : match.start()]
            if not (previous_word and not gap.strip()):  # whitespace between words is dropped
                out.append(gap)
            charset, encoding, payload = match.groups()
            if encoding in "Bb":
                data = base64.b64decode(payload + "=" * (-len(payload) % 4))
            else:
                data = binascii.a2b_qp(payload.encode("ascii"), header=True)
            out.append(data.decode(charset, "replace"))
            pos = match.end()
            previous_word = True
        out.append(text[pos:])
    except (ValueError, LookupError, binascii.Error, UnicodeError):
        try:
            return str(make_header(decode_header(text)))
        except (ValueError, LookupError, UnicodeDecodeError, MessageError):
            # A word it cannot decode either (base64 cut short, a charset name with 8-bit
            # bytes: email.errors' HeaderParseError, CharsetError): the text as it came.
            return text
    return "".join(out)


@functools.cache
def _summary_of() -> Callable[[RawValue], dict[str, Any]]:
    """:func:`~imapscope.imap._structure.envelope_summary_of`, imported on first use (that
    module builds these event types) and then kept: a first sync asks once per message."""
    from imapscope.imap._structure import envelope_summary_of  # noqa: PLC0415

    return envelope_summary_of


@dataclass(frozen=True, slots=True)
class Fetch:
    """``* seq FETCH (...)``. The common items are plain fields; ENVELOPE, BODYSTRUCTURE/BODY and
    anything else stay raw in ``items`` until asked for through the properties or :meth:`item`.

    Body sections (``BODY[HEADER]<0>``, ``BINARY[1]``, ``RFC822``...) are in ``sections`` under
    the name the server used, as bytes (or None for NIL)."""

    seq: int
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    size: int | None = None
    internaldate_raw: str | None = None
    modseq: int | None = None
    sections: Mapping[str, bytes | bytearray | None] = field(default_factory=dict)
    items: Mapping[str, RawValue] = field(default_factory=dict)

    @property
    def internaldate(self) -> datetime | None:
        raw = self.internaldate_raw
        return None if raw is None else parse_internaldate(raw)

    @property
    def envelope(self) -> Envelope | None:
        # _structure builds these event types, so it is imported on use, not at import time.
        from imapscope.imap._structure import envelope_from_value  # noqa: PLC0415

        raw = self.items.get("ENVELOPE")
        return None if raw is None else envelope_from_value(raw.value())

    def envelope_summary(self) -> dict[str, Any] | None:
        """The ENVELOPE's date, decoded subject, from/to addresses and message id, cheaply
        (no display names decoded); see :func:`~imapscope.imap._structure.envelope_summary`."""
        raw = self.items.get("ENVELOPE")
        return None if raw is None else _summary_of()(raw)

    @property
    def bodystructure(self) -> BodyStructure | None:
        from imapscope.imap._structure import body_from_value  # noqa: PLC0415

        raw = self.items.get("BODYSTRUCTURE") or self.items.get("BODY")
        return None if raw is None else body_from_value(raw.value())

    def item(self, name: str) -> Value:
        """Any other item (EMAILID, THREADID, X-GM-LABELS, PREVIEW...) as a parsed value."""
        return self.items[name.upper()].value()


UntaggedData = (
    Capability
    | Flags
    | Exists
    | Recent
    | Expunge
    | Vanished
    | Fetch
    | ListResponse
    | StatusResponse
    | Search
    | ESearch
    | Namespace
    | Enabled
    | IdResponse
    | Quota
    | QuotaRoot
    | Acl
    | MyRights
    | UnknownResponse
)
Response = Greeting | TaggedResponse | ContinuationRequest | UntaggedStatus | Bye | UntaggedData
