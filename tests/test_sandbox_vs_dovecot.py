"""The sandbox answers as Dovecot does: the same messages appended to both, the same FETCH asked,
the answers compared byte for byte (after the parts that must differ, like UIDs, are set aside).
Dovecot 2.3 is the reference the sandbox issue names; a difference here is a sandbox bug or a
deliberate difference documented in docs/sandbox.md."""

from __future__ import annotations

import imaplib
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, Sandbox
from tests.servers.rig import RunningServer, TestCA
from tests.test_sandbox_fidelity import ADDRESSES, FOLDED, raw

ITEMS = (
    "BODYSTRUCTURE",
    "BODY",
    "ENVELOPE",
    "RFC822.SIZE",
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2.1]",
    "BODY.PEEK[2.2]",
    "BODY.PEEK[2.2.MIME]",
    "BODY.PEEK[3.1]",
    "BODY.PEEK[3.1.TEXT]",
    "BODY.PEEK[2.HEADER.FIELDS (SUBJECT FROM)]",
    "BODY.PEEK[HEADER.FIELDS (X-NOT-THERE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]",
    "BODY.PEEK[1.HEADER]",
    "BODY.PEEK[9]",
    "BINARY.PEEK[1]",
    "BINARY.SIZE[1]",
    "BODY.PEEK[]<5.10>",
)
SIMPLE = b"Subject: plain\r\n\r\nline one\r\nline two\r\n"
NO_HEADER_END = b"Subject: only a header\r\n"
RFC2231 = (
    b"Content-Type: application/x-stuff;\r\n"
    b" title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
    b" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
    b' title*2="isn\'t it!"\r\n'
    b'Content-Disposition: attachment; filename="a b.txt"\r\n'
    b"Content-Language: en, de\r\n"
    b"\r\n"
    b"data\r\n"
)
UNCLOSED = (
    b"Content-Type: multipart/mixed; boundary=out (a comment)\r\n\r\n"
    b"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
    b'--in\r\nContent-Type: text/plain (comment); charset="iso-8859-1"\r\n\r\nA\r\n'
    b"--in--\r\ninner epilogue\r\n"
    b"--out\r\nContent-Type: message/rfc822\r\n\r\nSubject: no body"
)
MESSAGES = {"unclosed": UNCLOSED, "folded": FOLDED, "addresses": ADDRESSES, "simple": SIMPLE,
            "no-header-end": NO_HEADER_END, "rfc2231": RFC2231}  # fmt: skip


def _fetch(connection: imaplib.IMAP4, message: bytes) -> list[bytes]:
    mailbox = "fidelity-" + uuid.uuid4().hex[:8]
    assert connection.create(mailbox)[0] == "OK"
    try:
        assert connection.append(mailbox, None, None, message)[0] == "OK"
        connection.select(mailbox)
        answers = []
        for item in ITEMS:
            lines = raw(connection, f"FETCH 1 ({item})")
            answers.append(b"".join(lines[:-1]) + lines[-1].split(b" ")[0])
        connection.close()
        return answers
    finally:
        connection.delete(mailbox)


@pytest.fixture
def dovecot_session(dovecot: RunningServer, test_ca: TestCA) -> Iterator[imaplib.IMAP4]:
    connection = imaplib.IMAP4_SSL(
        dovecot.host, dovecot.tls_port, ssl_context=test_ca.client_context()
    )
    connection.login("alice", dovecot.users["alice"])
    yield connection
    connection.logout()


@pytest.fixture
def sandbox_session(sandbox: Sandbox) -> Iterator[imaplib.IMAP4]:
    connection = imaplib.IMAP4("127.0.0.1", sandbox.server.port)
    connection.login("alice", PASSWORD)
    yield connection
    connection.logout()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_fetch_answers_are_dovecots(
    name: str, dovecot_session: imaplib.IMAP4, sandbox_session: imaplib.IMAP4
) -> None:
    message = MESSAGES[name]
    theirs = _fetch(dovecot_session, message)
    ours = _fetch(sandbox_session, message)
    differences = [
        f"{item}:\n  dovecot: {dovecot_said!r}\n  sandbox: {sandbox_said!r}"
        for item, dovecot_said, sandbox_said in zip(ITEMS, theirs, ours, strict=True)
        if sandbox_said != dovecot_said
    ]
    assert not differences, "\n".join(differences)
