"""The sandbox behaves as Dovecot does where clients look closely (RFC 3501/9051; where the RFC
is loose, Dovecot 2.3 is the reference). Each test here failed on the sandbox before its fix."""

from __future__ import annotations

import base64
import imaplib
import re
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, Sandbox


def _logged_in(sandbox: Sandbox) -> Iterator[imaplib.IMAP4]:
    with sandbox.client() as connection:
        yield connection


client = pytest.fixture(_logged_in, name="client")
other = pytest.fixture(_logged_in, name="other")  # a second session of the same user


def flags_of(client: imaplib.IMAP4, message: str) -> str:
    typ, data = client.fetch(message, "(FLAGS)")
    assert typ == "OK"
    return str(data[0])


# --- 1. system flags are case-insensitive (RFC 3501 §2.3.2) ----------------------------------


def test_system_flags_in_any_case_are_the_system_flags(client: imaplib.IMAP4) -> None:
    client.select("INBOX")
    typ, _ = client.store("1", "+FLAGS", r"(\deleted \SEEN)")
    assert typ == "OK"
    shown = flags_of(client, "1")
    assert "\\Deleted" in shown
    assert "\\Seen" in shown
    assert "\\deleted" not in shown  # not stored as a keyword
    assert client.search(None, "DELETED")[1] == [b"1"]
    client.store("1", "-FLAGS", r"(\seen)")
    assert "\\Seen" not in flags_of(client, "1")
    typ, data = client.expunge()
    assert data == [b"1"]  # EXPUNGE removed it
    typ, data = client.select("INBOX")
    assert data == [b"11"]


