"""CATENATE (RFC 4469): a message put together from literal text and parts of stored messages,
named by IMAP URLs (RFC 5092) of this server."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from imapscope.imap import decode_mailbox
from imapscope.sandbox import _mime
from imapscope.sandbox._store import Mailbox, StoreError

# [imap://authority] /mailbox [;UIDVALIDITY=n] /;UID=n [/;SECTION=s] [/;PARTIAL=o[.l]]
_URL = re.compile(
    r"(?:imap://[^/]*)?/(?P<mailbox>[^;]+?)(?:;UIDVALIDITY=(?P<validity>\d+))?"
    r"/;UID=(?P<uid>\d+)(?:/;SECTION=(?P<section>[^/;]*))?"
    r"(?:/;PARTIAL=(?P<offset>\d+)(?:\.(?P<length>\d+))?)?",
    re.IGNORECASE,
)


class BadUrlError(ValueError):
    """A URL that names nothing here; ``url`` goes back in the BADURL response code."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url


def resolve(url: str, lookup: Callable[[str], Mailbox]) -> bytes:
    """The bytes a URL names: a whole message, or one section of it, perhaps partial."""
    match = _URL.fullmatch(url)
    if match is None:
        raise BadUrlError(url, "not an IMAP URL of the form /mailbox/;UID=n[/;SECTION=s]")
    name = unquote(match["mailbox"]).rstrip("/")
    try:
        mailbox = lookup(name)
    except StoreError:
        try:
            mailbox = lookup(decode_mailbox(name.encode()))
        except (StoreError, ValueError):
            raise BadUrlError(url, f"no mailbox {name!r}") from None
    if match["validity"] and int(match["validity"]) != mailbox.uidvalidity:
        raise BadUrlError(url, "the UIDVALIDITY has changed")
    message = mailbox.by_uid(int(match["uid"]))
    if message is None:
        raise BadUrlError(url, f"no message with UID {match['uid']}")
    section = unquote(match["section"] or "").upper()
    if section and _mime.SECTION.fullmatch(section) is None:
        raise BadUrlError(url, f"not a section: {section!r}")
    data = _mime.section(message.parsed, section) if section else message.raw
    if match["offset"] is not None:
        start = int(match["offset"])
        end = None if match["length"] is None else start + int(match["length"])
        data = data[start:end]
    return data
