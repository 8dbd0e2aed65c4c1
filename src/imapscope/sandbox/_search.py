"""SEARCH keys (RFC 3501 6.4.4 / RFC 9051 6.4.4) as a tree of predicates over messages.

The codec hands SEARCH criteria over as text with ``?`` where a string argument stood, and the
strings apart (so a string can never be mistaken for syntax); this module turns that into a
predicate ``(message, sequence number) -> bool``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from imapscope.imap import ProtocolError, decode_words, expand_sequence
from imapscope.sandbox._address import parse as parse_addresses
from imapscope.sandbox._store import Message, canonical_flags

Predicate = Callable[[Message, int], bool]
_TOKEN = re.compile(r"\(|\)|\?|[^\s()?]+")
_MONTH_NAMES = "jan feb mar apr may jun jul aug sep oct nov dec"
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES.split(), 1)}
_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}  # fmt: skip
_ADDRESS_HEADERS = frozenset({"FROM", "TO", "CC", "BCC", "SENDER", "REPLY-TO"})


class SearchError(ValueError):
    """The criteria do not parse; the message says which key."""


def _numbers(text: str, largest: int) -> set[int]:
    """A sequence set among the criteria: a bad one is a bad criterion (BAD, as Dovecot says
    "Invalid messageset"), not an error of the server's."""
    try:
        return set(expand_sequence(text, largest))
    except ProtocolError as exc:
        raise SearchError(f"invalid messageset {text!r}") from exc


def _date(text: str) -> date:
    try:
        day, month, year = text.split("-")
        return date(int(year), _MONTHS[month.lower()], int(day))
    except (ValueError, KeyError) as exc:
        raise SearchError(f"not a date: {text!r} (expected e.g. 1-Feb-2024)") from exc


def _sent(message: Message) -> date | None:
    """The sent date, in the Date header's own zone (RFC 3501: SENTON ignores the time)."""
    when = message.parsed.sent()
    return None if when is None else when.date()


def _header_contains(message: Message, name: str, needle: str) -> bool:
    """Matches against the decoded header (RFC 2047 encoded words included), case-insensitively;
    an address header also as its addresses read (``name <mailbox@host>``, comments and routes
    left out), so ``FROM john@example.com`` finds ``john (Work) @ example.com`` as Dovecot does."""
    values = message.parsed.get_all(name.lower())
    texts = [decode_words(value.encode()) or "" for value in values]
    if name.upper() in _ADDRESS_HEADERS and values:
        for address in parse_addresses(", ".join(values)):
            email = address.email if address.host else address.mailbox
            shown = decode_words(address.name.encode()) if address.name else None
            texts.append(f"{shown} <{email}>" if shown else email or "")
    return any(_contains(text, needle) for text in texts)


def _contains(haystack: str | bytes, needle: str) -> bool:
    text = haystack.decode("utf-8", "replace") if isinstance(haystack, bytes) else haystack
    return needle.casefold() in text.casefold()


class _Parser:
    recent: set[int] | frozenset[int] = frozenset()
    saved: set[int] | frozenset[int] = frozenset()

    def __init__(self, criteria: str, strings: tuple[str, ...], largest: int, uids: list[int]):
        self.tokens = _TOKEN.findall(criteria)
        self.strings = list(strings)
        self.largest = largest
        self.max_uid = max(uids, default=0)
        self.pos = 0

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise SearchError("the criteria end too early")
        piece: str = self.tokens[self.pos]
        self.pos += 1
        return piece

    def argument(self) -> str:
        piece = self.take()
        if piece == "?":
            if not self.strings:
                raise SearchError("a string argument is missing")
            return self.strings.pop(0)
        return piece

    def keys(self, until: str | None = None) -> Predicate:
        found: list[Predicate] = []
        while self.pos < len(self.tokens) and self.tokens[self.pos] != until:
            found.append(self.key())
        if until is not None:
            self.take()
        return lambda m, n: all(p(m, n) for p in found)

    def key(self) -> Predicate:
        piece = self.take()
        word = piece.upper()
        if piece == "(":
            return self.keys(")")
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return lambda m, n: (flag in m.flags) == present
        if word == "ALL":
            return lambda m, n: True
        recent = self.recent
        if word == "RECENT":
            return lambda m, n: m.uid in recent
        if word == "NEW":  # RFC 3501: RECENT UNSEEN
            return lambda m, n: m.uid in recent and "\\Seen" not in m.flags
        if word == "OLD":
            return lambda m, n: m.uid not in recent
        if word in ("KEYWORD", "UNKEYWORD"):
            (keyword,) = canonical_flags([self.argument()])
            return lambda m, n: (keyword in m.flags) == (word == "KEYWORD")
        if word == "NOT":
            inner = self.key()
            return lambda m, n: not inner(m, n)
        if word == "OR":
            left, right = self.key(), self.key()
            return lambda m, n: left(m, n) or right(m, n)
        if word in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
            needle = self.argument()
            return lambda m, n: _header_contains(m, word, needle)
        if word == "HEADER":
            name, needle = self.argument(), self.argument()
            return lambda m, n: _header_contains(m, name, needle)
        if word == "BODY":
            needle = self.argument()
            return lambda m, n: _contains(m.parsed.text, needle)
        if word == "TEXT":
            needle = self.argument()
            return lambda m, n: _contains(m.raw, needle)
        if word in ("BEFORE", "ON", "SINCE"):
            day = _date(self.argument())
            return _compare(word, day, lambda m: m.internaldate.date())
        if word in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = _date(self.argument())
            return _compare(word[4:], day, _sent)
        if word in ("LARGER", "SMALLER"):
            size = int(self.argument())
            return lambda m, n: len(m.raw) > size if word == "LARGER" else len(m.raw) < size
        if word == "UID":
            argument = self.argument()
            uids = self.saved if argument == "$" else _numbers(argument, self.max_uid)
            return lambda m, n: m.uid in uids
        if piece == "$":  # the saved result (RFC 5182), kept as UIDs
            saved = self.saved
            return lambda m, n: m.uid in saved
        if word == "MODSEQ":
            value = int(self.argument())
            return lambda m, n: m.modseq >= value
        if piece[:1].isdigit() or piece[:1] == "*":
            numbers = _numbers(piece, self.largest)
            return lambda m, n: n in numbers
        raise SearchError(f"unknown search key {piece}")


def _compare(word: str, day: date, of: Callable[[Message], date | None]) -> Predicate:
    def predicate(message: Message, _: int) -> bool:
        value = of(message)
        if value is None:
            return False
        return value < day if word == "BEFORE" else value == day if word == "ON" else value >= day

    return predicate


def compile_search(
    criteria: str, strings: tuple[str, ...], largest: int, uids: list[int],
    *, recent: set[int] | frozenset[int] = frozenset(),
    saved: set[int] | frozenset[int] = frozenset(),
) -> Predicate:  # fmt: skip
    """``recent``: the UIDs that are \\Recent in the searching session (RECENT, NEW, OLD);
    ``saved``: the UIDs of the last SEARCH RETURN (SAVE), which ``$`` names (RFC 5182)."""
    parser = _Parser(criteria, strings, largest, uids)
    parser.recent, parser.saved = recent, saved
    predicate = parser.keys()
    if parser.strings:
        raise SearchError("more strings than the criteria use")
    return predicate
