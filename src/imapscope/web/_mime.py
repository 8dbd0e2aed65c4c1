"""A fetched message made readable: its main headers, its text, its HTML (shown only in a
sandboxed frame with a policy of its own) and its attachments, by the standard library's MIME
parser (``email`` with the default policy, which decodes RFC 2047 words and charsets)."""

from __future__ import annotations

import email
import email.message
import email.policy
from dataclasses import dataclass, field

#: The most text shown of one part; the rest is cut with a note.
MAX_SHOWN = 1024 * 1024
HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass
class Readable:
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


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


def readable(raw: bytes) -> Readable:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    found = Readable()
    for name in HEADERS:
        value = message.get(name)
        if value is not None:
            found.headers.append((name, str(value)))
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    if isinstance(plain, email.message.EmailMessage):
        found.text = _content(plain, found.problems)
    if isinstance(html, email.message.EmailMessage):
        found.html = _content(html, found.problems)
    for part in message.iter_attachments():
        if not isinstance(part, email.message.EmailMessage):
            continue
        payload = part.get_payload(decode=True)
        found.attachments.append(Attachment(
            filename=part.get_filename() or "(no name)",
            content_type=part.get_content_type(),
            size=len(payload) if isinstance(payload, bytes) else len(str(part)),
        ))  # fmt: skip
    return found


#: The policy of a message's HTML frame: nothing runs, nothing loads from the network (no
#: tracking pixels), inline styles and embedded images show; only the UI may frame it.
HTML_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
