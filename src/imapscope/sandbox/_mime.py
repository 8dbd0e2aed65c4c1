"""What a server says about a message: ENVELOPE, BODYSTRUCTURE and body sections, computed from
its bytes with the standard ``email`` package (RFC 9051 7.5.2)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from email.message import Message as EmailMessage
from email.utils import getaddresses
from typing import TYPE_CHECKING

from imapscope.imap import Address, BodyPart, BodyStructure, Envelope, Multipart

if TYPE_CHECKING:
    from imapscope.sandbox._store import Message

_POLICY = email.policy.compat32  # keeps headers as they were (no re-folding, no decoding)


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=_POLICY)


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else " ".join(str(value).split())


def _addresses(message: EmailMessage, name: str) -> tuple[Address, ...]:
    values = message.get_all(name)
    if not values:
        return ()
    found = []
    for display, addr in getaddresses([str(v) for v in values]):
        mailbox, _, host = addr.partition("@")
        found.append(Address(display or None, None, mailbox or None, host or None))
    return tuple(found)


def envelope(message: EmailMessage) -> Envelope:
    from_ = _addresses(message, "From")
    sender = _addresses(message, "Sender") or from_
    reply_to = _addresses(message, "Reply-To") or from_
    return Envelope(
        date=_header(message, "Date"),
        subject=_header(message, "Subject"),
        from_=from_,
        sender=sender,
        reply_to=reply_to,
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        bcc=_addresses(message, "Bcc"),
        in_reply_to=_header(message, "In-Reply-To"),
        message_id=_header(message, "Message-ID"),
    )


def _params(message: EmailMessage) -> dict[str, str]:
    return {k.lower(): v for k, v in message.get_params(failobj=[], header="content-type")[1:]}


def _disposition(message: EmailMessage) -> tuple[str, dict[str, str]] | None:
    if message.get("Content-Disposition") is None:
        return None
    params = message.get_params(failobj=[], header="content-disposition")
    if not params:
        return None
    kind = params[0][0].lower()
    return kind, {k.lower(): v for k, v in params[1:]}


def _body_bytes(message: EmailMessage) -> bytes:
    payload = message.get_payload(decode=False)
    text = payload if isinstance(payload, str) else ""
    return text.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def structure(message: EmailMessage) -> BodyStructure:
    if message.is_multipart():
        parts = message.get_payload()
        assert isinstance(parts, list)
        return Multipart(
            subtype=message.get_content_subtype(),
            parts=tuple(structure(p) for p in parts if isinstance(p, EmailMessage)),
            params=_params(message),
            disposition=_disposition(message),
        )
    maintype, subtype = message.get_content_maintype(), message.get_content_subtype()
    body = _body_bytes(message)
    lines = body.count(b"\r\n") + (0 if body.endswith(b"\r\n") or not body else 1)
    params = _params(message) or ({"charset": "us-ascii"} if maintype == "text" else {})
    return BodyPart(
        type=maintype,
        subtype=subtype,
        params=params,
        id=_header(message, "Content-ID"),
        description=_header(message, "Content-Description"),
        encoding=(_header(message, "Content-Transfer-Encoding") or "7bit").upper(),
        size=len(body),
        lines=lines if maintype == "text" else None,
        disposition=_disposition(message),
    )


def preview(message: EmailMessage, limit: int = 200) -> str:
    """RFC 8970 PREVIEW: the start of the first text part, whitespace folded."""
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    text = payload.decode(charset, "replace")
                except LookupError:
                    text = payload.decode("utf-8", "replace")
                if part.get_content_subtype() == "html":
                    text = re.sub(r"<[^>]*>", " ", text)
                return " ".join(text.split())[:limit]
    return ""


def object_id(message: Message, kind: str) -> str:
    """RFC 8474 EMAILID (from the content) or THREADID (from the thread's first Message-ID)."""
    if kind == "EMAILID":
        return "M" + hashlib.sha256(message.raw).hexdigest()[:24]
    parsed = message.parsed
    root = (str(parsed.get("References") or parsed.get("In-Reply-To") or "").split() or
            [str(parsed.get("Message-ID") or message.uid)])[0]  # fmt: skip
    return "T" + hashlib.sha256(root.encode()).hexdigest()[:24]


def split(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including the blank line, body)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index >= 0:
            return raw[: index + len(separator)], raw[index + len(separator) :]
    return raw, b""


def header_fields(header: bytes, names: set[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS (names) or HEADER.FIELDS.NOT (names) of a header block."""
    out: list[bytes] = []
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].decode("ascii", "replace").strip().upper()
        keep = (name in names) != exclude
        if keep:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n"
