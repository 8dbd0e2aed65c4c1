"""What a test wants out of a message: its links and its one-time codes.

Links come from the HTML's ``<a href>`` (entities decoded: a tracking link's ``&amp;`` is a
``&``) and from URLs in the text, in that order, each once, as written (a tracking redirect is
the link the reader would click). Codes are 4-8 digit or alphanumeric tokens (with at least
one digit) near a word such as code, verification or OTP in one of several languages, within
:data:`NEAR` characters; digits split by spaces or hyphens ("123 456") are joined. A custom
pattern (RE2: linear time, whatever the input) replaces the built-in rule.

HTML is read with lxml (libxml2's HTML parser, in C, linear): the standard library's
html.parser (Python 3.11.7) takes quadratic time on unclosed markup, 36 s for 64 KiB of ``<a ``
(1 MiB: hours), all of it on serve's event loop while it judged a message.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["CodePattern", "PatternError", "codes", "compile_pattern", "links"]

#: How far (characters) a code may be from its keyword.
NEAR = 80
#: Words that announce a one-time code (lower case; matched case-insensitively as words or,
#: for scripts without spaces, as substrings).
KEYWORDS = (
    # English
    "code", "verification", "verify", "otp", "one-time", "one time", "passcode", "pin",
    "security code", "confirmation", "token", "2fa",
    # German, French, Spanish, Portuguese, Italian, Dutch, Polish, Swedish, Danish, Norwegian
    "bestätigungscode", "sicherheitscode", "bestätigung", "einmalcode", "kennwort",
    "vérification", "confirmation", "código", "verificación", "verificação", "codice",
    "verifica", "verificatie", "kod", "weryfikacyjny", "kode", "bekræftelse", "verifiering",
    # Russian, Ukrainian, Turkish, Greek
    "код", "подтверждения", "kodu", "doğrulama", "κωδικός",
    # Chinese, Japanese, Korean
    "验证码", "驗證碼", "认证码", "確認コード", "認証コード", "コード", "인증번호", "인증 코드",
)  # fmt: skip


def _keyword(word: str) -> str:
    """A keyword's pattern: a whole word, except in scripts written without spaces."""
    if any("\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in word):
        return re.escape(word)
    return rf"(?<!\w){re.escape(word)}(?!\w)"


_KEYWORD = re.compile(
    "|".join(_keyword(k) for k in sorted(set(KEYWORDS), key=len, reverse=True)), re.IGNORECASE
)
# A digit group of 4-8 (maybe split by single spaces or hyphens into groups of 2-4), or an
# upper-case alphanumeric token of 4-8 with a digit. Not part of a longer word or number.
_TOKEN = re.compile(
    r"(?<![\w\-])(?:(?:\d{2,4}[ \-]){1,3}\d{2,4}|\d{4,8}|(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])"
    r"[A-Z0-9]{4,8})(?![\w\-])"
)
_URL = re.compile(r"""https?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


class PatternError(ValueError):
    """A pattern that does not compile (said how) or uses what RE2 refuses."""


class CodePattern:
    """A compiled user pattern (RE2): linear time, no backreferences or lookaround."""

    def __init__(self, source: str, *, ignore_case: bool = False) -> None:
        options = re2.Options()
        options.log_errors = False  # RE2 would print the error on stderr; we raise it
        options.case_sensitive = not ignore_case
        options.max_mem = 8 << 20  # a pattern that needs more is refused, not run
        try:
            self._re: Any = re2.compile(source, options)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise PatternError(
                f"the pattern {source!r} does not compile: {reason} (patterns are RE2: no "
                "backreferences or lookaround; they run in linear time)"
            ) from exc
        self.source = source

    def search(self, text: str) -> bool:
        return self._re.search(text) is not None

    def findall(self, text: str) -> list[str]:
        found: list[str] = []
        for m in self._re.finditer(text):
            value = m.group(1) if self._re.groups else m.group(0)
            if value:
                found.append(value)
        return found


def compile_pattern(source: str, *, ignore_case: bool = False) -> CodePattern:
    return CodePattern(source, ignore_case=ignore_case)


#: Elements that start a new line of the visible text; elements whose text is not shown.
_BLOCKS = frozenset(("br", "p", "div", "tr", "li"))
_HIDDEN = frozenset(("script", "style", "head", "title"))


@functools.cache
def _lxml() -> tuple[Any, Any]:
    """lxml's etree and HTML modules, imported at the first HTML read (not at each start of
    serve, which may never judge one)."""
    import lxml.etree  # type: ignore[import-untyped]  # noqa: PLC0415
    import lxml.html  # type: ignore[import-untyped]  # noqa: PLC0415

    return lxml.etree, lxml.html


class _Html:
    """An HTML body's ``<a href>`` values and visible text (entities decoded)."""

    def __init__(self, source: str) -> None:
        self.hrefs: list[str] = []
        text: list[str] = []
        etree, lxml_html = _lxml()
        parser = lxml_html.HTMLParser(encoding="utf-8", huge_tree=True)  # one per read: threads
        try:
            # As UTF-8 bytes: lxml refuses a str that declares an encoding (<?xml ...?>).
            root = lxml_html.document_fromstring(source.encode("utf-8", "replace"), parser)
        except etree.ParserError:  # nothing but comments, or nothing at all
            self.text = ""
            return
        events = ("start", "end", "comment", "pi")  # a comment's own text is not shown
        for event, element in etree.iterwalk(root, events=events):
            if event == "start":
                tag = element.tag
                if tag == "a" and (href := element.get("href")):
                    self.hrefs.append(href.strip())
                if tag in _BLOCKS:
                    text.append("\n")
                if tag not in _HIDDEN and element.text:
                    text.append(element.text)
            elif element.tail and element is not root:
                text.append(element.tail)
        self.text = "".join(text)


def html_text(source: str) -> str:
    """The visible text of an HTML body (for codes and body criteria)."""
    return _Html(source).text


def links(text: str, html_body: str) -> list[str]:
    """Every http(s) link of the message: the HTML's anchors first, then the text's URLs."""
    found: list[str] = []
    if html_body:
        found += [
            h for h in _Html(html_body).hrefs if h.lower().startswith(("http://", "https://"))
        ]
    for m in _URL.finditer(text):
        url = html.unescape(m.group(0)).rstrip(_TRAILING)
        found.append(url)
    return list(dict.fromkeys(found))


def codes(text: str, pattern: CodePattern | None = None) -> list[str]:
    """One-time codes in ``text`` (see the module's docstring), each once, in order."""
    if pattern is not None:
        return list(dict.fromkeys(pattern.findall(text)))
    found: list[str] = []
    for keyword in _KEYWORD.finditer(text):
        start = max(0, keyword.start() - NEAR)
        window_after = text[keyword.end() : keyword.end() + NEAR]
        window_before = text[start : keyword.start()]
        # After the keyword first ("your code is 123456"), then before ("123456 is your code").
        for m in [*_TOKEN.finditer(window_after), *reversed(list(_TOKEN.finditer(window_before)))]:
            value = re.sub(r"[ \-]", "", m.group(0))
            if 4 <= len(value) <= 8:
                found.append(value)
                break
    return list(dict.fromkeys(found))
