"""ENVELOPE and BODYSTRUCTURE: from parsed values to typed objects (RFC 9051 7.5.2, 9)::

    envelope   = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to
                 SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
    address    = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
    body       = "(" (body-type-1part / body-type-mpart) ")"
    body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]

Servers differ in how much extension data they send; everything past the basic fields is
optional here, and extension data we do not know is kept in ``extension``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from imapscope.imap._errors import RemoteProtocolError
from imapscope.imap._events import (
    Address,
    BodyPart,
    BodyStructure,
    Envelope,
    Multipart,
    decode_words,
)
from imapscope.imap._values import (
    ADDRESS_FIELDS,
    ENVELOPE_PATTERN,
    QUOTED_ESCAPE,
    MatchedEnvelope,
    RawValue,
    Value,
    as_int,
    as_list,
    as_str,
)


def _bytes(value: Value) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise RemoteProtocolError(f"expected a string, got a list {value!r}")


def _addresses(value: Value) -> tuple[Address, ...]:
    found = []
    for entry in as_list(value):
        fields = as_list(entry)
        if len(fields) != 4:
            raise RemoteProtocolError(f"address needs 4 fields, got {entry!r}")
        name, adl, mailbox, host = fields
        found.append(
            Address(decode_words(_bytes(name)), as_str(adl), as_str(mailbox), as_str(host))
        )
    return tuple(found)


def envelope_from_value(value: Value) -> Envelope:
    fields = as_list(value)
    if len(fields) != 10:
        raise RemoteProtocolError(f"ENVELOPE needs 10 fields, got {len(fields)}")
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = fields
    return Envelope(
        date=as_str(date),
        subject=decode_words(_bytes(subject)),
        from_=_addresses(from_),
        sender=_addresses(sender),
        reply_to=_addresses(reply_to),
        to=_addresses(to),
        cc=_addresses(cc),
        bcc=_addresses(bcc),
        in_reply_to=as_str(in_reply_to),
        message_id=as_str(message_id),
    )


def _emails(value: Value) -> list[str]:
    """Just the ``mailbox@host`` of each address (group markers, with no host, left out)."""
    found = []
    for entry in as_list(value):
        fields = as_list(entry)
        if len(fields) != 4:
            raise RemoteProtocolError(f"address needs 4 fields, got {entry!r}")
        mailbox, host = as_str(fields[2]), as_str(fields[3])
        if mailbox is not None and host is not None:
            found.append(f"{mailbox}@{host}")
    return found


def _first_name(value: Value) -> str:
    """The decoded display name of the first address ("" without one)."""
    for entry in as_list(value):
        fields = as_list(entry)
        if len(fields) == 4 and fields[2] is not None and fields[3] is not None:
            return decode_words(_bytes(fields[0])) or "" if fields[0] is not None else ""
    return ""


# The summary's fast path: an ENVELOPE made of NIL, quoted strings and address lists (what
# servers send unless a field needs a literal) is matched whole by one regular expression, and
# only the fields the summary keeps are unquoted and decoded; the FETCH parser has usually
# matched it already (:class:`MatchedEnvelope`). A literal that could have been a quoted string
# (no CR or LF) is read as one. Anything else (atoms, lowercase nil, spacing the grammar does
# not have) takes the general parser.
_ENVELOPE = re.compile(ENVELOPE_PATTERN)
_LITERAL_MARKER = re.compile(rb"~?\{(\d+)[+-]?\}\r\n")


def _inlined(raw: RawValue) -> bytes | None:
    """``raw``'s text with each literal written as the quoted string it could have been; None
    when one cannot be (CR or LF in it) or the markers and the literals do not pair up. A
    marker is never inside a quoted string: a quoted string holds no CRLF."""
    parts: list[bytes] = []
    pos = 0
    literals = raw.literals
    markers = list(_LITERAL_MARKER.finditer(raw.text))
    if len(markers) != len(literals):
        return None
    for marker, literal in zip(markers, literals, strict=True):
        data = bytes(literal)
        if b"\r" in data or b"\n" in data:
            return None
        if b"\\" in data or b'"' in data:
            data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        parts += (raw.text[pos : marker.start()], b'"', data, b'"')
        pos = marker.end()
    parts.append(raw.text[pos:])
    return b"".join(parts)


def _unquoted(token: bytes) -> bytes | None:
    if token == b"NIL":
        return None
    inner = token[1:-1]
    return QUOTED_ESCAPE.sub(rb"\1", inner) if b"\\" in inner else inner


def _text(token: bytes) -> str | None:
    raw = _unquoted(token)
    return None if raw is None else raw.decode("utf-8", "replace")


def _emails_of(addresses: list[tuple[bytes, bytes, bytes]]) -> list[str]:
    """``mailbox@host`` of each matched address with both (unescaping after the join is the
    same as before it: an escape never spans a field)."""
    found = []
    for _, mailbox, host in addresses:
        if mailbox != b"NIL" and host != b"NIL":
            joined = mailbox[1:-1] + b"@" + host[1:-1]
            if b"\\" in joined:
                joined = QUOTED_ESCAPE.sub(rb"\1", joined)
            found.append(joined.decode("utf-8", "replace"))
    return found


@functools.lru_cache(maxsize=4096)
def _decoded_words(raw: bytes) -> str | None:
    return decode_words(raw)


def _decoded(raw: bytes) -> str:
    """:func:`decode_words`: remembered for encoded words (a mailbox's senders and threads'
    subjects repeat); plain text is only decoded (no lookup, no eviction)."""
    return raw.decode("utf-8", "replace") if b"=?" not in raw else _decoded_words(raw) or ""


def envelope_summary_of(raw: RawValue) -> dict[str, Any]:
    """:func:`envelope_summary` of a raw ENVELOPE, through the fast path when it can."""
    if type(raw) is MatchedEnvelope:
        date, subject, senders, recipients, message_id = raw.fields
    else:
        text = _inlined(raw) if raw.literals else raw.text
        match = None if text is None else _ENVELOPE.fullmatch(text)
        if match is None:
            return envelope_summary(raw.value())
        date, subject, senders, recipients, message_id = match.groups()
    from_ = ADDRESS_FIELDS.findall(senders) if senders != b"NIL" else []
    from_name = ""
    for name, mailbox, host in from_:
        if mailbox != b"NIL" and host != b"NIL":
            decoded = _unquoted(name)
            from_name = "" if decoded is None else _decoded(decoded)
            break
    subject_raw = _unquoted(subject)
    return {
        "date": _text(date),
        "subject": None if subject_raw is None else _decoded(subject_raw),
        "from": _emails_of(from_),
        "from_name": from_name,
        "to": _emails_of(ADDRESS_FIELDS.findall(recipients)) if recipients != b"NIL" else [],
        "message_id": _text(message_id),
    }


def envelope_summary(value: Value) -> dict[str, Any]:
    """What a mail index keeps of an ENVELOPE (date, decoded subject, sender and recipient
    addresses, the first sender's display name, message id), without building the full
    :class:`Envelope`: the recipients' display names are not decoded, which is most of the
    cost of a big first sync."""
    fields = as_list(value)
    if len(fields) != 10:
        raise RemoteProtocolError(f"ENVELOPE needs 10 fields, got {len(fields)}")
    return {
        "date": as_str(fields[0]),
        "subject": decode_words(_bytes(fields[1])),
        "from": _emails(fields[2]),
        "from_name": _first_name(fields[2]),
        "to": _emails(fields[5]),
        "message_id": as_str(fields[9]),
    }


def _params(value: Value) -> dict[str, str]:
    items = as_list(value)
    if len(items) % 2:
        raise RemoteProtocolError(f"body parameters come in pairs, got {value!r}")
    return {
        (as_str(k) or "").lower(): as_str(v) or ""
        for k, v in zip(items[::2], items[1::2], strict=True)
    }


def _disposition(value: Value) -> tuple[str, dict[str, str]] | None:
    if value is None:
        return None
    items = as_list(value)
    if not items:
        return None
    return (as_str(items[0]) or "").lower(), _params(items[1] if len(items) > 1 else None)


def _language(value: Value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(as_str(v) or "" for v in value)
    return (as_str(value) or "",)


def body_from_value(value: Value) -> BodyStructure:
    fields = as_list(value)
    if not fields:
        raise RemoteProtocolError("empty body structure")
    if isinstance(fields[0], list):
        parts = []
        index = 0
        while index < len(fields) and isinstance(fields[index], list):
            parts.append(body_from_value(fields[index]))
            index += 1
        if index >= len(fields):
            raise RemoteProtocolError("multipart body without a subtype")
        subtype = (as_str(fields[index]) or "").lower()
        ext = fields[index + 1 :]
        return Multipart(
            subtype=subtype,
            parts=tuple(parts),
            params=_params(ext[0]) if ext else {},
            disposition=_disposition(ext[1]) if len(ext) > 1 else None,
            language=_language(ext[2]) if len(ext) > 2 else None,
            location=as_str(ext[3]) if len(ext) > 3 else None,
            extension=tuple(ext[4:]),
        )
    if len(fields) < 7:
        raise RemoteProtocolError(f"body part needs at least 7 fields, got {len(fields)}")
    type_ = (as_str(fields[0]) or "").lower()
    subtype = (as_str(fields[1]) or "").lower()
    rest = fields[7:]
    lines = envelope = body = None
    if type_ == "message" and subtype in ("rfc822", "global") and len(rest) >= 3:
        envelope = envelope_from_value(rest[0])
        body = body_from_value(rest[1])
        lines = as_int(rest[2])
        rest = rest[3:]
    elif type_ == "text" and rest:
        lines = as_int(rest[0])
        rest = rest[1:]
    return BodyPart(
        type=type_,
        subtype=subtype,
        params=_params(fields[2]),
        id=as_str(fields[3]),
        description=as_str(fields[4]),
        encoding=as_str(fields[5]),
        size=as_int(fields[6]),
        lines=lines,
        envelope=envelope,
        body=body,
        md5=as_str(rest[0]) if rest else None,
        disposition=_disposition(rest[1]) if len(rest) > 1 else None,
        language=_language(rest[2]) if len(rest) > 2 else None,
        location=as_str(rest[3]) if len(rest) > 3 else None,
        extension=tuple(rest[4:]),
    )
