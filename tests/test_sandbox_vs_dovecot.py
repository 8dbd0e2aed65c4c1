"""The sandbox answers as Dovecot does: the same messages appended to both, the same FETCH asked,
the answers compared byte for byte (after the parts that must differ, like UIDs, are set aside).
Dovecot 2.3 is the reference the sandbox issue names; a difference here is a sandbox bug or a
deliberate difference documented in docs/sandbox.md."""

from __future__ import annotations

import contextlib
import imaplib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.conftest import Sandbox
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
    with scratch_mailbox(connection, "fidelity") as mailbox:
        assert connection.append(mailbox, None, None, message)[0] == "OK"
        connection.select(mailbox)
        answers = []
        for item in ITEMS:
            lines = raw(connection, f"FETCH 1 ({item})")
            answers.append(b"".join(lines[:-1]) + lines[-1].split(b" ")[0])
        connection.close()
        return answers


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
    with sandbox.client() as connection:
        yield connection


@contextlib.contextmanager
def scratch_mailbox(connection: imaplib.IMAP4, prefix: str) -> Iterator[str]:
    """A new mailbox for one comparison, deleted afterwards (Dovecot's rig is shared)."""
    mailbox = f"{prefix}-{uuid.uuid4().hex[:8]}"
    assert connection.create(mailbox)[0] == "OK"
    try:
        yield mailbox
    finally:
        connection.delete(mailbox)


def assert_same(asked: Sequence[str], theirs: list[bytes], ours: list[bytes]) -> None:
    """Every answer the sandbox gave equals Dovecot's; the message lists each one that differs."""
    differences = [
        f"{question}:\n  dovecot: {dovecot_said!r}\n  sandbox: {sandbox_said!r}"
        for question, dovecot_said, sandbox_said in zip(asked, theirs, ours, strict=True)
        if sandbox_said != dovecot_said
    ]
    assert not differences, "\n".join(differences)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_fetch_answers_are_dovecots(
    name: str, dovecot_session: imaplib.IMAP4, sandbox_session: imaplib.IMAP4
) -> None:
    message = MESSAGES[name]
    theirs = _fetch(dovecot_session, message)
    ours = _fetch(sandbox_session, message)
    assert_same(ITEMS, theirs, ours)


# --- SEARCH RETURN, SORT and THREAD over a mailbox of conversations ---------------------------


def _mail(n: int, subject: str, date: str, sender: str, to: str, ids: str = "") -> bytes:  # noqa: PLR0917
    return (
        f"Message-ID: <m{n}@example.com>\r\nDate: {date}\r\nFrom: {sender}\r\nTo: {to}\r\n"
        f"Subject: {subject}\r\n{ids}\r\nbody {'x' * (n * 7 % 23)}\r\n"
    ).encode()


