"""Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3).

Printable US-ASCII except ``&`` stands for itself; ``&`` is ``&-``; any other run of characters is
``&`` + modified BASE64 (``,`` for ``/``, no padding) of its UTF-16BE encoding + ``-``.
"""

from __future__ import annotations

import base64
import binascii

from imapscope.imap._errors import MailboxNameError


def encode(name: str) -> bytes:
    out = bytearray()
    run: list[str] = []

    def flush() -> None:
        if run:
            packed = base64.b64encode("".join(run).encode("utf-16-be")).rstrip(b"=")
            out.extend(b"&" + packed.replace(b"/", b",") + b"-")
            run.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            run.append(char)
    flush()
    return bytes(out)


def _shown(raw: bytes) -> str:
    return raw.decode("ascii", "backslashreplace")[:200]


def decode(raw: bytes) -> str:
    parts: list[str] = []
    pos = 0
    while pos < len(raw):
        amp = raw.find(b"&", pos)
        if amp < 0:
            parts.append(raw[pos:].decode("ascii", "replace"))
            break
        parts.append(raw[pos:amp].decode("ascii", "replace"))
        end = raw.find(b"-", amp)
        if end < 0:
            raise MailboxNameError(
                f"Mailbox name is not valid mUTF-7: unterminated '&' in {_shown(raw)}"
            )
        chunk = raw[amp + 1 : end]
        if not chunk:
            parts.append("&")
        else:
            padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
            try:
                parts.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise MailboxNameError(
                    f"Mailbox name is not valid mUTF-7: {_shown(raw)}",
                    hint="a mailbox name must be modified UTF-7 (RFC 3501 5.1.3)",
                ) from exc
        pos = end + 1
    return "".join(parts)