def test_append_flags_and_status_unseen_ignore_case(client: imaplib.IMAP4) -> None:
    before = client.status("INBOX", "(MESSAGES UNSEEN)")[1][0]
    typ, _ = client.append("INBOX", r"(\seen \FLAGGED)", None, b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "OK"
    after = client.status("INBOX", "(MESSAGES UNSEEN)")[1][0]
    unseen = int(before.split(b"UNSEEN ")[1].rstrip(b")"))
    assert after.split(b"UNSEEN ")[1].rstrip(b")") == str(unseen).encode()  # the new one is seen
    client.select("INBOX")
    assert "\\Flagged" in flags_of(client, "13")
    assert b"13" in client.search(None, "FLAGGED")[1][0].split()
    assert b"13" in client.search(None, r"KEYWORD \flagged")[1][0].split()


def raw(client: imaplib.IMAP4, command: str) -> list[bytes]:
    """Send one command as written; the lines of the answer, the tagged one last."""
    tag = client._new_tag().decode()
    client.send(f"{tag} {command}\r\n".encode())
    lines = []
    while True:
        line = client.readline()
        lines.append(line)
        if line.startswith(tag.encode()):
            return [*lines[:-1], line.removeprefix(tag.encode() + b" ")]


# --- 6. grammar corners: NIL as an astring, names that are not modified UTF-7 ----------------


def test_nil_where_an_astring_or_flag_list_is_expected(client: imaplib.IMAP4) -> None:
    assert raw(client, 'LIST "" NIL')[-1].startswith(b"OK")  # as Dovecot answers
    client.select("INBOX")
    assert raw(client, "STORE 1 +FLAGS NIL")[-1].startswith(b"OK")
    assert raw(client, "NOOP")[-1].startswith(b"OK")  # the session goes on


@pytest.mark.parametrize("name", ['"a&b"', '"&Jjo"', '"&AGEAYgBj"'])
def test_a_name_that_is_not_modified_utf7_is_no_not_bad(client: imaplib.IMAP4, name: str) -> None:
    for command in (f"SELECT {name}", f"CREATE {name}"):
        answer = raw(client, command)[-1]
        assert answer.startswith(b"NO "), answer
        assert b"not valid mUTF-7" in answer
    assert raw(client, "NOOP")[-1].startswith(b"OK")


# --- 7. subscriptions and hierarchy (RFC 3501 §6.3.3, §6.3.9) ----------------------------------


def test_create_does_not_subscribe_and_creates_missing_superiors(client: imaplib.IMAP4) -> None:
    assert client.create("a/b/c")[0] == "OK"
    assert client.create("x/y/")[0] == "OK"  # the trailing delimiter is dropped
    listed = b" ".join(client.list('""', "*")[1])  # type: ignore[arg-type]
    for name in (b'"/" a\r', b'"/" a/b\r', b'"/" a/b/c', b'"/" x/y'):
        assert name.rstrip(b"\r") in listed
    assert b"x/y/" not in listed
    subscribed = b" ".join(d for d in client.lsub('""', "*")[1] if d)  # type: ignore[misc]
    assert b"a/b/c" not in subscribed
    assert b"x/y" not in subscribed


def test_lsub_shows_an_unsubscribed_superior_as_noselect(client: imaplib.IMAP4) -> None:
    client.create("p/q")
    assert client.subscribe("p/q")[0] == "OK"
    top = [d for d in client.lsub('""', "%")[1] if d]
    entry = [d for d in top if d.endswith(b' "/" p')]  # type: ignore[union-attr]
    assert entry, top
    assert b"\\Noselect" in entry[0]  # type: ignore[operator]
    assert client.unsubscribe("p/q")[0] == "OK"
    assert not [d for d in client.lsub('""', "*")[1] if d and b"p/q" in d]  # type: ignore[operator]


# --- 5. a new keyword is announced with FLAGS before any FETCH carries it ---------------------


def test_a_new_keyword_comes_with_flags_first_in_every_session(
    client: imaplib.IMAP4, other: imaplib.IMAP4
) -> None:
    client.select("INBOX")
    other.select("INBOX")
    answer = raw(client, "STORE 2 +FLAGS ($Important)")
    flags_at = next(i for i, line in enumerate(answer) if line.startswith(b"* FLAGS"))
    fetch_at = next(i for i, line in enumerate(answer) if b"FETCH" in line)
    assert flags_at < fetch_at, answer
    assert b"$Important" in answer[flags_at]
    assert any(b"PERMANENTFLAGS" in line and b"$Important" in line for line in answer)
    seen = raw(other, "NOOP")  # the other session learns it the same way
    flags_at = next(i for i, line in enumerate(seen) if line.startswith(b"* FLAGS"))
    fetch_at = next(i for i, line in enumerate(seen) if b"FETCH" in line)
    assert flags_at < fetch_at, seen
    again = raw(other, "SELECT INBOX")
    assert any(line.startswith(b"* FLAGS") and b"$Important" in line for line in again)


# --- 4. untagged responses in an order a client can follow (RFC 3501 §7.4.1, §5.5) --------------


def test_expunges_wait_for_a_command_that_may_carry_them(
    client: imaplib.IMAP4, other: imaplib.IMAP4
) -> None:
    client.select("INBOX")
    before = raw(client, "FETCH 2,4 (UID)")
    other.select("INBOX")
    other.store("3", "+FLAGS", r"(\Deleted)")
    other.expunge()
    for command in ("FETCH 2,4 (UID)", "STORE 1 +FLAGS (\\Flagged)", "SEARCH ALL"):
        answer = raw(client, command)
        assert not any(b"EXPUNGE" in line for line in answer), (command, answer)
    # The session was not told: 2 and 4 are still the messages it knows by those numbers.
    assert raw(client, "FETCH 2,4 (UID)") == before
    told = raw(client, "NOOP")
    assert b"* 3 EXPUNGE\r\n" in told
    after = raw(client, "FETCH 3 (UID)")
    assert b"UID 4" in after[0]  # message 4 became 3, as the EXPUNGE said


def test_no_fetch_names_a_message_before_exists_announced_it(
    client: imaplib.IMAP4, other: imaplib.IMAP4
) -> None:
    client.select("INBOX")
    other.append("INBOX", None, None, b"Subject: new\r\n\r\nbody\r\n")
    other.select("INBOX")
    other.store("13", "+FLAGS", r"(\Flagged)")
    answer = raw(client, "NOOP")
    exists = next(i for i, line in enumerate(answer) if line.endswith(b"EXISTS\r\n"))
    fetch = next(i for i, line in enumerate(answer) if line.startswith(b"* 13 FETCH"))
    assert exists < fetch, answer


# --- 2. \Recent: the first session to be told of a message sees it as recent --------------------


def test_recent_belongs_to_the_first_read_write_session(
    client: imaplib.IMAP4, other: imaplib.IMAP4
) -> None:
    # The demo mail was just delivered: the first SELECT takes all of it.
    client.select("INBOX")
    assert client.untagged_responses["RECENT"] == [b"12"]
    assert client.search(None, "RECENT")[1] == [b" ".join(str(n).encode() for n in range(1, 13))]
    assert "\\Recent" in flags_of(client, "1")
    other.select("INBOX")
    assert other.untagged_responses["RECENT"] == [b"0"]  # taken by the first session
    assert "\\Recent" not in flags_of(other, "1")
    assert other.search(None, "OLD")[1][0].split()[-1] == b"12"
    # New mail: the selected read-write session told of it first takes it.
    raw(other, "NOOP")
    client.select("Drafts")  # the appending session is not looking at INBOX
    client.append("INBOX", None, None, b"Subject: fresh\r\n\r\nbody\r\n")
    told = raw(other, "NOOP")
    assert b"* 13 EXISTS\r\n" in told
    assert b"* 1 RECENT\r\n" in told
    assert other.search(None, "NEW")[1] == [b"13"]
    assert b"* 0 RECENT\r\n" in raw(client, "SELECT INBOX")  # 13 was taken by the other

    # STATUS RECENT counts what no session has taken.
    def recent_in_archive() -> int:
        status = client.status("Archive", "(RECENT)")[1][0]
        return int(status.split(b"RECENT ")[1].rstrip(b")"))  # type: ignore[union-attr]

    before = recent_in_archive()
    client.append("Archive", None, None, b"Subject: archived\r\n\r\nbody\r\n")
    assert recent_in_archive() == before + 1
    client.select("Archive")  # taken by this session: none left for STATUS
    assert recent_in_archive() == 0


# --- 3. MIME: parsing, part addressing, byte-for-byte sections, BINARY ------------------------

FOLDED = (
    b"From: a@example.com\r\n"
    b'Content-Type: multipart/mixed; boundary="foo\r\n bar"\r\n'
    b"Subject: folded\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--foo bar \r\n"  # transport padding after the delimiter: still a delimiter, kept as sent
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9 =   \r\n"  # a soft line break followed by whitespace
    b"au lait  \r\n"  # trailing whitespace is not data
    b"--foo bar\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Inner <inner@example.com>\r\n"
    b"Subject: inside\r\n"
    b'Content-Type: multipart/alternative; boundary="in"\r\n'
    b"\r\n"
    b"--in\r\n"
    b"\r\n"
    b"inner text\r\n"
    b"--in\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>inner</p>\r\n"
    b"--in--\r\n"
    b"--foo bar\r\n"
    b"Content-Type: multipart/digest; boundary=d\r\n"
    b"\r\n"
    b"--d\r\n"
    b"\r\n"
    b"Subject: digested\r\n"
    b"\r\n"
    b"one\r\n"
    b"--d--\r\n"
    b"--foo bar--\r\n"
    b"epilogue\r\n"
)


def _literal_after(lines: list[bytes], marker: bytes) -> bytes:
    """The literal that follows ``marker`` in a FETCH answer read line by line."""
    joined = b"".join(lines)
    start = joined.index(marker) + len(marker)
    head = re.match(rb" ~?\{(\d+)\}\r\n", joined[start:])
    if head is None:
        quoted = re.match(rb' "((?:[^"\\]|\\.)*)"', joined[start:])
        assert quoted is not None, joined[start : start + 80]
        return quoted.group(1)
    begin = start + head.end()
    return joined[begin : begin + int(head.group(1))]


def _appended(client: imaplib.IMAP4, message: bytes) -> str:
    typ, data = client.append("INBOX", None, None, message)
    assert typ == "OK", data
    client.select("INBOX")
    return str(int(client.untagged_responses["EXISTS"][-1]))


def test_a_folded_boundary_is_unfolded_and_parts_are_served_as_stored(
    client: imaplib.IMAP4,
) -> None:
    n = _appended(client, FOLDED)
    whole = raw(client, f"FETCH {n} (BODY.PEEK[] BODY.PEEK[TEXT])")
    assert _literal_after(whole, b"BODY[]") == FOLDED  # byte for byte
    assert b"--foo bar \r\n" in _literal_after(whole, b"BODY[TEXT]")  # the space kept
    answer = b"".join(raw(client, f"FETCH {n} (BODYSTRUCTURE)"))
    assert b'"text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in answer
    assert b'"mixed" ("boundary" "foo bar")' in answer
    part = raw(client, f"FETCH {n} (BODY.PEEK[1] BINARY.PEEK[1] BINARY.SIZE[1])")
    assert _literal_after(part, b"BODY[1]") == b"caf=C3=A9 =   \r\nau lait  "
    assert _literal_after(part, b"BINARY[1]") == "café au lait".encode()
    assert b"BINARY.SIZE[1] 13" in b"".join(part)


def test_message_rfc822_parts_are_addressed_as_rfc3501_says(client: imaplib.IMAP4) -> None:
    n = _appended(client, FOLDED)
    items = "BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[2.2.MIME]"
    answer = raw(
        client, f"FETCH {n} ({items} BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.MIME])"
    )
    inner = FOLDED[
        FOLDED.index(b"From: Inner") : FOLDED.index(b"--foo bar\r\nContent-Type: multipart/digest")
    ]
    # the whole encapsulated message; as Dovecot, the line break after its close delimiter is its
    assert _literal_after(answer, b"BODY[2]") == inner
    assert _literal_after(answer, b"BODY[2.HEADER]").startswith(b"From: Inner <inner@example.com>")
    assert _literal_after(answer, b"BODY[2.TEXT]").startswith(b"--in\r\n")
    assert _literal_after(answer, b"BODY[2.1]") == b"inner text"
    assert _literal_after(answer, b"BODY[2.2.MIME]") == b"Content-Type: text/html\r\n\r\n"
    assert _literal_after(answer, b"BODY[2.HEADER.FIELDS (SUBJECT)]") == b"Subject: inside\r\n\r\n"
    assert _literal_after(answer, b"BODY[2.MIME]") == b"Content-Type: message/rfc822\r\n\r\n"
    structure = b"".join(raw(client, f"FETCH {n} (BODYSTRUCTURE)"))
    # message/rfc822: envelope and body of the inner message, then its lines
    assert b'"message" "rfc822" NIL NIL NIL "7bit"' in structure
    assert b'"inside" (("Inner" NIL "inner" "example.com"))' in structure
    # a digest's part without a Content-Type is a message (RFC 2046 5.1.5)
    assert b'("message" "rfc822" NIL NIL NIL "7bit" 24 (NIL "digested"' in structure
    # HEADER of a part that is not a message is empty (Dovecot); a missing part too
    empty = raw(client, f"FETCH {n} (BODY.PEEK[1.HEADER] BODY.PEEK[9])")
    assert _literal_after(empty, b"BODY[1.HEADER]") == b""
    assert _literal_after(empty, b"BODY[9]") == b""


def test_header_fields_with_no_match_is_one_crlf(client: imaplib.IMAP4) -> None:
    client.select("INBOX")
    answer = raw(client, "FETCH 1 (BODY.PEEK[HEADER.FIELDS (X-NOT-THERE)])")
    assert b"BODY[HEADER.FIELDS (X-NOT-THERE)] {2}\r\n" in answer[0]


def _append8(client: imaplib.IMAP4, message: bytes) -> str:
    """APPEND with a literal8 (RFC 3516), which may carry NULs."""
    tag = client._new_tag().decode()
    client.send(f"{tag} APPEND INBOX ~{{{len(message)}}}\r\n".encode())
    assert client.readline().startswith(b"+")
    client.send(message + b"\r\n")
    while not (line := client.readline()).startswith(tag.encode()):
        pass
    assert b" OK " in line, line
    client.select("INBOX")
    return str(int(client.untagged_responses["EXISTS"][-1]))


def test_nuls_reach_only_binary_and_only_as_literal8(client: imaplib.IMAP4) -> None:
    data = b"\x00\x01binary\x00"
    message = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--b\r\nContent-Transfer-Encoding: binary\r\n\r\nraw\x00nul\r\n--b--\r\n"
    )
    n = _append8(client, message)
    answer = b"".join(raw(client, f"FETCH {n} (BINARY.PEEK[1] BODY.PEEK[2] BINARY.SIZE[1])"))
    assert b"BINARY[1] ~{%d}\r\n" % len(data) + data in answer
    assert b"BODY[2] {7}\r\nraw\x80nul" in answer  # a literal, NUL sent as 0x80 (Dovecot)
    assert b"BINARY.SIZE[1] 9" in answer
    assert b"~{" not in answer.split(b"BODY[2]")[1]


