"""Codec units without a network: bytes -> event tables, command -> bytes tables, framing."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import pytest

from imapscope.imap import (
    NEED_DATA,
    Append,
    AppendUid,
    Bye,
    ClientConnection,
    ContinuationRequest,
    CopyUid,
    Exists,
    FetchResponse,
    Frame,
    Greeting,
    Idle,
    List,
    ListResponse,
    LocalProtocolError,
    Login,
    Logout,
    Mechanism,
    NamespaceResponse,
    Noop,
    ReceiveBuffer,
    RemoteProtocolError,
    Search,
    SearchResponse,
    Select,
    StartTLS,
    State,
    Store,
    TaggedResponse,
    UnknownResponse,
    compact_sequence,
    encode,
    parse_internaldate,
    parse_response,
    split_sequence,
    state_diagram,
)
from imapscope.imap._sequence import expand
from tests.imap_driver import drain

# --- responses: bytes -> events (RFC 9051 examples, and lines recorded from the rig) -----------

RESPONSES = [
    # RFC 9051 7.1.1 / 7.1.2
    (b"* OK IMAP4rev2 server ready\r\n", "UntaggedStatus", {"status": "OK"}),
    (b"* NO [ALERT] System shutdown in 10 minutes\r\n", "UntaggedStatus", {"status": "NO"}),
    (b"* BAD Disk crash, attempting salvage to a new disk!\r\n", "UntaggedStatus", {}),
    (b"* BYE Autologout; idle for too long\r\n", "Bye", {"text": "Autologout; idle for too long"}),
    (b"A001 OK LOGIN completed\r\n", "TaggedResponse", {"tag": "A001", "status": "OK"}),
    (b"A142 OK [READ-WRITE] SELECT completed\r\n", "TaggedResponse", {"status": "OK"}),
    (b"* 172 EXISTS\r\n", "Exists", {"count": 172}),
    (b"* 1 RECENT\r\n", "Recent", {"count": 1}),
    (b"* 44 EXPUNGE\r\n", "Expunge", {"seq": 44}),
    (b"* SEARCH 2 84 882\r\n", "Search", {"ids": (2, 84, 882)}),
    (b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n', "ListResponse", {"name": "~/Mail/foo"}),
    (b'* LSUB () "." #news.comp.mail.misc\r\n', "ListResponse", {"kind": "LSUB"}),
    (b"* LIST () NIL inbox\r\n", "ListResponse", {"delimiter": None, "name": "INBOX"}),
    (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        "StatusResponse",
        {"items": {"MESSAGES": 231, "UIDNEXT": 44292}},
    ),
    (b"* ENABLED CONDSTORE QRESYNC\r\n", "Enabled", {"capabilities": ("CONDSTORE", "QRESYNC")}),
    (b"* MYRIGHTS INBOX rwiptsldaex\r\n", "MyRights", {"rights": "rwiptsldaex"}),
    (b"* VANISHED 405,407,410\r\n", "Vanished", {"earlier": False, "uids": "405,407,410"}),
    (b"* ID NIL\r\n", "IdResponse", {"params": None}),
    (b"+ Ready for additional command text\r\n", "ContinuationRequest", {}),
    (b"+\r\n", "ContinuationRequest", {"text": ""}),
    # recorded from the rig: Cyrus and Courier
    (
        b'* 1 FETCH (FLAGS (\\Recent \\Seen) INTERNALDATE " 1-Jan-2024 09:25:00 +0000")\r\n',
        "Fetch",
        {"seq": 1, "flags": ("\\Recent", "\\Seen")},
    ),
    (
        b'* NAMESPACE (("INBOX." ".")) NIL (("#shared." ".")("shared." "."))\r\n',
        "Namespace",
        {"shared": (("#shared.", "."), ("shared.", "."))},
    ),
    (
        b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared Folders/" "/"))\r\n',
        "Namespace",
        {"other_users": (("Other Users/", "/"),)},
    ),
    (b"* XSTATE SOMETHING NEW\r\n", "UnknownResponse", {"name": "XSTATE"}),
    (b"* 3 XFOO bar\r\n", "UnknownResponse", {"name": "XFOO"}),
]


@pytest.mark.parametrize(("line", "kind", "fields"), RESPONSES)
def test_response_table(line: bytes, kind: str, fields: dict[str, object]) -> None:
    event = parse_response(Frame(line))
    assert type(event).__name__ == kind
    for name, value in fields.items():
        assert getattr(event, name) == value


CODES = [
    (b"a OK [UIDVALIDITY 3857529045] UIDs valid\r\n", "UIDVALIDITY", 3857529045),
    (b"a OK [UIDNEXT 4392] x\r\n", "UIDNEXT", 4392),
    (b"a OK [HIGHESTMODSEQ 715194045007] x\r\n", "HIGHESTMODSEQ", 715194045007),
    (b"a OK [APPENDUID 38505 3955] done\r\n", "APPENDUID", AppendUid(38505, "3955")),
    (
        b"a OK [COPYUID 38505 304,319:320 3956:3958] x\r\n",
        "COPYUID",
        CopyUid(38505, "304,319:320", "3956:3958"),
    ),
    (b"a NO [TRYCREATE] no such mailbox\r\n", "TRYCREATE", None),
    (b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", "AUTHENTICATIONFAILED", None),
    (b"a NO [UNAVAILABLE] try later\r\n", "UNAVAILABLE", None),
    (b"a NO [PRIVACYREQUIRED] use TLS\r\n", "PRIVACYREQUIRED", None),
    (
        b"a OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] x\r\n",
        "PERMANENTFLAGS",
        ("\\Deleted", "\\Seen", "\\*"),
    ),
    (b"a OK [CAPABILITY IMAP4rev1 IDLE] x\r\n", "CAPABILITY", ("IMAP4rev1", "IDLE")),
    (b"a NO [X-VENDOR-THING some text] x\r\n", "X-VENDOR-THING", "some text"),
    (b"a NO [WEIRDCODE] x\r\n", "WEIRDCODE", None),
]


@pytest.mark.parametrize(("line", "name", "value"), CODES)
def test_response_codes_are_typed(line: bytes, name: str, value: object) -> None:
    event = parse_response(Frame(line))
    assert isinstance(event, TaggedResponse)
    assert event.code is not None
    assert (event.code.name, event.code.value) == (name, value)


def test_greeting_variants() -> None:
    assert parse_response(Frame(b"* PREAUTH ready\r\n"), greeting=True) == Greeting(
        "PREAUTH", None, "ready"
    )
    assert isinstance(parse_response(Frame(b"* BYE go away\r\n"), greeting=True), Greeting)
    for banner in (b"+OK POP3 ready\r\n", b"220 smtp.example ESMTP\r\n", b"* NO thanks\r\n"):
        with pytest.raises(RemoteProtocolError, match=r"greeting|IMAP"):
            parse_response(Frame(banner), greeting=True)


def test_fetch_items_and_sections() -> None:
    frame = Frame(
        b"* 12 FETCH (UID 99 MODSEQ (12121231000) X-GM-LABELS (\\Inbox foo) EMAILID (M6d99ac3275b) "
        b'BODY[HEADER.FIELDS (SUBJECT)] {17}\r\n BINARY[1] NIL PREVIEW "hi" '
        b'BODY ("text" "plain" NIL NIL NIL "7bit" 5 1))\r\n',
        (b"Subject: hey\r\n\r\n",),
    )
    event = parse_response(frame)
    assert isinstance(event, FetchResponse)
    assert (event.seq, event.uid, event.modseq) == (12, 99, 12121231000)
    assert event.sections == {
        "BODY[HEADER.FIELDS (SUBJECT)]": b"Subject: hey\r\n\r\n",
        "BINARY[1]": None,
        "PREVIEW": b"hi",
    }
    assert event.item("X-GM-LABELS") == ["\\Inbox", "foo"]
    assert event.item("emailid") == ["M6d99ac3275b"]
    body = event.bodystructure
    assert body is not None
    assert (body.type, body.subtype, body.size) == ("text", "plain", 5)  # type: ignore[union-attr]


def test_nested_message_rfc822_bodystructure() -> None:
    inner_env = b'(NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
    line = (
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 '
        b'NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 300 '
        + inner_env
        + b' ("text" "html" NIL NIL NIL "qp" 20 2) 12 NIL ("inline" NIL) NIL NIL) "mixed" '
        b'("boundary" "b") NIL ("en" "de") NIL))\r\n'
    )
    event = parse_response(Frame(line))
    assert isinstance(event, FetchResponse)
    body = event.bodystructure
    assert type(body).__name__ == "Multipart"
    attached = body.parts[1]  # type: ignore[union-attr]
    assert attached.envelope.subject == "inner"
    assert attached.body.subtype == "html"
    assert attached.lines == 12
    assert attached.disposition == ("inline", {})
    assert body.language == ("en", "de")  # type: ignore[union-attr]


def test_internaldate() -> None:
    assert parse_internaldate(" 1-Jan-2024 09:25:00 +0000") == datetime(
        2024, 1, 1, 9, 25, tzinfo=UTC
    )
    assert parse_internaldate("17-Jul-1996 02:44:25 -0700") == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )
    with pytest.raises(RemoteProtocolError):
        parse_internaldate("yesterday")


# --- commands: typed command -> bytes ---------------------------------------------------------

COMMANDS = [
    (Noop(), b"a NOOP\r\n"),
    (Login("fred", "foo bar"), b'a LOGIN fred "foo bar"\r\n'),
    (Select("Entwürfe"), b"a SELECT Entw&APw-rfe\r\n"),
    (Select("inbox", readonly=True, qresync=(67890007, 90060115194045000)),
     b"a EXAMINE INBOX (QRESYNC (67890007 90060115194045000))\r\n"),
    (List("", "%"), b'a LIST "" %\r\n'),
    (List("", "*", select=("SUBSCRIBED",), returns=("CHILDREN",)),
     b'a LIST (SUBSCRIBED) "" * RETURN (CHILDREN)\r\n'),
    (Search("UNSEEN SINCE 1-Feb-2024", returns=("MIN", "COUNT")),
     b"a SEARCH RETURN (MIN COUNT) UNSEEN SINCE 1-Feb-2024\r\n"),
    (Store("2:4", ("\\Deleted",), action="+", uid=True, unchanged_since=320162338),
     b"a UID STORE 2:4 (UNCHANGEDSINCE 320162338) +FLAGS (\\Deleted)\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "wire"), COMMANDS)
def test_command_table(command: object, wire: bytes) -> None:
    segments = encode("a", command)  # type: ignore[arg-type]
    assert b"".join(s.data for s in segments) == wire


@pytest.mark.parametrize(
    "name", ["evil\r\nA1 DELETE INBOX", "nul\x00byte", 'quote"and\\back', "tab\there", "(paren)"]
)
def test_mailbox_names_cannot_inject_commands(name: str) -> None:
    segments = encode("a", Select(name))
    lines = [s.data for s in segments]
    # Whatever the name holds, the command line itself never contains a bare CR or LF outside a
    # literal: either the name is quoted safely or it travels as a literal after "+".
    first = lines[0]
    assert first.count(b"\r\n") == 1
    assert first.endswith(b"\r\n")
    if len(lines) > 1:
        assert lines[0].endswith(b"}\r\n")


@pytest.mark.parametrize("bad", ["1:5\r\n", "abc", "", "1,,2"])
def test_bad_sequence_sets_are_refused(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode("a", Store(bad, ("\\Seen",)))


def test_flags_and_raw_text_cannot_carry_crlf() -> None:
    with pytest.raises(LocalProtocolError):
        encode("a", Store("1", ("\\Seen\r\nA2 LOGOUT",)))
    with pytest.raises(LocalProtocolError):
        encode("a", Search("ALL\r\nA2 LOGOUT"))


def test_literal_modes() -> None:
    message = b"x" * 5000
    sync = encode("a", Append("INBOX", message))
    assert [s.wait for s in sync] == [True, False]
    plus = encode("a", Append("INBOX", message), literal_mode="plus")
    assert len(plus) == 1
    assert b"{5000+}\r\n" in plus[0].data
    minus = encode("a", Append("INBOX", message), literal_mode="minus")
    assert [s.wait for s in minus] == [True, False]  # over 4096: LITERAL- must synchronize
    small = encode("a", Append("INBOX", b"hi"), literal_mode="minus")
    assert len(small) == 1


def test_log_copy_redacts_secrets_everywhere() -> None:
    for segments in (
        encode("a", Login("alice", "hunter2 x")),
        encode("a", Login("alice", "pass\r\nword")),  # literal form
        encode("a", Login("alice", "pass\r\nword"), literal_mode="plus"),
    ):
        log = b"".join(s.log for s in segments)
        assert b"hunter2" not in log
        assert b"pass" not in log
        assert b"<redacted>" in log
    assert "hunter2" not in repr(Login("alice", "hunter2"))


# --- sequence sets ----------------------------------------------------------------------------


def test_sequence_sets() -> None:
    assert compact_sequence([5, 1, 2, 3, 9, 10, 12]) == "1:3,5,9:10,12"
    pieces = split_sequence(range(1, 200_000, 2), max_bytes=1000)
    assert all(len(p) <= 1000 for p in pieces)
    assert sorted(n for p in pieces for n in expand(p, 10**6)) == list(range(1, 200_000, 2))
    assert expand("1:*", 3) == [1, 2, 3]
    assert expand("5:*", 3) == [3]
    assert expand("4:2", 9) == [2, 3, 4]
    with pytest.raises(LocalProtocolError):
        compact_sequence([])


# --- framing ----------------------------------------------------------------------------------


def test_literal_split_at_every_byte_boundary() -> None:
    wire = b"* 1 FETCH (BODY[] {12}\r\nhello\r\nworld UID 3)\r\na OK done\r\n"
    for cut in range(1, len(wire)):
        buffer = ReceiveBuffer()
        frames = []
        for chunk in (wire[:cut], wire[cut:]):
            buffer.feed(chunk)
            while (frame := buffer.next_frame()) is not None:
                frames.append(frame)
        assert len(frames) == 2, cut
        event = parse_response(frames[0])  # type: ignore[arg-type]
        assert isinstance(event, FetchResponse)
        assert event.sections["BODY[]"] == b"hello\r\nworld"
        assert event.uid == 3


def test_a_50_mb_literal_is_held_once() -> None:
    size = 50 * 1024 * 1024
    chunk = b"x" * 65536
    tracemalloc.start()
    buffer = ReceiveBuffer()
    buffer.feed(b"* 1 FETCH (BODY[] {%d}\r\n" % size)
    assert buffer.next_frame() is None
    for _ in range(size // len(chunk)):
        buffer.feed(chunk)
        assert buffer.next_frame() is None
        assert len(buffer._data) < 2 * len(chunk)  # the receive buffer never holds the literal
    buffer.feed(b")\r\n")
    frame = buffer.next_frame()
    assert isinstance(frame, Frame)
    event = parse_response(frame)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(event, FetchResponse)
    body = event.sections["BODY[]"]
    assert body is not None
    assert len(body) == size
    assert peak < 1.2 * size  # once, not twice


def test_binary_literal8() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"* 2 FETCH (UID 9 BINARY[1] ~{4}\r\n\x00\x01\x02\x03)\r\n")
    event = parse_response(buffer.next_frame())  # type: ignore[arg-type]
    assert isinstance(event, FetchResponse)
    assert event.sections == {"BINARY[1]": b"\x00\x01\x02\x03"}
    assert event.uid == 9


def test_limits() -> None:
    buffer = ReceiveBuffer(max_line=100)
    buffer.feed(b"* " + b"x" * 200)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        buffer.next_frame()
    buffer = ReceiveBuffer(max_literal=10)
    buffer.feed(b"* 1 FETCH (BODY[] {11}\r\n")
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        buffer.next_frame()


# --- the connection state machine, with no socket ---------------------------------------------


def test_state_machine_and_tag_attribution() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError, match="not allowed"):
        conn.send(Select("INBOX"))
    assert drain(conn, b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n")[0] == Greeting(
        "OK",
        conn_code := parse_response(Frame(b"a OK [CAPABILITY IMAP4rev1 LITERAL+] x\r\n")).code,
        "hi",  # type: ignore[union-attr]
    )
    assert conn_code is not None
    assert conn.literal_mode == "plus"
    login = conn.send(Login("u", "p"))
    select = conn.send(Select("INBOX"))  # pipelined: allowed because LOGIN would succeed
    assert conn.data_to_send() == b"A0001 LOGIN u p\r\nA0002 SELECT INBOX\r\n"
    events = drain(conn, b"A0001 OK done\r\n* 3 EXISTS\r\nA0002 OK [READ-WRITE] ok\r\n")
    assert [type(e).__name__ for e in events] == ["TaggedResponse", "Exists", "TaggedResponse"]
    assert conn.state is State.SELECTED
    assert isinstance(conn.command_for(login), Login)
    assert isinstance(conn.command_for(select), Select)
    with pytest.raises(RemoteProtocolError, match="unknown tag"):
        drain(conn, b"Z999 OK what\r\n")


def test_failed_select_leaves_authenticated_and_bye_ends() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH welcome\r\n")
    assert conn.state is State.AUTHENTICATED
    conn.send(Select("Nope"))
    drain(conn, b"A0001 NO [NONEXISTENT] no such mailbox\r\n")
    assert conn.state is State.AUTHENTICATED
    conn.send(Logout())
    events = drain(conn, b"* BYE bye\r\nA0002 OK done\r\n")
    assert isinstance(events[0], Bye)
    assert conn.state is State.LOGOUT
    conn.receive_data(b"")
    assert conn.next_event() is NEED_DATA


def test_eof_mid_response_and_without_bye() -> None:
    conn = ClientConnection()
    drain(conn, b"* OK hi\r\n")
    conn.receive_data(b"* 1 FETCH (UID")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle"):
        conn.next_event()
    conn = ClientConnection()
    drain(conn, b"* OK hi\r\n")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="without BYE"):
        conn.next_event()


def test_sync_literal_blocks_the_queue_until_continuation() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    conn.send(Append("INBOX", b"abc"))
    conn.send(Noop())
    assert conn.data_to_send() == b"A0001 APPEND INBOX {3}\r\n"
    assert drain(conn, b"+ go ahead\r\n") == []  # consumed by the connection
    assert conn.data_to_send() == b"abc\r\nA0002 NOOP\r\n"


def test_starttls_injection_is_refused() -> None:
    conn = ClientConnection()
    drain(conn, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
    conn.send(StartTLS())
    with pytest.raises(RemoteProtocolError, match="injection"):
        drain(conn, b"A0001 OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n")


def test_starttls_then_commands_wait_for_handshake() -> None:
    conn = ClientConnection()
    drain(conn, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
    conn.send(StartTLS())
    drain(conn, b"A0001 OK begin TLS\r\n")
    assert conn.capabilities == frozenset()
    with pytest.raises(LocalProtocolError, match="TLS handshake"):
        conn.send(Noop())
    conn.tls_established()
    conn.send(Noop())


def test_idle_and_done() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    tag = conn.send(Idle())
    assert isinstance(drain(conn, b"+ idling\r\n")[0], ContinuationRequest)
    with pytest.raises(LocalProtocolError, match="IDLE"):
        conn.send(Noop())
    assert isinstance(drain(conn, b"* 4 EXISTS\r\n")[0], Exists)
    conn.done()
    assert conn.data_to_send().endswith(b"DONE\r\n")
    done = drain(conn, f"{tag} OK idle done\r\n".encode())[0]
    assert isinstance(done, TaggedResponse)
    conn.send(Noop())


@pytest.mark.parametrize(
    ("mechanism", "challenges", "expected"),
    [
        (Mechanism("PLAIN", "tim", "tanstaaftanstaaf"), [], [b"\0tim\0tanstaaftanstaaf"]),
        (Mechanism("LOGIN", "tim", "pw"), [b"Username:", b"Password:"], [b"tim", b"pw"]),
        (
            Mechanism("CRAM-MD5", "tim", "tanstaaftanstaaf"),
            [b"<1896.697170952@postoffice.reston.mci.net>"],
            [b"tim b913a602c7eda7a495b4e6e7334d3890"],  # RFC 2195's example
        ),
        (
            Mechanism("XOAUTH2", "someuser@example.com", "ya29.vF9dft4"),
            [],
            [b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4\x01\x01"],
        ),
    ],
)
def test_sasl_mechanisms(
    mechanism: Mechanism, challenges: list[bytes], expected: list[bytes]
) -> None:
    exchange = mechanism.exchange()
    first = next(exchange)
    responses = [first] if first else []
    for challenge in challenges:
        responses.append(exchange.send(challenge))
    assert responses == expected
    assert "tanstaaf" not in repr(mechanism)


def test_sasl_unknown_mechanism() -> None:
    with pytest.raises(LocalProtocolError, match="unsupported"):
        Mechanism("GSSAPI", "u", "p").exchange()


def test_state_diagram_is_generated_from_the_table() -> None:
    text = state_diagram()
    assert "not authenticated: " in text
    assert "SELECT OK -> selected" in text
    assert "FETCH" in text.split("selected:")[1]


def test_unknown_untagged_response_is_kept() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    events = drain(conn, b"* XAPPLEPUSHSERVICE aps-version 2\r\n")
    assert events == [UnknownResponse("XAPPLEPUSHSERVICE", b"aps-version 2")]


def test_search_and_esearch_and_list_extended() -> None:
    event = parse_response(Frame(b"* SEARCH\r\n"))
    assert event == SearchResponse(())
    event = parse_response(
        Frame(b'* LIST (\\HasNoChildren \\Sent) "/" Sent ("OLDNAME" ("Outbox"))\r\n')
    )
    assert isinstance(event, ListResponse)
    assert event.attributes == ("\\HasNoChildren", "\\Sent")
    assert event.extended == ([b"OLDNAME", [b"Outbox"]],)
    event = parse_response(Frame(b"* NAMESPACE NIL NIL NIL\r\n"))
    assert event == NamespaceResponse((), (), ())
    assert isinstance(parse_response(Frame(b"* 0 EXISTS\r\n")), Exists)


def test_literal_refused_with_no_instead_of_continuation_does_not_stall() -> None:
    # Courier does this for APPEND to an invalid mailbox: a tagged NO where "+" would be.
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    append = conn.send(Append("bad name", b"message data"))
    noop = conn.send(Noop())
    assert conn.data_to_send() == b'A0001 APPEND "bad name" {12}\r\n'
    events = drain(conn, f"{append} NO Invalid mailbox name.\r\n".encode())
    assert [e.status for e in events] == ["NO"]  # type: ignore[attr-defined]
    assert conn.data_to_send() == f"{noop} NOOP\r\n".encode()  # the literal is never sent


def test_eof_after_bye_with_a_command_in_flight_is_an_error() -> None:
    conn = ClientConnection()
    drain(conn, b"* PREAUTH hi\r\n")
    conn.send(List("", "*"))
    assert isinstance(drain(conn, b"* BYE shutting down\r\n")[0], Bye)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="before the server completed LIST"):
        conn.next_event()