CONVERSATIONS = [
    _mail(1, "Plans", "Mon, 1 Jan 2024 10:00:00 +0000", "Zed <zed@example.com>", "b@x.org"),
    _mail(2, "Re: Plans", "Mon, 1 Jan 2024 11:00:00 +0000", "amy@example.com", "a@x.org",
          "In-Reply-To: <m1@example.com>\r\n"),
    _mail(3, "[list] Re: Plans (fwd)", "Mon, 1 Jan 2024 09:00:00 -0500", "Bob <bob@example.com>",
          "c@x.org", "References: <m1@example.com> <m2@example.com>\r\n"),
    _mail(4, "Fwd: other", "Tue, 2 Jan 2024 08:00:00 +0100", "carl@example.com", "a@x.org"),
    _mail(5, "Re: other", "Tue, 2 Jan 2024 09:00:00 +0000", "dan@example.com", "d@x.org",
          "References: <gone@example.com>\r\n"),
    _mail(6, "other", "Wed, 3 Jan 2024 08:00:00 +0000", "eve@example.com", "b@x.org"),
    _mail(7, "RE: [Fwd: Plans]", "Thu, 4 Jan 2024 08:00:00 +0000", "fay@example.com", "a@x.org",
          "References: <gone@example.com> <m3@example.com>\r\n"),
    _mail(8, "lonely", "garbage date", "gus@example.com", "e@x.org"),
    _mail(9, "Re: lonely", "Fri, 5 Jan 2024 08:00:00 +0000", "hal@example.com", "e@x.org",
          "References: <nowhere@example.com>\r\n"),
    _mail(10, "Re: lonely", "Fri, 5 Jan 2024 09:00:00 +0000", "ian@example.com", "f@x.org",
          "References: <nowhere@example.com>\r\n"),
]  # fmt: skip
SEARCHES = (
    "SEARCH RETURN (MIN MAX COUNT) SUBJECT plans",
    "SEARCH RETURN () ALL",
    "UID SEARCH RETURN (ALL COUNT) FROM example",
    "SEARCH RETURN (MIN) SUBJECT nothing-matches",
    "SEARCH RETURN (COUNT) SUBJECT nothing-matches",
    "SEARCH RETURN (SAVE) SUBJECT other",
    "SEARCH $",
    "FETCH $ (UID)",
    "SEARCH RETURN (SAVE MIN) SUBJECT lonely",
    "UID SEARCH UID $",
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (FROM ARRIVAL) UTF-8 ALL",
    "SORT (TO REVERSE SIZE) UTF-8 ALL",
    "UID SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (SIZE) UTF-8 SUBJECT plans",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "UID THREAD REFERENCES UTF-8 NOT SUBJECT lonely",
    "SORT (NOSUCHKEY) UTF-8 ALL",
)


def _converse(connection: imaplib.IMAP4) -> tuple[list[str], list[bytes]]:
    with scratch_mailbox(connection, "threads") as mailbox:
        for message in CONVERSATIONS:
            assert connection.append(mailbox, None, None, message)[0] == "OK"
        connection.select(mailbox)
        answers = []
        for command in SEARCHES:
            lines = raw(connection, command)
            untagged = [re.sub(rb'\(TAG "[^"]*"\)', b"(TAG)", line) for line in lines[:-1]]
            uids = re.compile(rb"\d+")  # UIDs differ between the servers: count them only
            if command.startswith("UID") or "(UID)" in command:
                untagged = [uids.sub(b"n", line) for line in untagged]
            answers.append(b"".join(untagged) + lines[-1].split(b" ")[0])
        connection.close()
        return list(SEARCHES), answers


# --- MULTIAPPEND and CATENATE -----------------------------------------------------------------


def _send(connection: imaplib.IMAP4, *pieces: bytes | str) -> list[bytes]:
    """A command of text and literals (bytes, sent as LITERAL+), then its answer's lines."""
    tag = connection._new_tag().decode()
    wire = tag.encode() + b" "
    for piece in pieces:
        wire += piece.encode() if isinstance(piece, str) else b"{%d+}\r\n" % len(piece) + piece
    connection.send(wire + b"\r\n")
    lines = []
    while not (line := connection.readline()).startswith(tag.encode()):
        lines.append(line)
    return [*lines, line.removeprefix(tag.encode() + b" ")]