def test_binary_of_an_unknown_encoding_is_no_unknown_cte(client: imaplib.IMAP4) -> None:
    n = _appended(client, b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n")
    answer = raw(client, f"FETCH {n} (BINARY.PEEK[1])")
    assert answer[-1].startswith(b"NO [UNKNOWN-CTE]"), answer
    assert raw(client, f"FETCH {n} (BINARY.PEEK[HEADER])")[-1].startswith(b"BAD")


ADDRESSES = (
    b"From: john (Work) @ example (corp) . com\r\n"
    b'To: Team: a@example.com, "B, Q." <b@example.com>;, solo@example.com (Solo Person)\r\n'
    b"Cc: undisclosed-recipients:;\r\n"
    b"Bcc: <@relay.example,@hop.example:routed@example.com>\r\n"
    b"Subject: addresses\r\n\r\nbody\r\n"
)


def test_envelope_has_groups_routes_and_comments(client: imaplib.IMAP4) -> None:
    n = _appended(client, ADDRESSES)
    envelope = b"".join(raw(client, f"FETCH {n} (ENVELOPE)"))
    assert b'((NIL NIL "Team" NIL)(NIL NIL "a" "example.com")' in envelope
    assert b'("B, Q." NIL "b" "example.com")(NIL NIL NIL NIL)' in envelope
    assert b'("Solo Person" NIL "solo" "example.com")' in envelope  # a comment as the name
    assert b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))' in envelope
    assert b'((NIL "@relay.example,@hop.example" "routed" "example.com"))' in envelope
    assert b'"john" "example.com"' in envelope
    assert client.search(None, "FROM", "john@example.com")[1] == [n.encode()]
    assert client.search(None, "TO", "b@example.com")[1] == [n.encode()]
    assert client.search(None, "TO", '"Solo Person"')[1] == [n.encode()]


