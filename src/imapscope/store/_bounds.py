"""Bounds on what is stored: a server decides what a subject, an address or an error text holds,
so every such field is cut to a named size, with a marker that says it was cut."""

from __future__ import annotations

from typing import Any

TRUNCATED = "…[truncated]"
#: RFC 5322 asks for lines of at most 998 characters; a longer subject is not a subject.
MAX_SUBJECT = 998
#: RFC 5321 §4.5.3.1: 64 octets local part + 255 domain; a display name rarely exceeds 200.
MAX_ADDRESS = 512
#: Addresses kept per envelope field (a mailing list's To: is not a reason to grow a row).
MAX_ADDRESSES = 50
MAX_MESSAGE_ID = 998
MAX_FLAGS = 100
MAX_FLAG = 200


def bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


_TEXT_LIMITS = (("subject", MAX_SUBJECT), ("message_id", MAX_MESSAGE_ID), ("date", 200),
                ("from_name", MAX_ADDRESS))  # fmt: skip
_ADDRESS_FIELDS = ("from", "to", "cc", "reply_to", "sender", "bcc")


def _within(envelope: dict[str, Any]) -> bool:
    """True when nothing in the envelope needs cutting (nearly always: checked first, so most
    rows are not copied)."""
    for key, limit in _TEXT_LIMITS:
        value = envelope.get(key)
        if isinstance(value, str) and len(value) > limit:
            return False
    for key in _ADDRESS_FIELDS:
        value = envelope.get(key)
        if type(value) is list:
            if len(value) > MAX_ADDRESSES:
                return False
            for address in value:  # a loop, not all(): one or two addresses, no generator
                if type(address) is not str or not address or len(address) > MAX_ADDRESS:
                    return False
        elif isinstance(value, list):
            return False  # a list subclass: the careful path
    return True


def bounded_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """An envelope (as the sync engine stores it) with every field bounded (itself when every
    field already is)."""
    if _within(envelope):
        return envelope
    out = dict(envelope)
    for key, limit in _TEXT_LIMITS:
        if isinstance(out.get(key), str):
            out[key] = bounded(out[key], limit)
    for key in _ADDRESS_FIELDS:
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [bounded(str(a), MAX_ADDRESS) for a in value[:MAX_ADDRESSES] if a]
    return out


def bounded_flags(flags: tuple[str, ...] | list[str]) -> list[str]:
    if len(flags) <= MAX_FLAGS and all(len(f) <= MAX_FLAG for f in flags):
        return list(flags)
    return [bounded(f, MAX_FLAG) for f in list(flags)[:MAX_FLAGS]]
