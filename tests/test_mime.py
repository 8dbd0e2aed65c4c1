"""A fetched message made readable (imapscope.mime), whatever its structure: the web UI's
message page and the receive API's judging read every message through it, so a message it
cannot read must give a readable with its problems listed, never an exception (one was an error
page, or an expectation that could not be judged)."""

from __future__ import annotations

import random

from imapscope.expect._extract import codes, html_text, links
from imapscope.mime import NO_PARTS, TOO_DEEP, attachments, parse, payload, readable

HEAD = b"From: a@example.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"


def test_a_multipart_holding_no_parts_is_read_and_the_text_beside_it_found() -> None:
    """A multipart whose boundary never comes holds text, not parts: the standard library's
    get_body raised AttributeError at it. The text/plain part beside it is still the body."""
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
        b'--o\r\nContent-Type: multipart/related; boundary="never"\r\n\r\nlost\r\n'
        b"--o\r\nContent-Type: text/plain\r\n\r\nthe code is 424242\r\n--o--\r\n"
    )
    found = readable(raw)
    assert found.text.strip() == "the code is 424242"
    assert found.problems == [NO_PARTS]
    assert codes(found.text) == ["424242"]


def test_an_attachment_holding_8bit_text_in_a_partless_multipart_gives_its_bytes() -> None:
    """A multipart holding no parts keeps its text as the parser read it, 8-bit bytes
    replaced by U+FFFD, which ``as_bytes`` cannot write as ASCII: UnicodeEncodeError. Its text
    is given instead, in UTF-8."""
    inner = b"\xff\xfe caf\xc3\xa9"
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
        b"--o\r\nContent-Type: multipart/alternative; boundary=i\r\n"
        b"Content-Disposition: attachment\r\n\r\n"
        b"--i\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n"
        + inner
        + b"\r\n--i--\r\n--o--\r\n"
    )
    found = readable(raw)
    assert [a.content_type for a in found.attachments] == ["multipart/alternative"]
    [part] = attachments(parse(raw))
    assert "\ufffd\ufffd caf".encode() in payload(part)
    assert found.attachments[0].size == len(payload(part))


def test_a_message_nested_past_the_parser_s_recursion_is_named_not_raised() -> None:
    """Multiparts nested 5,000 deep, or a From of 100,000 opening parentheses: the standard
    library's parser recursed past Python's limit (RecursionError)."""
    nested = HEAD + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(5000)
    )
    comments = b"From: " + b"(" * 100_000 + b"\r\nSubject: x\r\n\r\nbody\r\n"
    for raw in (nested, comments):
        assert readable(raw).problems == [TOO_DEEP]


#: What a broken or hostile sender puts in a message's structure.
TYPES = [
    "text/plain", "text/html", "multipart/mixed", "multipart/alternative", "message/rfc822",
    "application/octet-stream", 'text/plain; charset="x-unknown"', "text/plain; charset=utf-7",
    'text/html; charset="=?utf-8?q?x?="', "multipart/mixed; boundary=",
    'multipart/mixed; boundary=""', "text/plain; charset=ut\xe9f-8",
    'multipart/related; boundary="b"; type=text/html', "text/plain; format=flowed; delsp=yes",
    'image/png; name="=?utf-8?b?\xff\xfe?="', "text/plain; charset*=utf-8''%ff%fe",
    "multipart/report; report-type=delivery-status; boundary=b",
]  # fmt: skip
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bas e64", ""]
BODIES = [
    b"hello http://example.test/a?b=1 code 123456", b"=C3=A9=\r\n=XY=", b"aGVsbG8===",
    b"!!!notbase64", b"\xff\xfe\x00\x01", b"<a href='http://x.test/\x00'>x</a><img src=data:,>",
    b"--b\r\nContent-Type: text/plain\r\n\r\nin part\r\n--b--", b"--b\r\n\r\n--b\r\n--b--",
    b"begin 644 x\r\nM86)C\r\nend", b'<html><a href="javascript:alert(1)">x</a>' + b"<p>" * 200,
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody",
]  # fmt: skip
DISPOSITIONS = ["", "attachment", 'attachment; filename="a.txt"',
                "attachment; filename*=utf-8''%E2%82%AC.txt", "inline; filename==?utf-8?b?AAAA?=",
                'attachment; filename="\x00"']  # fmt: skip


def _part(rng: random.Random, depth: int) -> bytes:
    kind = rng.choice(TYPES)
    head = f"Content-Type: {kind}\r\nContent-Transfer-Encoding: {rng.choice(ENCODINGS)}\r\n"
    if disposition := rng.choice(DISPOSITIONS):
        head += f"Content-Disposition: {disposition}\r\n"
    if not kind.startswith("multipart") or depth >= 3:
        return head.encode("utf-8", "surrogateescape") + b"\r\n" + rng.choice(BODIES)
    boundary = "b" if "boundary=b" in kind or 'boundary="b"' in kind else "bb"
    if "boundary" not in kind:
        head = head.replace(kind, f"{kind}; boundary=bb")
    body = b"".join(
        b"--" + boundary.encode() + b"\r\n" + _part(rng, depth + 1) + b"\r\n"
        for _ in range(rng.randint(0, 3))
    )
    if rng.random() < 0.7:  # else the closing boundary never comes
        body += b"--" + boundary.encode() + b"--\r\n"
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


def test_any_structure_gives_a_readable_never_an_exception() -> None:
    """2,000 messages built from the pieces above, nested up to three deep (seeded). Before:
    14 of 20,000 raised (AttributeError from get_body, UnicodeEncodeError from as_bytes)."""
    rng = random.Random(9)
    for _ in range(2000):
        subject = rng.choice(
            ["=?x?q?y?=", "=?utf-8?b?w6k?=", "plain", "=?utf-8?q?" + "a" * 500 + "?="]
        )
        date = rng.choice(
            ["Mon, 1 Jan 2024 00:00:00 +0000", "garbage", "31 Feb 2024 99:99:99 +9999"]
        )
        raw = (
            f"From: =?utf-8?q?A=ZZ?= <a@b>\r\nSubject: {subject}\r\nDate: {date}\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode() + _part(rng, 0)
        found = readable(raw)
        links(found.text, found.html)
        codes(found.text)
        html_text(found.html)
        for part in attachments(parse(raw)):
            payload(part)
