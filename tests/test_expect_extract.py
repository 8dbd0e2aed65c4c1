"""What the receive API reads out of a message, on mail shaped like the real thing: multipart/
alternative, quoted-printable and base64 bodies, charsets other than UTF-8, tracking-redirect
links, codes split by spaces; and the criteria's verdicts, each naming what failed."""

from __future__ import annotations

import base64
import datetime as dt
import quopri
from dataclasses import dataclass, field

import pytest

from imapscope.expect import Criteria, PatternError, codes, compile_pattern, links, message_json
from imapscope.expect._extract import html_text
from imapscope.mime import readable
from imapscope.store import MessageView


def mail(headers: str, body: bytes) -> bytes:
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def alternative(text: bytes, html: bytes, *, encoding: str, charset: str = "utf-8") -> bytes:
    parts = []
    for kind, payload in (("plain", text), ("html", html)):
        if encoding == "quoted-printable":
            encoded = quopri.encodestring(payload)
        elif encoding == "base64":
            encoded = base64.encodebytes(payload)
        else:
            encoded = payload
        parts.append(
            f"--b1\r\nContent-Type: text/{kind}; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
            + encoded
            + b"\r\n"
        )
    return mail(
        "From: Acme <noreply@acme.test>\nTo: user@example.test\nSubject: Hello\n"
        'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b1"',
        b"".join(parts) + b"--b1--\r\n",
    )


@dataclass
class Case:
    name: str
    raw: bytes
    text_has: str = ""
    links: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


TRACKING = ("https://click.mail.acme.test/ls/click?upn=aB3-_x%2Fq&u=https%3A%2F%2Facme.test"
            "%2Fverify%3Ftoken%3Dabc%26lang%3Den")  # fmt: skip
