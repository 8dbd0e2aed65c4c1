"""RFC 5322 address lists as IMAP's ENVELOPE has them (RFC 3501 7.4.2), groups and source routes
included. The standard library's ``getaddresses`` flattens groups and drops routes, so ENVELOPE
could not say them.

Where the RFC leaves room, Dovecot's message-address parser is the model: a comment stands in for
a missing display name (``user@host (Real Name)``), a mailbox without a domain gets an empty host
(never NIL, which marks a group), a group is ``(NIL NIL "name" NIL) ... (NIL NIL NIL NIL)``.
"""

from __future__ import annotations

import re

from imapscope.imap import Address

_SPECIALS = set('()<>@,;:\\".[]')
_ATOM = re.compile(r'[^\s()<>@,;:\\".\[\]]+')


class _Tokens:
    """Tokens of a structured header value: atoms, quoted strings, domain literals and specials;
    comments are skipped but the last one is remembered (it may stand in for a name)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.comment: str | None = None

    def _skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif char == "(":
                self.comment = self._comment()
            else:
                return

    def _comment(self) -> str:
        depth, out = 0, []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == "(":
                if depth:
                    out.append(char)
                depth += 1
            elif char == ")":
                depth -= 1
                if not depth:
                    break
                out.append(char)
            else:
                out.append(char)
        return " ".join("".join(out).split())

    def peek(self) -> str | None:
        """The next special character, or "" for a word, or None at the end."""
        self._skip()
        if self.pos >= len(self.text):
            return None
        char = self.text[self.pos]
        return char if char in _SPECIALS and char not in '"[' else ""

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def word(self) -> str | None:
        """An atom, a quoted string (unquoted) or a domain literal (kept with its brackets)."""
        self._skip()
        text = self.text
        if self.pos >= len(text):
            return None
        char = text[self.pos]
        if char == '"':
            out = []
            self.pos += 1
            while self.pos < len(text) and text[self.pos] != '"':
                if text[self.pos] == "\\" and self.pos + 1 < len(text):
                    self.pos += 1
                out.append(text[self.pos])
                self.pos += 1
            self.pos += 1
            return "".join(out)
        if char == "[":
            end = text.find("]", self.pos)
            end = len(text) if end < 0 else end + 1
            literal = text[self.pos : end]
            self.pos = end
            return literal
        match = _ATOM.match(text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def phrase(self) -> list[str]:
        words = []
        while self.peek() == "" or self.peek() == ".":  # obs-phrase allows dots
            if self.take("."):
                words.append(".")
                continue
            word = self.word()
            if word is None:
                break
            words.append(word)
        return words

    def dotted(self) -> str:
        """local-part or domain: words joined by dots, as written without the spaces."""
        parts = []
        while True:
            word = self.word() if self.peek() == "" else None
            if word is None:
                break
            parts.append(word)
            if not self.take("."):
                break
            parts.append(".")
        return "".join(parts)


def _join(words: list[str]) -> str:
    """A phrase as one string: words separated by a space, a dot kept with the word before."""
    out = ""
    for word in words:
        out += word if word == "." or not out else " " + word
    return out


def _angle(tokens: _Tokens, name: str | None) -> Address:
    """After '<': [route ':'] addr-spec '>'."""
    route = []
    while tokens.take("@"):
        route.append("@" + tokens.dotted())
        if not tokens.take(","):
            break
    if route and not tokens.take(":"):
        route = []
    mailbox = tokens.dotted()
    host = tokens.dotted() if tokens.take("@") else ""
    tokens.take(">")
    return Address(name, ",".join(route) or None, mailbox or "", host)


def _mailbox(tokens: _Tokens, words: list[str]) -> Address:
    """A mailbox whose leading words are read: name-addr or addr-spec."""
    if tokens.take("<"):
        return _angle(tokens, _join(words) or None)
    tokens.comment = None
    host = tokens.dotted() if tokens.take("@") else ""
    tokens.peek()  # reads a trailing comment, which stands in for the missing name
    return Address(tokens.comment, None, "".join(words), host)


def parse(text: str) -> tuple[Address, ...]:
    """An address-list as ENVELOPE addresses; groups as start and end markers."""
    tokens = _Tokens(text)
    found: list[Address] = []
    in_group = False
    while tokens.peek() is not None:
        if tokens.take(","):
            continue
        if in_group and tokens.take(";"):
            found.append(Address(None, None, None, None))
            in_group = False
            continue
        words = tokens.phrase()
        if not in_group and tokens.take(":"):
            found.append(Address(None, None, _join(words), None))
            in_group = True
            continue
        if not words and tokens.peek() not in ("<", "@"):
            tokens.pos += 1  # a stray special: skip it, as a lenient parser does
            continue
        found.append(_mailbox(tokens, words))
    if in_group:
        found.append(Address(None, None, None, None))
    return tuple(found)
