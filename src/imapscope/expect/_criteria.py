"""An expectation's criteria and how one message is judged against them: each criterion that
fails is named with what was expected and what the message had (a near miss says why)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from imapscope.expect._extract import CodePattern, PatternError, compile_pattern, html_text
from imapscope.mime import Readable

__all__ = ["Criteria", "Miss", "PatternError", "TextRule"]

#: Longest criterion value accepted (a subject, a body fragment, a pattern).
MAX_CRITERION = 1000
#: How much of a message's text a near miss quotes.
QUOTED = 120


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"


@dataclasses.dataclass(frozen=True)
class TextRule:
    """A case-insensitive substring, or a regular expression (RE2) when written ``/.../``."""

    source: str
    pattern: CodePattern | None

    @classmethod
    def of(cls, source: str, what: str) -> TextRule:
        if len(source) > MAX_CRITERION:
            raise PatternError(f"{what} is {len(source)} characters long; at most {MAX_CRITERION}")
        if len(source) >= 2 and source.startswith("/") and source.endswith("/"):
            try:
                return cls(source, compile_pattern(source[1:-1]))
            except PatternError as exc:
                raise PatternError(f"{what}: {exc}") from exc
        return cls(source, None)

    def test(self, text: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text)
        return self.source.casefold() in text.casefold()

    def verb(self) -> str:
        """What a text must do to pass: "contain 'x'" or "match /x/"."""
        if self.pattern is not None:
            return f"match {self.source}"
        return f"contain {self.source!r}"

    def said(self) -> str:
        return (
            f"matching {self.source}" if self.pattern is not None else f"containing {self.source!r}"
        )


def body_text(message: Readable) -> str:
    """The text a body criterion and the code rule read: the text part and the HTML part's
    visible text, without the whitespace around them."""
    parts = (message.text, html_text(message.html) if message.html else "")
    return "\n".join(p.strip() for p in parts if p.strip())


@dataclasses.dataclass(frozen=True)
class Miss:
    criterion: str  # folder | from | to | subject | body | header:<Name> | read | exclusive
    expected: str
    got: str
    said: str  # the whole reason, for people

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Criteria:
    sender: TextRule | None = None
    recipient: TextRule | None = None
    subject: TextRule | None = None
    body: TextRule | None = None
    headers: tuple[tuple[str, TextRule], ...] = ()

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Criteria:
        """From the API's criteria (``from``, ``to``, ``subject``, ``body``, ``header``);
        :class:`PatternError` says which one is wrong and how."""

        def rule(name: str) -> TextRule | None:
            value = raw.get(name)
            return None if value in (None, "") else TextRule.of(str(value), name)

        headers = tuple(
            (str(k), TextRule.of(str(v), f"header {k}"))
            for k, v in (raw.get("header") or {}).items()
        )
        return cls(rule("from"), rule("to"), rule("subject"), rule("body"), headers)

    @property
    def needs_body(self) -> bool:
        return self.body is not None or bool(self.headers)

    def judge_envelope(self, envelope: Mapping[str, Any]) -> list[Miss]:
        """The criteria the stored envelope can decide (from, to, subject)."""
        misses: list[Miss] = []
        senders = [*envelope.get("from", []), envelope.get("from_name") or ""]
        if self.sender is not None and not any(self.sender.test(a) for a in senders if a):
            got = ", ".join(envelope.get("from", [])) or "(no sender)"
            misses.append(Miss("from", self.sender.source, got,
                               f"from {got}, not {self.sender.said()}"))  # fmt: skip
        recipients = list(envelope.get("to", []))
        if self.recipient is not None and not any(self.recipient.test(a) for a in recipients):
            got = ", ".join(recipients) or "(no recipient)"
            misses.append(Miss("to", self.recipient.source, got,
                               f"to {got}, not {self.recipient.said()}"))  # fmt: skip
        subject = envelope.get("subject") or ""
        if self.subject is not None and not self.subject.test(subject):
            said = f"subject {_quote(subject)!r}, not {self.subject.said()}"
            if self.subject.pattern is None and subject:
                ratio = difflib.SequenceMatcher(
                    None, subject.casefold(), self.subject.source.casefold()
                ).ratio()
                if ratio >= 0.6:
                    said += f" (close: {round(ratio * 100)}% alike)"
            misses.append(Miss("subject", self.subject.source, _quote(subject), said))
        return misses

    def judge_content(self, message: Readable, cc: Sequence[str] = ()) -> list[Miss]:
        """The criteria that need the message itself (body, headers)."""
        misses: list[Miss] = []
        if self.body is not None:
            text = body_text(message)
            if not self.body.test(text):
                misses.append(Miss("body", self.body.source, _quote(text),
                                   f"the body does not {self.body.verb()}"))  # fmt: skip
        headers: dict[str, list[str]] = {}
        for name, value in message.all_headers:
            headers.setdefault(name.lower(), []).append(value)
        for name, rule in self.headers:
            values = headers.get(name.lower())
            if not values:
                misses.append(Miss(f"header:{name}", rule.source, "",
                                   f"no {name} header"))  # fmt: skip
            elif not any(rule.test(v) for v in values):
                got = _quote(" | ".join(values))
                misses.append(Miss(f"header:{name}", rule.source, got,
                                   f"header {name} is {got!r}, not {rule.said()}"))  # fmt: skip
        return misses