CASES = [
    Case(
        "multipart/alternative, quoted-printable, a tracking link in the HTML",
        alternative(
            b"Welcome! Your verification code is 482 913.\nVerify: https://acme.test/v?t=1\n",
            f"<p>Welcome!</p><p>Your verification code is <b>482 913</b>.</p>"
            f'<a href="{TRACKING.replace("&", "&amp;")}">Verify your e-mail</a>'.encode(),
            encoding="quoted-printable",
        ),
        text_has="Welcome! Your verification code is 482 913.",
        links=[TRACKING, "https://acme.test/v?t=1"],
        codes=["482913"],
    ),
    Case(
        "base64 bodies",
        alternative(
            b"Use code 7781 to sign in.", b"<p>Use code <span>7781</span></p>", encoding="base64"
        ),
        text_has="Use code 7781 to sign in.",
        codes=["7781"],
    ),
    Case(
        "ISO-8859-1, German, alphanumeric code",
        alternative(
            "Ihr Bestätigungscode lautet: X7K9PQ\nGrüße".encode("iso-8859-1"),
            "<p>Ihr Bestätigungscode lautet: <b>X7K9PQ</b></p>".encode("iso-8859-1"),
            encoding="quoted-printable",
            charset="iso-8859-1",
        ),
        text_has="Ihr Bestätigungscode lautet: X7K9PQ\nGrüße",
        codes=["X7K9PQ"],
    ),
    Case(
        "Shift_JIS, Japanese",
        mail(
            "From: noreply@acme.test\nTo: user@example.test\nSubject: =?UTF-8?B?"
            + base64.b64encode("認証".encode()).decode()
            + "?=\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=shift_jis\nContent-Transfer-Encoding: base64",
            # Japanese mail writes the full-width colon.
            base64.encodebytes("認証コード：305118 (10分間有効)".encode("shift_jis")),  # noqa: RUF001
        ),
        text_has="認証コード：305118",  # noqa: RUF001
        codes=["305118"],
    ),
    Case(
        "KOI8-R, Russian, code before the word",
        mail(
            "From: noreply@acme.test\nTo: user@example.test\nSubject: x\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit",
            "Ваш код подтверждения: 9041-22".encode("koi8-r"),
        ),
        text_has="Ваш код подтверждения",
        codes=["904122"],
    ),
    Case(
        "HTML only, entities, links with trailing punctuation in the text",
        mail(
            "From: noreply@acme.test\nTo: user@example.test\nSubject: x\nMIME-Version: 1.0\n"
            "Content-Type: text/html; charset=utf-8",
            b'<div>Reset your password: <a href="https://acme.test/reset?a=1&amp;b=2">reset'
            b"</a>.</div><div>Or paste https://acme.test/paste?x=y.</div>",
        ),
        links=["https://acme.test/reset?a=1&b=2"],
    ),
    Case(
        "plain text: no code without a keyword, none in a phone number or a date",
        mail(
            "From: noreply@acme.test\nTo: user@example.test\nSubject: x",
            b"Order 2026-12-01 shipped. Call 555 1234. See (https://acme.test/orders/42).",
        ),
        text_has="Order 2026-12-01 shipped.",
        links=["https://acme.test/orders/42"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_real_world_shaped_mail(case: Case) -> None:
    meta = MessageView(5, (), dt.datetime(2026, 12, 2, tzinfo=dt.UTC), len(case.raw),
                       {"subject": "Hello"}, "INBOX")  # fmt: skip
    found = message_json(meta, readable(case.raw), None)
    assert case.text_has in found["text"] + found["html"]
    assert found["links"] == case.links
    assert found["codes"] == case.codes
    assert found["problems"] == []


def test_a_custom_code_pattern_replaces_the_rule() -> None:
    pattern = compile_pattern(r"PIN-([A-Z]{3}[0-9]{3})")
    assert codes("Your PIN-ABC123 and PIN-XYZ789; code 111111", pattern) == ["ABC123", "XYZ789"]
    assert codes("no group here: 42-42", compile_pattern(r"[0-9]+-[0-9]+")) == ["42-42"]


@pytest.mark.parametrize("bad", ["(a", r"(a)\1", "(?=x)", "[z-a]"])
def test_a_bad_pattern_says_why(bad: str) -> None:
    with pytest.raises(PatternError, match="does not compile"):
        compile_pattern(bad)


def test_links_are_http_only_and_once() -> None:
    html = ('<a href="mailto:x@y.test">m</a><a href="javascript:alert(1)">j</a>'
            '<a href="https://a.test/1">1</a><a href="https://a.test/1">again</a>')  # fmt: skip
    assert links("https://a.test/1 and http://b.test/2,", html) == [
        "https://a.test/1", "http://b.test/2",
    ]  # fmt: skip


def test_criteria_name_what_failed_and_how() -> None:
    criteria = Criteria.of({"from": "acme.test", "to": "signup", "subject": "Verify your account",
                            "header": {"X-Campaign": "/^welcome-[0-9]+$/"}})  # fmt: skip
    envelope = {"from": ["noreply@other.test"], "from_name": "Other", "to": ["bob@example.test"],
                "subject": "Verify your acct"}  # fmt: skip
    misses = criteria.judge_envelope(envelope)
    assert [m.criterion for m in misses] == ["from", "to", "subject"]
    assert misses[2].said == (
        "subject 'Verify your acct', not containing 'Verify your account' (close: 91% alike)"
    )
    raw = mail("From: a@acme.test\nTo: signup@x.test\nSubject: s\nX-Campaign: welcome-x", b"hi")
    content = criteria.judge_content(readable(raw))
    assert [(m.criterion, m.got) for m in content] == [("header:X-Campaign", "welcome-x")]
    missing = Criteria.of({"header": {"X-None": "y"}}).judge_content(readable(raw))
    assert [m.said for m in missing] == ["no X-None header"]
    assert Criteria.of({"body": "/^hi$/"}).judge_content(readable(raw)) == []


@pytest.mark.parametrize(
    "shape", [b"<a ", b"<!--", b"<!-->", b"<", b"<![CDATA[", b"<div>"],
    ids=["unclosed-tags", "unclosed-comments", "empty-comments", "bare-lt", "cdata", "nesting"],
)  # fmt: skip
def test_a_megabyte_of_unclosed_markup_is_read(shape: bytes) -> None:
    """1 MiB of markup that never closes. The standard library's html.parser took quadratic time
    on such input (64 KiB of '<a ' took 36 s; a megabyte, hours, on serve's event loop): here
    the suite's timeout is the bound. lxml reads each in milliseconds."""
    source = (shape * (1024 * 1024 // len(shape))).decode()
    assert links("", source + '<a href="https://x.test/after">x</a>') in (
        [],
        ["https://x.test/after"],
    )
    html_text(source)


def test_html_text_is_what_a_reader_sees() -> None:
    source = (
        '<?xml version="1.0" encoding="UTF-8"?><html><head><title>T</title>'
        "<style>p {color: red}</style></head><body><!-- a note -->Hello<br>"
        "<p>your code&nbsp;is <b>424242</b></p><script>var code = 111111;</script>"
        '<a href=" https://x.test/v?a=1&amp;b=2 ">verify</a></body></html>'
    )
    assert html_text(source) == "Hello\n\nyour code\xa0is 424242verify"
    assert links("", source) == ["https://x.test/v?a=1&b=2"]
    assert html_text("<!-- nothing but a comment -->") == ""
    assert html_text("") == ""