# --- 8. IMAP4rev2 (RFC 9051): both revisions by default, either one alone on request ----------


def test_imap4rev2_once_enabled(client: imaplib.IMAP4, other: imaplib.IMAP4) -> None:
    capabilities = raw(client, "CAPABILITY")[0].split()
    assert b"IMAP4rev1" in capabilities
    assert b"IMAP4rev2" in capabilities
    for needed in (b"ESEARCH", b"SEARCHRES", b"LIST-EXTENDED", b"LIST-STATUS", b"MOVE",
                   b"BINARY", b"SPECIAL-USE", b"STATUS=SIZE", b"UNSELECT", b"UIDPLUS"):  # fmt: skip
        assert needed in capabilities, needed
    assert raw(client, "ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2\r\n"
    selected = raw(client, "SELECT INBOX")
    assert not any(b"RECENT" in line or b"[UNSEEN" in line for line in selected)
    assert b'* LIST (\\HasNoChildren) "/" INBOX\r\n' in selected
    searched = raw(client, "SEARCH ALL")[0]
    assert searched.startswith(b'* ESEARCH (TAG "')
    assert searched.endswith(b") ALL 1:12\r\n")
    assert b") UID ALL " in raw(client, "UID SEARCH UNDELETED")[0]
    assert b"\\Recent" not in b"".join(raw(client, "FETCH 1 (FLAGS)"))
    status = raw(client, "STATUS INBOX (MESSAGES DELETED SIZE)")[0]
    assert re.match(rb"\* STATUS INBOX \(MESSAGES 12 DELETED 0 SIZE \d+\)", status), status
    # UTF-8 names, no modified UTF-7
    assert raw(client, 'CREATE "Entwürfe"')[-1].startswith(b"OK")
    assert '"Entwürfe"'.encode() in b"".join(raw(client, 'LIST "" "Entw*"'))
    assert b"[CLOSED]" in b"".join(raw(client, "SELECT Entwürfe"))
    # a session that did not ENABLE it stays IMAP4rev1
    other.select("INBOX")
    assert raw(other, "SEARCH ALL")[0].startswith(b"* SEARCH 1 2 ")
    assert b"&APw-" in b"".join(raw(other, 'LIST "" "Entw*"'))


@pytest.mark.parametrize("revision", ["rev1", "rev2"])
def test_a_sandbox_can_speak_one_revision_only(revision: str) -> None:
    from imapscope.sandbox import REVISIONS, SandboxServer, build_store  # noqa: PLC0415
    from tests.scripted import running  # noqa: PLC0415

    store = build_store([("alice", PASSWORD)], demo_messages=3)
    server = SandboxServer(store, port=0, revisions=REVISIONS[revision])
    with running(server), socket.create_connection(("127.0.0.1", server.port)) as sock:
        lines = sock.makefile("rb")  # imaplib refuses a server without IMAP4rev1: a socket

        def ask(command: str) -> bytes:
            sock.sendall(f"t {command}\r\n".encode())
            answer = b""
            while not (line := lines.readline()).startswith(b"t "):
                answer += line
            return answer

        lines.readline()  # the greeting
        capabilities = ask("CAPABILITY").split()
        ask(f"LOGIN alice {PASSWORD}")
        ask("SELECT INBOX")
        searched = ask("SEARCH ALL")
        enabled = ask("ENABLE IMAP4rev2")
    assert (b"IMAP4rev1" in capabilities) == (revision == "rev1")
    assert (b"IMAP4rev2" in capabilities) == (revision == "rev2")
    if revision == "rev2":  # IMAP4rev2 from the start, without ENABLE
        assert searched == b'* ESEARCH (TAG "t") ALL 1:3\r\n'
    else:
        assert searched == b"* SEARCH 1 2 3\r\n"
        assert enabled == b"* ENABLED\r\n"


def test_hostile_mime_is_described_not_a_server_bug(client: imaplib.IMAP4) -> None:
    """A boundary that is not ASCII, and multiparts nested a thousand deep: BODYSTRUCTURE and
    sections are answered OK (nesting past 100 is a leaf, as Dovecot caps it)."""
    utf8 = (
        'Content-Type: multipart/mixed; boundary="grenze-ä"\r\n\r\n'
        "--grenze-ä\r\n\r\nteil eins\r\n--grenze-ä--\r\n"
    ).encode()
    deep = (
        b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
            for i in range(1000)
        )
        + b"\r\ninnermost\r\n"
    )
    for message in (utf8, deep):
        n = _appended(client, message)
        answer = raw(client, f"FETCH {n} (BODYSTRUCTURE BODY.PEEK[1] BINARY.PEEK[1])")
        assert answer[-1].startswith(b"OK"), answer[-1]
    assert b"teil eins" in b"".join(raw(client, f"FETCH {int(n) - 1} (BODY.PEEK[1])"))
