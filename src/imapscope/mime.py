"""A fetched message made readable: its main headers, its text, its HTML (the web UI shows it
only in a sandboxed frame with a policy of its own) and its attachments, by the standard
library's MIME parser (``email`` with the default policy, which decodes RFC 2047 words and
charsets). The web UI's message page and the receive API's matched messages read mail through
it."""

from __future__ import annotations

import email
import email.message
import email.policy
import hashlib
from dataclasses import dataclass, field

#: The most text shown of one part; the rest is cut with a note.
MAX_SHOWN = 1024 * 1024
HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID")
NO_PARTS = "a multipart part holds no parts (its boundary never comes)"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str = ""


@dataclass
class Readable:
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Every header, decoded, in order (names as the message spells them).
    all_headers: list[tuple[str, str]] = field(default_factory=list)


def _content(part: email.message.EmailMessage, problems: list[str]) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError) as exc:  # unknown charset, bad encoding
        problems.append(f"a {part.get_content_type()} part could not be decoded ({exc})")
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    text = content if isinstance(content, str) else ""
    if len(text) > MAX_SHOWN:
        problems.append(f"only the first {MAX_SHOWN // 1024} KiB of a part is shown")
        text = text[:MAX_SHOWN]
    return text


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _header(message: email.message.EmailMessage, name: str, problems: list[str]) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError, AttributeError) as exc:  # a header the parser chokes on
        problems.append(f"the {name} header could not be decoded ({exc})")
        return None
    return None if value is None else str(value)


def _body(
    message: email.message.EmailMessage, kind: str, problems: list[str]
) -> email.message.EmailMessage | None:
    """The message's text/``kind`` body as ``get_body`` finds it. ``get_body`` takes every
    multipart to hold parts and raises AttributeError at one whose boundary never comes (its
    body is text, not parts: spam, a cut message): then the first text/``kind`` part that is
    not an attachment, found by a walk of the parts there are."""
    try:
        found = message.get_body(preferencelist=(kind,))
    except AttributeError:
        if NO_PARTS not in problems:
            problems.append(NO_PARTS)
        found = next((p for p in message.walk() if p.get_content_type() == f"text/{kind}"
                      and not p.is_attachment()), None)  # fmt: skip
    return found if isinstance(found, email.message.EmailMessage) else None


def attachments(message: email.message.EmailMessage) -> list[email.message.EmailMessage]:
    """The message's attachments, in order (their index is their place here)."""
    return [p for p in message.iter_attachments() if isinstance(p, email.message.EmailMessage)]


#: What :func:`readable` says of a message the parser recursed too deep in.
TOO_DEEP = "the message is nested too deeply to read (its parts, or a header's comments)"


def readable(raw: bytes) -> Readable:
    """The message made readable; what could not be read is in ``problems``, never raised.
    The standard library's parser is pure Python and some of it is quadratic (a From of 50,000
    addresses: 13 s for 256 KiB): callers on an event loop run this in a thread, so that the
    loop keeps answering meanwhile."""
    try:
        return _readable(raw)
    except RecursionError:  # multiparts nested thousands deep, or a header of "((((..."
        return Readable(problems=[TOO_DEEP])


def _readable(raw: bytes) -> Readable:
    message = parse(raw)
    found = Readable()
    for name in HEADERS:
        value = _header(message, name, found.problems)
        if value is not None:
            found.headers.append((name, value))
    try:
        found.all_headers = [(name, str(value)) for name, value in message.items()]
    except (ValueError, IndexError, AttributeError):  # one header the parser chokes on
        found.all_headers = [(n, _header(message, n, found.problems) or "") for n in message]
    plain = _body(message, "plain", found.problems)
    html = _body(message, "html", found.problems)
    if plain is not None:
        found.text = _content(plain, found.problems)
    if html is not None:
        found.html = _content(html, found.problems)
    for part in attachments(message):
        data = payload(part)
        found.attachments.append(Attachment(
            filename=part.get_filename() or "(no name)",
            content_type=part.get_content_type(),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        ))  # fmt: skip
    return found


def payload(part: email.message.EmailMessage) -> bytes:
    """A part's bytes, transfer encoding undone (a message/rfc822 or multipart part: its
    text)."""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    try:
        return part.as_bytes()
    except UnicodeError:
        # A multipart holding no parts, with 8-bit bytes in its text: the parser kept that
        # text with replacement characters, which the bytes generator cannot write as ASCII.
        # Its text then, in UTF-8 (the bytes the parser replaced are not to be had).
        return part.as_string().encode("utf-8", "surrogateescape")


#: The policy of a message's HTML frame: nothing runs, nothing loads from the network (no
#: tracking pixels), inline styles and embedded images show; only the UI may frame it.
HTML_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
