"""Sequence sets (RFC 9051 section 9)::

    sequence-set    = (seq-number / seq-range) ["," sequence-set]
    seq-range       = seq-number ":" seq-number
    seq-number      = nz-number / "*"

:func:`compact` writes ids as the shortest set of ranges; :func:`split` cuts a large set into
pieces whose text stays under a byte budget, because servers cap command lines (Dovecot rejects
lines over 64 KiB, see shared/FACTS.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from imapscope.imap._errors import LocalProtocolError, RemoteProtocolError

_SET = re.compile(r"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*\Z")
_SET_OR_SAVED = re.compile(r"\$\Z|" + _SET.pattern)  # "$": the saved search result (RFC 5182)


def _ranges(ids: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(set(ids))
    if ordered and ordered[0] < 1:
        raise LocalProtocolError(f"message numbers start at 1, got {ordered[0]}")
    start = previous = None
    for number in ordered:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = number
    if start is not None and previous is not None:
        yield start, previous


def _text(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}:{last}"


def compact(ids: Iterable[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` to ``"1:3,5,7:8"``."""
    text = ",".join(_text(a, b) for a, b in _ranges(ids))
    if not text:
        raise LocalProtocolError("empty sequence set", hint="there is nothing to ask for")
    return text


def split(ids: Iterable[int], max_bytes: int = 8000) -> list[str]:
    """Compact ``ids`` into sets of at most ``max_bytes`` each (ranges are never cut)."""
    pieces: list[str] = []
    current: list[str] = []
    length = 0
    for first, last in _ranges(ids):
        text = _text(first, last)
        if current and length + 1 + len(text) > max_bytes:
            pieces.append(",".join(current))
            current, length = [], 0
        current.append(text)
        length += len(text) + (1 if length else 0)
    if current:
        pieces.append(",".join(current))
    return pieces


def validate(text: str) -> str:
    """A sequence set, or ``$`` (the last saved search result, RFC 5182)."""
    if not _SET_OR_SAVED.match(text):
        raise LocalProtocolError(f"not a sequence set: {text!r}", hint='use e.g. "1:5,7" or "1:*"')
    return text


def expand(text: str, largest: int) -> list[int]:
    """The numbers a set names, with ``*`` standing for ``largest`` (server role)."""
    if not _SET.match(text):
        raise RemoteProtocolError(f"not a sequence set: {text!r}")
    numbers: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition(":")
        low = largest if first == "*" else int(first)
        high = low if not last else largest if last == "*" else int(last)
        # Ranges are unordered, and numbers past the largest name nothing (so "1:4294967295"
        # costs no more than "1:*").
        low, high = min(low, high), min(max(low, high), largest)
        numbers.update(range(low, high + 1))
    return sorted(numbers)
