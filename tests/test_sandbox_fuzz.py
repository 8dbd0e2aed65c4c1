"""The sandbox against a client that sends damaged commands: real commands (of every kind the
sandbox implements, with literals, lists and extensions' arguments) with 1-3 changes, each a
byte replaced, 1-4 deleted or 1-3 inserted. Dovecot answers what does not parse with BAD and
goes on; so must the sandbox: every damaged command is followed by a NOOP, whose answer must
come on the same connection, and nothing may be logged as an error (an exception out of a session).

A damaged command may legitimately leave the server waiting (a literal announced longer than
what follows, an AUTHENTICATE or IDLE waiting for the client): the NOOP's answer does not come
within a short wait, and the test reconnects. Those are counted, not failed.

Found by this, before it was a test (scratch runs of 3,000 commands): sessions ended without an
answer on a bad number in QRESYNC, CHANGEDSINCE or ID, on a bare CR, on a tag no response can
carry, and a bad message set among SEARCH keys answered as a server bug.
"""

from __future__ import annotations

import logging
import random
import socket
from typing import BinaryIO

import pytest

from imapscope.sandbox import SandboxServer, build_store
from tests.hostile import damaged
from tests.scripted import running

PASSWORD = "pw-alice"
COMMANDS = 1500
#: How long the NOOP's answer may take before the command is taken as leaving the server
#: waiting for more (a literal, a continuation).
WAIT = 0.5
SAMPLES = [
    b'LOGIN alice "pass word"',
    b'SELECT "Entw&APw-rfe" (CONDSTORE)',
    b"UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE) (CHANGEDSINCE 12345)",
    b"FETCH 1:5,7 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> BINARY[1] BODYSTRUCTURE)",
    b'UID SEARCH CHARSET UTF-8 OR SUBJECT "x" FROM {3}\r\nbob SINCE 1-Jan-2024 NOT DELETED',
    b'APPEND INBOX (\\Seen) "01-Jan-2024 09:02:00 +0000" {11}\r\nhello world',
    b"UID STORE 1:3 +FLAGS.SILENT (\\Deleted $Junk)",
    b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)",
    b'LIST (SUBSCRIBED) "" ("INBOX" "Sent*") RETURN (STATUS (MESSAGES) CHILDREN)',
    b"ENABLE CONDSTORE UTF8=ACCEPT",
    b"IDLE",
    b"AUTHENTICATE PLAIN AGFsaWNlAHB3",
    b"UID EXPUNGE 4:7",
    b"COPY 1:2 Archive",
    b'UID MOVE 3 "Sent Items"',
    b'ID ("name" "x" "version" NIL)',
    b"GETQUOTAROOT INBOX",
    b"NAMESPACE",
    b"UID SEARCH RETURN (MIN MAX COUNT) MODSEQ 5 UID 1:*",
    b'SEARCH BEFORE 1-Feb-2024 LARGER 1000 SMALLER 99999 HEADER "X-Spam" "yes" KEYWORD $Junk',
    b'UID SEARCH MODSEQ "/flags/\\draft" all 620162338',
    b"SEARCH OR (FROM a TO b) NOT (SEEN) 2:4,*",
    b"UID SORT (REVERSE ARRIVAL SUBJECT) UTF-8 ALL",
    b"THREAD REFERENCES UTF-8 SINCE 1-Jan-2024",
    b"FETCH 1 (BINARY.PEEK[1.2]<0.10> BINARY.SIZE[1] BODY[1.MIME] RFC822.HEADER)",
    b"APPEND Drafts (\\Draft) {5+}\r\nhello",
    b'SETQUOTA "" (STORAGE 512)',
    b"UID STORE 1:3 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Seen)",
    b'CREATE "Archive/2024" (USE (\\Archive))',
    b'RENAME old "new name"',
    b'GETQUOTA ""',
    b"UNSELECT",
    b"CHECK",
    b"SEARCH CHARSET UTF-8 SUBJECT {4+}\r\nf\xc3\xbcr",
    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)",
    b"SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
]


def _until(reader: BinaryIO, prefix: bytes) -> list[bytes] | None:
    """The lines up to the one starting with ``prefix``, or None when the server hangs up
    first."""
    lines = []
    while line := reader.readline():
        lines.append(line)
        if line.startswith(prefix):
            return lines
    return None


def test_damaged_commands_are_answered_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    server = SandboxServer(build_store([("alice", PASSWORD)], demo_messages=12), port=0)
    rng = random.Random(11)
    ended: list[bytes] = []
    waiting = bad = 0

    def connect() -> tuple[socket.socket, BinaryIO]:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f'a LOGIN alice "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not reader.readline().startswith(b"b "):
            pass
        sock.settimeout(WAIT)
        return sock, reader

    with running(server):
        sock, reader = connect()
        for n in range(COMMANDS):
            tag = b"z%d" % n
            sent = tag + b" " + damaged(rng, rng.choice(SAMPLES)) + b"\r\n"
            try:
                sock.sendall(sent + tag + b"n NOOP\r\n")
                lines = _until(reader, tag + b"n ")
            except TimeoutError:
                waiting += 1
                lines = None
            else:
                if lines is None:
                    ended.append(sent)
                else:
                    bad += any(line.startswith(tag + b" BAD ") for line in lines)
                    continue
            sock.close()
            sock, reader = connect()
        sock.close()
    assert ended == []
    assert bad >= COMMANDS // 4, bad  # the damage reached the parser
    assert waiting <= COMMANDS // 20, waiting
    assert [r.getMessage() for r in caplog.records] == []