def _appends(connection: imaplib.IMAP4) -> tuple[list[str], list[bytes]]:
    with scratch_mailbox(connection, "appends") as mailbox:
        status = connection.status(mailbox, "(UIDVALIDITY)")[1][0]
        validity = re.search(rb"UIDVALIDITY (\d+)", status).group(1).decode()  # type: ignore[union-attr]
        answers = []
        multi = _send(
            connection,
            f"APPEND {mailbox} (\\Seen) ",
            FOLDED,
            " ",
            SIMPLE,
            " (\\Flagged) ",
            ADDRESSES,
        )
        answers.append(multi[-1].split(b" ")[0])
        url = f"/{mailbox};UIDVALIDITY={validity}/;UID="
        catenated = _send(
            connection,
            f"APPEND {mailbox} CATENATE (TEXT ",
            b"Subject: put together\r\n\r\n",
            f' URL "{url}1/;SECTION=2.TEXT" TEXT ',
            b"\r\n--\r\n",
            f' URL "{url}2/;SECTION=TEXT" URL "{url}3/;PARTIAL=0.20")',
        )
        answers.append(catenated[-1].split(b" ")[0])
        bad_url = _send(connection, f'APPEND {mailbox} CATENATE (URL "{url}99")')
        answers.append(b" ".join(bad_url[-1].split(b" ")[:2]))  # NO [BADURL
        none = _send(connection, f"APPEND {mailbox} (\\Seen) ", b"", " ", SIMPLE)  # all or none
        answers.append(none[-1].split(b" ")[0])
        connection.select(mailbox)
        fetched = raw(connection, "FETCH 1:* (FLAGS BODY.PEEK[])")
        answers.append(b"".join(fetched[:-1]))
        connection.close()
        asked = ["MULTIAPPEND", "CATENATE", "CATENATE of a bad URL", "MULTIAPPEND with an empty "
                 "message (all or none)", "FETCH what was appended"]  # fmt: skip
        return asked, answers


# --- LIST-EXTENDED ----------------------------------------------------------------------------


def _lists(connection: imaplib.IMAP4) -> tuple[list[str], list[bytes]]:
    found = re.search(rb'"(.)"', connection.list('""', '""')[1][0])  # type: ignore[arg-type]
    assert found is not None
    sep = found.group(1).decode()  # Dovecot's rig uses ".", the sandbox "/"
    top = "lx" + uuid.uuid4().hex[:8]
    names = [f"{top}{sep}a", f"{top}{sep}a{sep}b", f"{top}{sep}c", f"{top}{sep}d"]
    for name in names:
        assert connection.create(name)[0] == "OK"
    try:
        for name in (names[1], names[2]):
            assert connection.subscribe(name)[0] == "OK"
        t = top + sep
        commands = (
            f'LIST (SUBSCRIBED) "" "{t}*"',
            f'LIST (SUBSCRIBED RECURSIVEMATCH) "" "{t}%"',
            f'LIST "" ("{t}a" "{t}c" "{t}nothing") RETURN (SUBSCRIBED CHILDREN)',
            f'LIST "" "{t}%" RETURN (STATUS (MESSAGES UIDNEXT))',
            f'LIST (REMOTE) "" "{t}d"',
            'LIST (RECURSIVEMATCH) "" "*"',
            'LIST (NO-SUCH-OPTION) "" "*"',
            f'LSUB "" "{t}%"',
        )
        answers = []
        for command in commands:
            lines = raw(connection, command)
            text = b"".join(sorted(lines[:-1])).replace(top.encode(), b"top")
            for old, new in ((f'"{sep}"', '"/"'), (f"top{sep}", "top/"), (f"a{sep}b", "a/b")):
                text = text.replace(old.encode(), new.encode())
            answers.append(text + lines[-1].split(b" ")[0])
        return [c.replace(top, "top").replace(sep, "/") for c in commands], answers
    finally:
        for name in (names[1], names[2]):
            connection.unsubscribe(name)
        for name in reversed(names):
            connection.delete(name)
        connection.delete(top)


@pytest.mark.parametrize(
    "scenario", [_converse, _appends, _lists],
    ids=["search-sort-thread", "multiappend-catenate", "list-extended"],
)  # fmt: skip
def test_command_answers_are_dovecots(
    scenario: Callable[[imaplib.IMAP4], tuple[list[str], list[bytes]]],
    dovecot_session: imaplib.IMAP4,
    sandbox_session: imaplib.IMAP4,
) -> None:
    asked, theirs = scenario(dovecot_session)
    _, ours = scenario(sandbox_session)
    assert_same(asked, theirs, ours)
